"""`reconcile-ci`: the steps of the GitHub Action and the GitLab CI/CD component.

Each step gets only the token it needs: `plan` and `apply` the Tallyfy token (for reconcile),
`comment` and `reviewed` the GitHub or GitLab token, `summary` none.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from reconcile.ci import review
from reconcile.ci.forge import Forge, ForgeError, GitHub, GitLab

_folder = click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=".reconcile",
    show_default=True,
    help="Where plans, results and reports are kept between steps.",
)
_key = click.option(
    "--key",
    default="default",
    show_default=True,
    help="Tells this comment from others on the same request (e.g. the organization ID).",
)


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise click.ClickException(f"{name} is not set; this step needs it.")
    return value


def _forge(env: Mapping[str, str]) -> Forge:
    """GitHub inside GitHub Actions, GitLab inside GitLab CI, from their predefined variables."""
    if env.get("GITHUB_ACTIONS") == "true":
        return GitHub(
            env.get("GITHUB_API_URL") or "https://api.github.com",
            _need(env, "GITHUB_REPOSITORY"),
            _need(env, "GITHUB_TOKEN"),
        )
    if env.get("GITLAB_CI") == "true":
        return GitLab(
            _need(env, "CI_API_V4_URL"), _need(env, "CI_PROJECT_ID"), _need(env, "GITLAB_API_TOKEN")
        )
    raise click.ClickException("neither GitHub Actions nor GitLab CI: no request to comment on.")


def _event(env: Mapping[str, str]) -> dict[str, object]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    pull = loaded.get("pull_request") if isinstance(loaded, dict) else None
    return pull if isinstance(pull, dict) else {}


def _request_number(env: Mapping[str, str]) -> int:
    if env.get("GITLAB_CI") == "true":
        return int(_need(env, "CI_MERGE_REQUEST_IID"))
    number = _event(env).get("number")
    if not isinstance(number, int):
        raise click.ClickException("this run is not for a pull request: no number in its event.")
    return number


def _context(env: Mapping[str, str]) -> review.Context:
    if env.get("GITLAB_CI") == "true":
        return review.Context(env.get("CI_COMMIT_SHA", ""), env.get("CI_JOB_URL", ""))
    head = _event(env).get("head")
    sha = head.get("sha") if isinstance(head, dict) else None
    run_url = ""
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL") or "https://github.com"
        run_url = f"{server}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env['GITHUB_RUN_ID']}"
    return review.Context(str(sha or env.get("GITHUB_SHA", "")), run_url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The steps of reconcile's GitHub Action and GitLab CI/CD component."""


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--baseline-ref", help="Passed to `reconcile plan`: label requested and drift.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when any plan has changes.")
@_folder
def plan(
    files: tuple[str, ...], baseline_ref: str | None, detailed_exitcode: bool, folder: Path
) -> None:
    """Plan each state file. Exits with the first failure's code (1 error, 3 apply would
    refuse), else 0 whether there are changes or not (2 with --detailed-exitcode)."""
    outcomes = review.plan(files, folder, baseline_ref)
    for outcome in outcomes:
        said = {0: "no changes", 2: "changes to review"}.get(outcome.exit_code, "failed")
        click.echo(f"{outcome.state_file}: {said} (exit {outcome.exit_code})")
        click.echo(outcome.error, nl=False, err=True)
    sys.exit(review.exit_code(outcomes, detailed=detailed_exitcode))


@cli.command()
@_folder
@_key
def comment(folder: Path, key: str) -> None:
    """Create or update the request's plan comment (found by its marker) with the results."""
    env = os.environ
    body = review.summary(review.load(folder), _context(env))
    forge, number = _forge(env), _request_number(env)
    try:
        done = review.post(forge, number, key, body)
    except ForgeError as exc:
        raise click.ClickException(f"{forge.name}: {exc}") from None
    click.echo(f"Plan comment {done} on request {number}.")


@cli.command()
@_folder
def summary(folder: Path) -> None:
    """Write the results as Markdown to the job summary ($GITHUB_STEP_SUMMARY), or stdout."""
    body = review.summary(review.load(folder), _context(os.environ))
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(body)
    else:
        click.echo(body, nl=False)


@cli.command()
@_key
@click.option("--sha", help="The merge commit [default: GITHUB_SHA or CI_COMMIT_SHA].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def reviewed(key: str, sha: str | None, out: Path) -> None:
    """Save the checksums that the merged request's comment showed, per state file."""
    env = os.environ
    commit = sha or env.get("GITHUB_SHA") or _need(env, "CI_COMMIT_SHA")
    forge = _forge(env)
    try:
        number, checksums = review.reviewed(forge, commit, key)
    except ForgeError as exc:
        raise click.ClickException(f"{forge.name}: {exc}") from None
    if number is None:
        click.echo(f"{commit} was not merged from a request: nothing was reviewed.", err=True)
    else:
        click.echo(f"Request {number} reviewed {len(checksums)} plan(s) with changes.")
    out.write_text(json.dumps(checksums, indent=2) + "\n", encoding="utf-8")


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--reviewed",
    "saved",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The checksums saved by `reconcile-ci reviewed`.",
)
@_folder
def apply(files: tuple[str, ...], saved: Path, folder: Path) -> None:
    """Apply each file's reviewed plan; a file reviewed without changes must have none now."""
    checksums = json.loads(saved.read_text(encoding="utf-8"))
    sys.exit(review.apply(files, checksums, folder))


def main() -> None:
    cli(prog_name="reconcile-ci")
