"""The GitHub Action (action.yml) and the GitLab CI/CD component (templates/reconcile.yml), run
step by step as their runners would, against the sandbox over HTTP and a fake GitHub/GitLab API
(tests/fake_forge.py): the plan comment is created, found again by its marker and updated, replaced
by an error when plan fails, and apply uses exactly the checksum it showed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconcile.sandbox import Sandbox
from tests.fake_forge import GITHUB, GITLAB, FakeForge, serve_forge
from tests.helpers import DEMO_ARCHIVED, DEMO_IDS, ORG, ROOT, TOKEN, check_no_secret, write_state

ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
COMPONENT_SPEC, COMPONENT_JOBS = (ROOT / "templates" / "reconcile.yml").read_text().split("\n---\n")
WHEELHOUSE = ROOT / ".tools" / "wheelhouse"
FORGE_TOKEN = "forge-token"
HEAD = "c0ffee" + "0" * 34
MERGED = "beef" + "1" * 36
BASE_ENV = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    with serve_forge(FakeForge(token=FORGE_TOKEN, page_size=2)) as served:
        yield served


@pytest.fixture(scope="module")
def offline_pip() -> dict[str, str]:
    """pip as the runners use it, with the index replaced by the wheels scripts/check keeps."""
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"{WHEELHOUSE} is missing: ./scripts/check prepares it")
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone whose origin's main declares every demo run as it is, checked out on a branch
    that edits it to the example state file (2 to archive, 1 to activate)."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch", "main", str(origin))
    git(tmp_path, "clone", "--quiet", str(origin), str(work))
    git(work, "config", "user.email", "ci@example.com")
    git(work, "config", "user.name", "CI")
    live = {run_id: "archived" if run_id in DEMO_ARCHIVED else "active" for run_id in DEMO_IDS}
    write_state(work / "state.toml", live)
    git(work, "add", "state.toml")
    git(work, "commit", "--quiet", "-m", "Declare the runs as they are")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    git(work, "checkout", "--quiet", "-b", "edit")
    shutil.copy(ROOT / "state.example.toml", work / "state.toml")
    return work


# --- GitHub: a composite action's steps, as the runner runs them ------------------------------


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """The part of GitHub's expression language that action.yml uses: `||`, `&&`, `==`, `!=`,
    'strings', always() and context paths (a missing key is "")."""
    expression = expression.strip().removeprefix("${{").removesuffix("}}").strip()
    if "||" in expression:
        for part in expression.split("||"):
            if value := evaluate(part, context):
                return value
        return value
    if "&&" in expression:
        value = True
        for part in expression.split("&&"):
            value = evaluate(part, context)
            if not value:
                return value
        return value
    for operator in ("==", "!="):
        if operator in expression:
            left, right = (str(evaluate(side, context)) for side in expression.split(operator))
            return (left == right) == (operator == "==")
    if expression == "always()":
        return True
    if expression.startswith("'"):
        return expression.strip("'")
    found: Any = context
    for key in expression.split("."):
        found = found.get(key, "") if isinstance(found, Mapping) else ""
    return found


def substitute(text: str, context: Mapping[str, Any]) -> str:
    return re.sub(r"\$\{\{(.+?)\}\}", lambda m: str(evaluate(m[1], context)), text)


@dataclass
class Job:
    """One job's run of the action: each step's outcome, output and environment."""

    outcomes: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: str = ""


@pytest.fixture(scope="module")
def runner_temp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUNNER_TEMP, kept for the module so that the install step runs once (it builds reconcile
    from this tree, which takes seconds); each job starts with it otherwise empty."""
    return tmp_path_factory.mktemp("runner")


def run_action(
    inputs: Mapping[str, str],
    *,
    workspace: Path,
    runner_temp: Path,
    forge: FakeForge,
    event: Mapping[str, Any],
    env: Mapping[str, str],
) -> Job:
    for child in runner_temp.iterdir():
        if child.name != "reconcile":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    files = {name: runner_temp / name for name in ("path", "output", "summary", "event.json")}
    for path in files.values():
        path.write_text("")
    files["event.json"].write_text(json.dumps(event))
    declared = ACTION["inputs"]
    assert set(inputs) <= set(declared), set(inputs) - set(declared)
    github = {
        "action_path": str(ROOT),
        "base_ref": event.get("pull_request", {}).get("base", {}).get("ref", ""),
        "token": "the-default-token",
        "event": event,
        "event_name": "pull_request" if "pull_request" in event else "push",
    }
    context: dict[str, Any] = {"github": github, "steps": {}}
    context["inputs"] = {
        name: inputs.get(name, substitute(str(spec.get("default", "")), context))
        for name, spec in declared.items()
    }
    job = Job()
    failed = False
    for step in ACTION["runs"]["steps"]:
        name = step["name"]
        condition = step.get("if", "")
        runs = evaluate(condition, context) if condition else True
        if (failed and "always()" not in condition) or not runs:
            job.outcomes[name] = "skipped"
            context["steps"][step.get("id", name)] = {"outcome": "skipped", "outputs": {}}
            continue
        if name == "Install reconcile" and (runner_temp / "reconcile").exists():
            # What the step did the first time, as a runner's tool cache would keep it.
            files["path"].write_text(f"{runner_temp / 'reconcile' / 'bin'}\n")
            job.outcomes[name] = "success"
            continue
        step_env = {
            key: substitute(str(value), context) for key, value in step.get("env", {}).items()
        }
        added = files["path"].read_text().split()
        job.envs[name] = step_env
        files["output"].write_text("")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=workspace,
            env={
                **BASE_ENV,
                **env,
                "PATH": os.pathsep.join([*reversed(added), BASE_ENV["PATH"]]),
                "GITHUB_ACTIONS": "true",
                "GITHUB_API_URL": forge.github_url,
                "GITHUB_REPOSITORY": "acme/runs",
                "GITHUB_SERVER_URL": "https://github.example",
                "GITHUB_RUN_ID": "4242",
                "GITHUB_SHA": event.get("after", MERGED),
                "GITHUB_BASE_REF": github["base_ref"],
                "GITHUB_EVENT_PATH": str(files["event.json"]),
                "GITHUB_PATH": str(files["path"]),
                "GITHUB_OUTPUT": str(files["output"]),
                "GITHUB_STEP_SUMMARY": str(files["summary"]),
                "RUNNER_TEMP": str(runner_temp),
                **step_env,
            },
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        job.logs[name] = done.stdout + done.stderr
        check_no_secret(job.logs[name], f"the action's step {name!r}")
        outputs = dict(
            line.split("=", 1) for line in files["output"].read_text().splitlines() if "=" in line
        )
        outcome = "success" if done.returncode == 0 else "failure"
        job.outcomes[name] = outcome
        context["steps"][step.get("id", name)] = {"outcome": outcome, "outputs": outputs}
        failed = failed or done.returncode != 0
    job.summary = files["summary"].read_text()
    return job


def pull_request_event(number: int = 7) -> dict[str, Any]:
    return {"pull_request": {"number": number, "head": {"sha": HEAD}, "base": {"ref": "main"}}}


def plan_comment(forge: FakeForge, kind: str, number: int) -> str:
    (body,) = [
        b for b in forge.bodies(kind, number) if b.startswith(f"<!-- reconcile-plan:{ORG} -->")
    ]
    return body


def test_the_action_comments_once_and_applies_what_was_reviewed(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    repo: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    inputs = {"tallyfy-token": TOKEN, "org": ORG, "api-url": served, "github-token": FORGE_TOKEN}
    forge.add(GITHUB, 7, "Looks good to me.")
    forge.add(GITHUB, 7, "<!-- reconcile-plan:someone-else -->\nnot ours")
    pr = pull_request_event()

    first = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert first.outcomes == {
        "Install reconcile": "success",
        "Plan": "success",
        "Post or update the plan comment": "success",
        "Job summary": "success",
        "Find the reviewed plan": "skipped",
        "Apply exactly the reviewed plan": "skipped",
    }, first.logs
    body = plan_comment(forge, GITHUB, 7)
    assert body.startswith(f"<!-- reconcile-plan:{ORG} -->\n### reconcile plan\n")
    assert f"commit `{HEAD[:12]}`" in body
    assert "[CI run](https://github.example/acme/runs/actions/runs/4242)" in body
    assert "**Plan: 2 to archive, 1 to activate, 7 unchanged.**" in body
    assert "3 requested (the declaration changed), 0 drift" in body, "baseline: origin/main"
    checksum = re.findall(r"<!-- reconcile-checksum:([0-9a-f]{64}):state.toml -->", body)
    assert len(checksum) == 1
    assert first.summary == body.split("\n", 1)[1]
    assert sandbox.writes == []
    created = [(r.method, r.path) for r in forge.writes()]
    assert created == [("POST", "/repos/acme/runs/issues/7/comments")]

    # The next push: the same comment is found (on the second page) and updated in place.
    second = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert second.outcomes["Post or update the plan comment"] == "success", second.logs
    assert len(forge.bodies(GITHUB, 7)) == 3
    assert [r.method for r in forge.writes()] == ["POST", "PATCH"]
    assert any(r.query.get("page") == "2" for r in forge.requests if r.method == "GET")

    # Fixed again and merged: apply finds the merged pull request's comment and its checksum.
    shutil.copy(ROOT / "state.example.toml", repo / "state.toml")
    run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    forge.merged[MERGED] = 7
    push = {"after": MERGED}
    applied = run_action(
        {**inputs, "command": "apply"},
        workspace=repo,
        runner_temp=runner_temp,
        forge=forge,
        event=push,
        env=offline_pip,
    )
    assert applied.outcomes["Apply exactly the reviewed plan"] == "success", applied.logs
    assert applied.outcomes["Post or update the plan comment"] == "skipped"
    assert len(sandbox.writes) == 3
    report = json.loads((runner_temp / "reconcile-results" / "report-1.json").read_text())
    assert report["summary"]["ok"] == 3

    # Drift after review: the same checksum no longer matches, and nothing is written.
    sandbox.set_archived(DEMO_IDS[4], True)
    refused = run_action(
        {**inputs, "command": "apply"},
        workspace=repo,
        runner_temp=runner_temp,
        forge=forge,
        event=push,
        env=offline_pip,
    )
    assert refused.outcomes["Apply exactly the reviewed plan"] == "failure"
    assert len(sandbox.writes) == 3


def test_a_failed_or_refused_plan_replaces_the_comment_and_fails_the_check(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    repo: Path,
    runner_temp: Path,
    offline_pip: dict[str, str],
) -> None:
    inputs = {"tallyfy-token": TOKEN, "org": ORG, "api-url": served, "github-token": FORGE_TOKEN}
    pr = pull_request_event()
    run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert "reconcile-checksum" in plan_comment(forge, GITHUB, 7)

    # A push that breaks the file: the job fails, and the comment no longer offers a checksum.
    (repo / "state.toml").write_text("[runs]\nnot a run = 1\n")
    broken = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert broken.outcomes["Plan"] == "failure"
    assert broken.outcomes["Post or update the plan comment"] == "success"
    assert broken.outcomes["Job summary"] == "success"
    error = plan_comment(forge, GITHUB, 7)
    assert "### reconcile plan **failed**" in error
    assert "**There is no plan to apply** for `state.toml`" in error
    assert "Error: " in error
    assert "state.toml" in error
    assert "reconcile-checksum" not in error
    assert len(forge.bodies(GITHUB, 7)) == 1

    # A push that apply would refuse (it archives every active run): red check, reason shown.
    path = write_state(repo / "state.toml", dict.fromkeys(DEMO_IDS, "archived"))
    path.write_text("[safety]\nmin_runs = 5\n" + path.read_text())
    gated = run_action(
        inputs, workspace=repo, runner_temp=runner_temp, forge=forge, event=pr, env=offline_pip
    )
    assert gated.outcomes["Plan"] == "failure"
    refusal = plan_comment(forge, GITHUB, 7)
    assert "`reconcile plan` exited 3:" in refusal
    assert "> **Warning:** apply would refuse: the plan would archive 7 of the 7" in refusal
    assert "reconcile-checksum" not in refusal

    assert [r.method for r in forge.writes()] == ["POST", "PATCH", "PATCH"]
    assert sandbox.writes == []


def test_each_action_step_gets_only_the_token_it_needs() -> None:
    for step in ACTION["runs"]["steps"]:
        env = json.dumps(step.get("env", {}))
        tallyfy, github = "inputs.tallyfy-token" in env, "inputs.github-token" in env
        assert (tallyfy, github) == {
            "Plan": (True, False),
            "Apply exactly the reviewed plan": (True, False),
            "Post or update the plan comment": (False, True),
            "Find the reviewed plan": (False, True),
        }.get(step["name"], (False, False)), step["name"]
        assert "${{" not in step["run"], "expressions go through env, never into the script"


# --- GitLab: the component's jobs, as GitLab's runner runs them -------------------------------


def component_job(name: str, inputs: Mapping[str, str]) -> dict[str, Any]:
    spec = yaml.safe_load(COMPONENT_SPEC)["spec"]
    # GitLab writes a boolean input as true or false
    values = {
        key: json.dumps(default)
        if isinstance(default := value.get("default", ""), bool)
        else default
        for key, value in spec["inputs"].items()
    }
    values |= inputs
    assert set(values) == set(spec["inputs"])
    text = re.sub(r"\$\[\[ inputs\.([\w-]+) \]\]", lambda m: values[m[1]], COMPONENT_JOBS)
    context = {"reference": "gitlab.example/acme/reconcile/reconcile@1.0.0", "sha": "f" * 40}
    text = re.sub(r"\$\[\[ component\.(\w+) \]\]", lambda m: context[m[1]], text)
    jobs = yaml.safe_load(text)
    job: dict[str, Any] = jobs[name]
    return {**jobs[job["extends"]], **job}


def run_component(
    name: str, inputs: Mapping[str, str], *, workspace: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    job = component_job(name, inputs)
    script = "\n".join([*job["before_script"], *job["script"]])
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=workspace,
        env={**BASE_ENV, **job["variables"], **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    check_no_secret(done.stdout + done.stderr, f"the component's job {name}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("*.whl")
    return found


def test_the_gitlab_component_keeps_one_note_applies_what_was_reviewed_and_can_replan(
    sandbox: Sandbox,
    served: str,
    forge: FakeForge,
    repo: Path,
    wheel: Path,
    offline_pip: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    inputs = {"org": ORG, "install": str(wheel)}
    env = {
        **offline_pip,
        "TMPDIR": str(tmp_path_factory.mktemp("gitlab-tmp")),
        "GITLAB_CI": "true",
        "CI_API_V4_URL": forge.gitlab_url,
        "CI_PROJECT_ID": "42",
        "CI_JOB_URL": "https://gitlab.example/acme/runs/-/jobs/99",
        "GITLAB_API_TOKEN": FORGE_TOKEN,
        "TALLYFY_ACCESS_TOKEN": TOKEN,
        "TALLYFY_API_URL": served,
    }
    review = {
        **env,
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "5",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_COMMIT_SHA": HEAD,
    }
    forge.add(GITLAB, 5, "A note from a reviewer.")
    planned = run_component("reconcile-plan", inputs, workspace=repo, env=review)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    again = run_component("reconcile-plan", inputs, workspace=repo, env=review)
    assert again.returncode == 0, again.stderr
    assert [(r.method, r.path) for r in forge.writes()] == [
        ("POST", "/projects/42/merge_requests/5/notes"),
        ("PUT", "/projects/42/merge_requests/5/notes/1002"),
    ]
    note = plan_comment(forge, GITLAB, 5)
    assert "3 requested (the declaration changed), 0 drift" in note
    assert "[CI run](https://gitlab.example/acme/runs/-/jobs/99)" in note

    (repo / "state.toml").write_text('[tallyfy]\norg_id = "nope"\n[runs]\n')
    failed = run_component("reconcile-plan", inputs, workspace=repo, env=review)
    assert failed.returncode == 1
    assert "**There is no plan to apply**" in plan_comment(forge, GITLAB, 5)

    shutil.copy(ROOT / "state.example.toml", repo / "state.toml")
    assert run_component("reconcile-plan", inputs, workspace=repo, env=review).returncode == 0
    forge.merged[MERGED] = 5
    main = {**env, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_SHA": MERGED}
    sandbox.set_archived(DEMO_IDS[4], True)
    refused = run_component("reconcile-apply", inputs, workspace=repo, env=main)
    assert refused.returncode == 3, "drift since review: the checksum no longer matches"
    assert sandbox.writes == []

    replanned = run_component("reconcile-replan-apply", inputs, workspace=repo, env=main)
    assert replanned.returncode == 0, replanned.stderr
    assert len(sandbox.writes) == 4
    drift = run_component("reconcile-drift", inputs, workspace=repo, env=main)
    assert drift.returncode == 0, "after the re-plan and apply, nothing differs"


def test_the_component_runs_in_an_image_with_git_and_one_apply_per_organization() -> None:
    spec = yaml.safe_load(COMPONENT_SPEC)["spec"]
    assert spec["inputs"]["image"]["default"] == "python:3.11", "the full image ships git"
    for name in ("reconcile-apply", "reconcile-replan-apply"):
        assert component_job(name, {"org": ORG})["resource_group"] == f"reconcile-{ORG}"
    manual = component_job("reconcile-replan-apply", {"org": ORG})["rules"][0]
    assert manual["when"] == "manual"
