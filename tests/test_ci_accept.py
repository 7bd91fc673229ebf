"""Accepting drift in CI: the action's `accept-drift` command and the component's
reconcile-accept-drift job refresh the state files from Tallyfy (GET only), push one commit to the
branch reconcile owns and keep ONE pull (merge) request from it current, run as their runners
would against the sandbox over HTTP, a bare git origin and the fake GitHub/GitLab API."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.ci import accept, review
from reconcile.sandbox import Sandbox
from reconcile.sandbox.activity import Actor
from tests.ci_runner import COMPONENT_JOBS, FORGE_TOKEN, git, run_action, run_component
from tests.fake_forge import GITHUB, GITLAB, FakeForge
from tests.helpers import DEMO_ARCHIVED, DEMO_IDS, ORG, TOKEN, run

JANE = Actor(67890, "Jane Doe", "jane@example.com")
BRANCH = accept.BRANCH
GONE = "f" * 32
NO_IDENTITY = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
"""As on a CI runner: git has no identity configured, so reconcile supplies one."""
SCHEDULE = {"schedule": "47 6 * * 1"}
LIVE = {run_id: "archived" if run_id in DEMO_ARCHIVED else "active" for run_id in DEMO_IDS}


def state_text(gone: bool = False) -> str:
    """The demo runs as they are, with comments, labels and blank lines refresh must keep; the
    last run in the long form."""
    *short, (last, state) = LIVE.items()
    lines = ["# Onboarding runs. Reviewed by the ops team.", "[runs]", ""]
    lines += [f'{run_id} = "{value}"  # run {n}' for n, (run_id, value) in enumerate(short)]
    if gone:
        lines += ["", "# a run deleted in Tallyfy", f'{GONE} = "archived"']
    lines += ["", f"[runs.{last}]  # the long form", f'state = "{state}"', 'name = "Q3"']
    return "\n".join(lines) + "\n"


def origin_of(checkout: Path) -> Path:
    return checkout.parent / "acme" / "runs.git"


def make_checkout(tmp_path: Path, text: str, more: dict[str, str] | None = None) -> Path:
    """A fresh clone as a scheduled job checks it out: on main, no git identity configured.
    The origin is at acme/runs.git beside it, where GitLab's CI_SERVER_URL/CI_PROJECT_PATH
    point."""
    work = tmp_path / "work"
    origin = origin_of(work)
    origin.parent.mkdir()
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch", "main", str(origin))
    git(tmp_path, "clone", "--quiet", str(origin), str(work))
    for name, content in {"state.toml": text, **(more or {})}.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content, encoding="utf-8")
    git(work, "add", ".")
    git(work, "-c", "user.name=Ops", "-c", "user.email=ops@example.com", "commit", "-qm", "Runs")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    return work


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    return make_checkout(tmp_path, state_text())


@pytest.fixture
def origin(checkout: Path, forge: FakeForge) -> Path:
    """The checkout's bare origin, where the fake forge looks for the requests' branches."""
    forge.repository = origin_of(checkout)
    return forge.repository


def read_git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def fresh(checkout: Path) -> str:
    """The checkout as the next scheduled run finds it (refresh edited the file in place);
    returns HEAD, which reconcile must never move."""
    git(checkout, "checkout", "--quiet", "--", ".")
    return read_git(checkout / ".git", "rev-parse", "HEAD")


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def action(
    forge: FakeForge,
    served: str,
    checkout: Path,
    runner_temp: Path,
    pip: dict[str, str],
    **more: str,
) -> Any:
    inputs = {
        "command": "accept-drift",
        "tallyfy-token": TOKEN,
        "org": ORG,
        "api-url": served,
        "github-token": FORGE_TOKEN,
        **more,
    }
    return run_action(
        inputs,
        workspace=checkout,
        runner_temp=runner_temp,
        forge=forge,
        event=SCHEDULE,
        env={**pip, **NO_IDENTITY},
    )


ACCEPT_STEPS = ("Refresh the state files from Tallyfy", "Propose the accepted drift")


def test_the_action_keeps_one_pull_request_that_accepts_the_drift(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    checkout: Path,
    origin: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    base = fresh(checkout)

    # Nothing moved: nothing is pushed or opened.
    quiet = action(forge, served, checkout, runner_temp, offline_pip)
    assert [quiet.outcomes[step] for step in ACCEPT_STEPS] == ["success", "success"], quiet.logs
    assert "there is no drift to accept" in quiet.logs["Propose the accepted drift"]
    assert read_git(origin, "rev-parse", BRANCH) == ""
    assert forge.writes() == []

    # Jane archives a run in the web app: one commit on the branch, one pull request.
    sandbox.move(DEMO_IDS[0], True, JANE)
    assert fresh(checkout) == base
    first = action(forge, served, checkout, runner_temp, offline_pip)
    assert first.outcomes["Plan"] == "skipped"
    assert [first.outcomes[step] for step in ACCEPT_STEPS] == ["success", "success"], first.logs
    assert fresh(checkout) == base, "the checkout's HEAD stays where it was"
    proposed = read_git(origin, "show", f"{BRANCH}:state.toml") + "\n"
    assert changed_lines(state_text(), proposed) == [
        (f'{DEMO_IDS[0]} = "active"  # run 0', f'{DEMO_IDS[0]} = "archived"  # run 0')
    ]
    assert read_git(origin, "rev-parse", f"{BRANCH}^") == base
    author = read_git(origin, "log", "-1", "--format=%an <%ae>", BRANCH)
    assert author.startswith("github-actions[bot] <")
    (pull,) = forge.open_pulls(GITHUB)
    assert (pull["head"], pull["base"], pull["title"]) == (
        BRANCH,
        "main",
        "reconcile: accept drift from Tallyfy into `state.toml`",
    )
    assert f'-{DEMO_IDS[0]} = "active"  # run 0' in pull["body"]
    assert f'+{DEMO_IDS[0]} = "archived"  # run 0' in pull["body"]
    assert "archived by Jane Doe" in pull["body"]
    assert "1 state accepted from Tallyfy (1 now archived, 0 now active)" in pull["body"]
    assert "--checksum" not in pull["body"], "the plan shown reverts the drift: not to apply"
    assert "Opened pull request" in first.logs["Propose the accepted drift"]
    assert sandbox.writes == [], "accepting drift writes nothing to Tallyfy"
    first_sha = read_git(origin, "rev-parse", BRANCH)

    # The next run finds the same drift: no push, no second pull request.
    again = action(forge, served, checkout, runner_temp, offline_pip)
    assert again.outcomes["Propose the accepted drift"] == "success", again.logs
    assert read_git(origin, "rev-parse", BRANCH) == first_sha
    assert len(forge.open_pulls(GITHUB)) == 1
    assert [r.method for r in forge.writes() if r.path.endswith("/pulls")] == ["POST"]
    fresh(checkout)

    # More drift: a new commit on the same base replaces the old one, and the one pull
    # request is updated in place.
    sandbox.move(DEMO_IDS[2], False, JANE, activation_verb="activated")
    more = action(forge, served, checkout, runner_temp, offline_pip)
    assert more.outcomes["Propose the accepted drift"] == "success", more.logs
    second_sha = read_git(origin, "rev-parse", BRANCH)
    assert second_sha != first_sha
    assert read_git(origin, "rev-parse", f"{BRANCH}^") == base
    (pull,) = forge.open_pulls(GITHUB)
    assert "activated by Jane Doe" in pull["body"] or "unarchived by Jane Doe" in pull["body"]
    assert "2 states accepted from Tallyfy (1 now archived, 1 now active)" in pull["body"]
    assert [r.method for r in forge.writes() if "/pulls" in r.path].count("POST") == 1

    # Merging the branch makes plan agree with Tallyfy: the invariant behind the job.
    merged = checkout / "merged.toml"
    merged.write_text(read_git(origin, "show", f"{BRANCH}:state.toml") + "\n")
    env = {"TALLYFY_API_URL": served, "TALLYFY_ACCESS_TOKEN": TOKEN, "TALLYFY_ORG_ID": ORG}
    assert run("plan", str(merged), "--detailed-exitcode", env=env).exit_code == 0
    assert sandbox.writes == []


def test_the_pull_request_is_closed_when_tallyfy_matches_the_files_again(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    checkout: Path,
    origin: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    sandbox.move(DEMO_IDS[0], True, JANE)
    opened = action(forge, served, checkout, runner_temp, offline_pip)
    assert opened.outcomes["Propose the accepted drift"] == "success", opened.logs
    pushed = read_git(origin, "rev-parse", BRANCH)
    fresh(checkout)

    sandbox.move(DEMO_IDS[0], False, JANE)
    closed = action(forge, served, checkout, runner_temp, offline_pip)
    assert closed.outcomes["Propose the accepted drift"] == "success", closed.logs
    assert "closed pull request" in closed.logs["Propose the accepted drift"]
    assert forge.open_pulls(GITHUB) == []
    assert forge.pulls[(GITHUB, 1)]["state"] == "closed"
    assert "Tallyfy matches the state files again" in forge.pulls[(GITHUB, 1)]["body"]
    assert read_git(origin, "rev-parse", BRANCH) == pushed, "the branch is left alone"
    fresh(checkout)

    # Drift again later: a new pull request, not the closed one reopened.
    sandbox.move(DEMO_IDS[5], True, JANE)
    reopened = action(forge, served, checkout, runner_temp, offline_pip)
    assert reopened.outcomes["Propose the accepted drift"] == "success", reopened.logs
    (pull,) = forge.open_pulls(GITHUB)
    assert pull["number"] == 2
    assert DEMO_IDS[5] in pull["body"]
    assert sandbox.writes == []


def test_nothing_is_pushed_or_opened_when_a_step_fails(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    checkout: Path,
    origin: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    sandbox.move(DEMO_IDS[0], True, JANE)

    # A file refresh cannot edit: the refresh step fails, naming the line; no propose step.
    inline = f'runs = {{ {DEMO_IDS[0]} = "active" }}\n'
    (checkout / "state.toml").write_text(inline)
    refused = action(forge, served, checkout, runner_temp, offline_pip)
    assert refused.outcomes[ACCEPT_STEPS[0]] == "failure"
    assert refused.outcomes[ACCEPT_STEPS[1]] == "skipped"
    assert "state.toml" in refused.logs[ACCEPT_STEPS[0]]
    assert "Traceback" not in refused.logs[ACCEPT_STEPS[0]]
    fresh(checkout)

    # GitHub refuses the token: one clear line naming the request, nothing pushed.
    denied = action(forge, served, checkout, runner_temp, offline_pip, **{"github-token": "bad"})
    log = denied.logs[ACCEPT_STEPS[1]]
    assert denied.outcomes[ACCEPT_STEPS[1]] == "failure"
    assert "GitHub: GET /github/repos/acme/runs/pulls answered 401: Bad credentials" in log
    assert "Traceback" not in log
    assert read_git(origin, "rev-parse", BRANCH) == ""
    fresh(checkout)

    # The remote cannot be pushed to: git's refusal is said, and no pull request is opened.
    git(checkout, "remote", "set-url", "origin", str(checkout.parent / "nowhere.git"))
    unpushed = action(forge, served, checkout, runner_temp, offline_pip)
    log = unpushed.logs[ACCEPT_STEPS[1]]
    assert unpushed.outcomes[ACCEPT_STEPS[1]] == "failure"
    assert "git ls-remote" in log
    assert "failed" in log
    assert "Traceback" not in log
    assert forge.pulls == {}
    assert sandbox.writes == []


def test_the_gitlab_job_keeps_one_merge_request_and_prunes_when_asked(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    tmp_path: Path,
    wheel: Path,
    offline_pip: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    more = {
        "teams/second.toml": f'[runs]\n{DEMO_IDS[1]} = "active"\n{DEMO_IDS[6]} = "active"\n',
        "quiet.toml": f'[runs]\n{DEMO_IDS[7]} = "active"\n',
    }
    checkout = make_checkout(tmp_path, state_text(gone=True), more)
    origin = origin_of(checkout)
    forge.repository = origin
    base = fresh(checkout)
    env = {
        **offline_pip,
        **NO_IDENTITY,
        "TMPDIR": str(tmp_path_factory.mktemp("gitlab-tmp")),
        "GITLAB_CI": "true",
        "CI_API_V4_URL": forge.gitlab_url,
        "CI_PROJECT_ID": "42",
        "CI_SERVER_URL": f"file://{tmp_path}",
        "CI_PROJECT_PATH": "acme/runs",
        "CI_PIPELINE_SOURCE": "schedule",
        "RECONCILE_ACCEPT_DRIFT": "true",
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_SHA": base,
        "CI_JOB_URL": "https://gitlab.example/acme/runs/-/jobs/7",
        "GITLAB_USER_NAME": "Sam Scheduler",
        "GITLAB_USER_EMAIL": "sam@example.com",
        "GITLAB_API_TOKEN": FORGE_TOKEN,
        "TALLYFY_ACCESS_TOKEN": TOKEN,
        "TALLYFY_API_URL": served,
    }
    # The origin the job pushes to is the project's, not the clone's origin remote.
    git(checkout, "remote", "set-url", "origin", str(tmp_path / "elsewhere.git"))
    sandbox.move(DEMO_IDS[1], True, JANE)

    # A run deleted in Tallyfy, declared archived: without prune it stays, and is counted.
    files = "state.toml teams/second.toml quiet.toml"
    inputs = {"org": ORG, "install": str(wheel), "state-files": files}
    kept = run_component("reconcile-accept-drift", inputs, workspace=checkout, env=env)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert GONE in read_git(origin, "show", f"{BRANCH}:state.toml")
    (request,) = forge.open_pulls(GITLAB)
    assert "1 run gone from Tallyfy left in the file (--prune removes it)" in request["body"]
    first = read_git(origin, "rev-parse", BRANCH)
    fresh(checkout)

    # With prune, the next run removes it: a new commit, the same merge request updated.
    inputs["prune"] = "true"
    done = run_component("reconcile-accept-drift", inputs, workspace=checkout, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_git(origin, "rev-parse", BRANCH) != first
    proposed = read_git(origin, "show", f"{BRANCH}:state.toml") + "\n"
    assert GONE not in proposed
    assert "# a run deleted in Tallyfy" in proposed
    assert f'{DEMO_IDS[1]} = "archived"  # run 1' in proposed
    assert read_git(origin, "log", "-1", "--format=%an", BRANCH) == "Sam Scheduler"
    changed = read_git(origin, "diff", "--name-only", base, BRANCH).split()
    assert changed == ["state.toml", "teams/second.toml"], "one commit, only the changed files"
    (request,) = forge.open_pulls(GITLAB)
    assert (request["head"], request["base"]) == (BRANCH, "main")
    assert request["title"] == "reconcile: accept drift from Tallyfy into 2 state files"
    assert "#### `teams/second.toml`" in request["body"]
    assert "`quiet.toml`" not in request["body"].split("### reconcile: accept drift")[1]
    assert "archived by Jane Doe" in request["body"]
    assert "[CI run](https://gitlab.example/acme/runs/-/jobs/7)" in request["body"]

    fresh(checkout)
    again = run_component("reconcile-accept-drift", inputs, workspace=checkout, env=env)
    assert again.returncode == 0, again.stderr
    assert [(r.method, r.path) for r in forge.writes()] == [
        ("POST", "/projects/42/merge_requests"),
        ("PUT", "/projects/42/merge_requests/1"),
    ], "the same drift again: the description is unchanged, so nothing more is written"
    assert sandbox.writes == []


def test_schedules_choose_between_the_drift_alarm_and_accepting_it() -> None:
    jobs = yaml.safe_load(COMPONENT_JOBS.replace("$[[", "").replace("]]", ""))
    alarm = jobs["reconcile-drift"]["rules"][0]["if"]
    proposal = jobs["reconcile-accept-drift"]["rules"][0]["if"]
    assert alarm == '$CI_PIPELINE_SOURCE == "schedule" && $RECONCILE_ACCEPT_DRIFT != "true"'
    assert proposal == '$CI_PIPELINE_SOURCE == "schedule" && $RECONCILE_ACCEPT_DRIFT == "true"'


def outcome(state_file: str, diff_lines: int, plan_rows: int) -> accept.Refreshed:
    diff = "".join(f'-{n:032x} = "active"\n+{n:032x} = "archived"\n' for n in range(diff_lines))
    table = "".join(f"| `{n:032x}` | archive | archived by Jane Doe |\n" for n in range(plan_rows))
    plan = review.Outcome(state_file, 2, "**Plan: many**\n\n" + table, "", ORG, "0" * 64)
    output = f"--- a/{state_file}\n+++ b/{state_file}\n{diff}{diff_lines} states accepted.\n"
    return accept.Refreshed(state_file, 2, output, "", plan)


@settings(max_examples=40, deadline=None)
@given(
    files=st.integers(min_value=1, max_value=6),
    diff_lines=st.integers(min_value=0, max_value=3_000),
    plan_rows=st.integers(min_value=0, max_value=3_000),
)
def test_the_description_fits_what_the_forges_accept(
    files: int, diff_lines: int, plan_rows: int
) -> None:
    refreshed = [outcome(f"org-{n}.toml", diff_lines, plan_rows) for n in range(files)]
    text = accept.body(refreshed, review.Context("c" * 40, ""), "pull request")
    assert len(text) <= review.COMMENT_LIMIT
    for entry in refreshed:
        assert f"#### `{entry.state_file}`" in text
        assert f"{diff_lines} states accepted." in text
    # every code block is closed: a cut never leaves the rest of the text inside a fence
    assert sum(1 for line in text.splitlines() if line.startswith("```")) % 2 == 0
