"""`reconcile-ci`: the steps of the GitHub Action and the GitLab CI/CD component.

Each step gets only the token it needs: `plan`, `apply` and `refresh` the Tallyfy token (for
reconcile), `comment`, `reviewed` and `propose` the GitHub or GitLab token, `summary` none.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import click

from reconcile.ci import accept, review
from reconcile.ci.forge import Forge, ForgeError, GitHub, GitLab
from reconcile.ci.git import Checkout, GitError

T = TypeVar("T")
GITHUB_BOT = ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com")
"""The identity GitHub shows for commits pushed with a workflow's own token."""

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


def _results(load: Callable[[Path], T], folder: Path) -> T:
    """What the step before this one saved in `folder`, or an error saying it is not there."""
    try:
        return load(folder)
    except FileNotFoundError:
        raise click.ClickException(
            f"{folder} holds no results: run the step before this one (`reconcile-ci plan` or "
            "`reconcile-ci refresh`) with the same --dir first."
        ) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise click.ClickException(f"{folder}: the saved results cannot be read ({exc}).") from None


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
    body = review.summary(_results(review.load, folder), _context(env))
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
    body = review.summary(_results(review.load, folder), _context(os.environ))
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


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--prune", is_flag=True, help="Passed to `reconcile refresh`: drop gone runs.")
@click.option("--names", is_flag=True, help="Passed to `reconcile refresh`: update name labels.")
@_folder
def refresh(files: tuple[str, ...], prune: bool, names: bool, folder: Path) -> None:
    """Plan each state file (to say who moved what), then refresh it in place from Tallyfy.
    Exits with the first failure's code, else 0 whether a file changed or not."""
    refreshed = accept.refresh(files, folder, prune=prune, names=names)
    for entry in refreshed:
        click.echo(f"{entry.state_file}:")
        click.echo(entry.output, nl=False)
        click.echo(entry.error, nl=False, err=True)
    sys.exit(accept.exit_code(refreshed))


def _checkout(env: Mapping[str, str], remote: str | None) -> Checkout:
    """Where to push: GitHub's checkout keeps the workflow's token for `origin`; GitLab's keeps
    a job token that cannot push, so the project is pushed to with GITLAB_API_TOKEN."""
    if env.get("GITLAB_CI") == "true":
        default = f"{_need(env, 'CI_SERVER_URL')}/{_need(env, 'CI_PROJECT_PATH')}.git"
        person = (env.get("GITLAB_USER_NAME", ""), env.get("GITLAB_USER_EMAIL", ""))
        return Checkout(
            Path.cwd(),
            remote or default,
            token=_need(env, "GITLAB_API_TOKEN"),
            **({"identity": person} if all(person) else {}),
        )
    return Checkout(Path.cwd(), remote or "origin", identity=GITHUB_BOT)


@cli.command()
@_folder
@click.option("--branch", default=accept.BRANCH, show_default=True, help="The branch to push.")
@click.option("--base", help="The branch to merge into [default: the branch checked out].")
@click.option("--remote", help="Where to push [default: origin; on GitLab, the project].")
def propose(folder: Path, branch: str, base: str | None, remote: str | None) -> None:
    """Open or update the one request that accepts the refreshed files, or close it when
    Tallyfy matches them again."""
    env = os.environ
    refreshed = _results(accept.load, folder)
    failed = [entry.state_file for entry in refreshed if entry.failed]
    if failed:
        raise click.ClickException(
            f"the refresh of {', '.join(failed)} failed, so nothing is proposed."
        )
    target = base or env.get("CI_COMMIT_BRANCH") or env.get("GITHUB_REF_NAME")
    if not target:
        raise click.ClickException("no base branch: pass --base.")
    forge = _forge(env)
    try:
        said = accept.propose(
            forge,
            _checkout(env, remote),
            refreshed,
            branch=branch,
            base=target,
            context=_context(env),
        )
    except ForgeError as exc:
        raise click.ClickException(f"{forge.name}: {exc}") from None
    except GitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(said)


def main() -> None:
    cli(prog_name="reconcile-ci")
