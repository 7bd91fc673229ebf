"""Where a plan was made, for the header of a pull-request comment: the commit and the CI run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    """The commit a plan was made from and the CI run that made it, when known."""

    commit: str | None = None
    run_url: str | None = None


def ci_origin(environ: Mapping[str, str]) -> Origin:
    """The commit and run of GitHub Actions (GITHUB_SHA, and GITHUB_SERVER_URL, GITHUB_REPOSITORY
    and GITHUB_RUN_ID) or of GitLab CI (CI_COMMIT_SHA, CI_PIPELINE_URL), from the variables they
    set; an empty Origin elsewhere. The values are shown as given, after the Markdown renderer's
    checks: a commit that is not hexadecimal or a URL that is not a plain http(s) URL is shown as
    escaped text, never as a link."""
    commit = environ.get("GITHUB_SHA") or environ.get("CI_COMMIT_SHA") or None
    server, repository, run_id = (
        environ.get(name) for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    if server and repository and run_id:
        run_url: str | None = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
    else:
        run_url = environ.get("CI_PIPELINE_URL") or None
    return Origin(commit=commit, run_url=run_url)
