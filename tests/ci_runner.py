"""The GitHub Action (action.yml) and the GitLab CI/CD component (templates/reconcile.yml), run
as their runners would: each action step as a bash script with the runner's files and variables
and the part of GitHub's expression language the action uses; each component job's scripts with
its inputs and variables filled in. Also the fixtures they run with: the fake GitHub/GitLab API
(tests/fake_forge.py), a clone with a bare origin, and reconcile's wheels for offline installs.
Registered as a plugin in tests/conftest.py, so the fixtures are there for every test module."""

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

from tests.fake_forge import FakeForge, serve_forge
from tests.helpers import DEMO_ARCHIVED, DEMO_IDS, ORG, ROOT, check_no_secret, write_state

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
                "GITHUB_REF_NAME": f"{pr['number']}/merge"
                if (pr := event.get("pull_request"))
                else "main",
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
