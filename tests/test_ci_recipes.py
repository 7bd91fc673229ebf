"""The CI recipes in examples/, the pre-commit hook, the state-file JSON Schema and shell
completion: each is checked against what the `reconcile` command really accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator

from reconcile.cli import cli
from reconcile.sandbox import Sandbox
from reconcile.state import LONG_FORM_KEYS, SAFETY_KEYS, TALLYFY_KEYS, TOP_LEVEL_KEYS
from tests.helpers import DEMO_ARCHIVED, DEMO_IDS, ROOT, write_state

EXAMPLE = ROOT / "state.example.toml"
GITHUB = ROOT / "examples" / "github-actions" / "reconcile.yml"
GITLAB = ROOT / "examples" / "gitlab-ci.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
STATE_SCHEMA = json.loads(files("reconcile").joinpath("schema/state.schema.json").read_text())


def state_errors(text: str) -> list[str]:
    validator = Draft7Validator(STATE_SCHEMA)
    return [error.message for error in validator.iter_errors(tomllib.loads(text))]


def test_the_example_state_file_points_at_the_shipped_schema() -> None:
    Draft7Validator.check_schema(STATE_SCHEMA)
    first = EXAMPLE.read_text().splitlines()[0]
    assert first == "#:schema ./reconcile/schema/state.schema.json"
    assert json.loads((ROOT / first.split()[1]).read_text()) == STATE_SCHEMA
    assert state_errors(EXAMPLE.read_text()) == []


def test_the_schema_knows_the_keys_the_loader_knows() -> None:
    properties = STATE_SCHEMA["properties"]
    assert tuple(properties) == TOP_LEVEL_KEYS
    assert tuple(properties["tallyfy"]["properties"]) == TALLYFY_KEYS
    assert tuple(properties["safety"]["properties"]) == SAFETY_KEYS
    long_form = properties["runs"]["additionalProperties"]["oneOf"][1]
    assert tuple(long_form["properties"]) == LONG_FORM_KEYS


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[runs]\nABC = "archived"\n', "'ABC' does not match '^[0-9a-f]{32}$'"),
        (f'[runs]\n{"a" * 32} = "gone"\n', "is not valid under any of the given schemas"),
        (f'[runs]\n{"a" * 32} = {{ state = "active", nmae = "x" }}\n', "is not valid under any"),
        ('[tallyfy]\norg = "x"\n[runs]\n', "Additional properties are not allowed ('org' was"),
        ("[safety]\nmax_archive_percent = 300\n[runs]\n", "300 is greater than the maximum of 100"),
        ('[tallyfy]\norg_id = "x"\n', "'runs' is a required property"),
    ],
)
def test_the_schema_flags_mistakes(text: str, error: str) -> None:
    assert any(error in message for message in state_errors(text)), state_errors(text)


def reconcile_commands(text: str) -> list[list[str]]:
    """Every `reconcile ...` command line of a recipe, split as the shell would (up to a
    redirection or `||`)."""
    found = []
    for line in text.splitlines():
        match = re.search(r"(?:^|[\s;])(reconcile (?:plan|apply|validate)\b[^|>;]*)", line)
        if match and not line.lstrip().startswith("#"):
            found.append(shlex.split(match[1].replace("$(cat checksum.txt)", "HEX")))
    return found


@pytest.mark.parametrize("recipe", [GITHUB, GITLAB, HOOKS], ids=lambda p: p.name)
def test_recipes_use_only_options_that_exist(recipe: Path) -> None:
    commands = reconcile_commands(recipe.read_text())
    assert commands
    for words in commands:
        command = cli.commands[words[1]]
        options = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
        for word in words[2:]:
            if word.startswith("--"):
                assert word in options, f"{recipe.name}: {shlex.join(words)}"


def test_github_workflow() -> None:
    workflow = yaml.safe_load(GITHUB.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["pull_request"]["paths"] == ["state.toml"]
    assert triggers["push"]["branches"] == ["main"]
    assert triggers["schedule"][0]["cron"]
    jobs = workflow["jobs"]
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["apply"]["if"] == "github.event_name == 'push'"
    assert jobs["apply"]["concurrency"] == {
        "group": "reconcile-apply-${{ vars.TALLYFY_ORG_ID }}",
        "cancel-in-progress": False,
    }
    assert workflow["env"]["MARKER"] == "<!-- reconcile-plan:${{ vars.TALLYFY_ORG_ID }} -->"
    comment = step(jobs["plan"], "Post or update the plan comment")["with"]["script"]
    assert "startsWith(marker)" in comment
    assert "updateComment" in comment
    assert "createComment" in comment
    assert step(jobs["plan"], None, uses="actions/upload-artifact@v4")["with"]["path"] == (
        "plan.json"
    )
    lookup = step(jobs["apply"], "Find the checksum of the reviewed plan")["with"]["script"]
    assert "--checksum ([0-9a-f]{64})" in lookup
    applied = step(jobs["apply"], "Apply exactly the reviewed plan")["run"]
    assert '--checksum "$CHECKSUM"' in applied
    drift = step(jobs["drift"], "Detect drift")["run"]
    assert drift == 'reconcile plan "$STATE_FILE" --detailed-exitcode'


def step(job: dict[str, Any], name: str | None, uses: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = next(
        s
        for s in job["steps"]
        if (name and s.get("name") == name) or (uses and s.get("uses") == uses)
    )
    return found


def test_gitlab_pipeline() -> None:
    pipeline = yaml.safe_load(GITLAB.read_text())
    assert pipeline["reconcile-apply"]["resource_group"] == "reconcile-$TALLYFY_ORG_ID"
    assert pipeline["reconcile-plan"]["rules"][0]["if"] == (
        '$CI_PIPELINE_SOURCE == "merge_request_event"'
    )
    assert pipeline["reconcile-drift"]["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "schedule"'
    compile(pipeline["variables"]["NOTES_PY"], "notes.py", "exec")
    assert pipeline["variables"]["MARKER"] == "<!-- reconcile-plan:${TALLYFY_ORG_ID} -->"
    assert pipeline["reconcile-plan"]["artifacts"]["paths"] == ["plan.json"]


def test_pre_commit_hook_runs_validate() -> None:
    (hook,) = yaml.safe_load(HOOKS.read_text())
    assert hook["id"] == "reconcile-validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
    words = shlex.split(hook["entry"])
    assert words == ["reconcile", "validate"]
    result = CliRunner().invoke(cli, [*words[1:], str(EXAMPLE)])
    assert result.exit_code == 0
    assert result.stdout == f"{EXAMPLE} is valid: 10 runs declared (4 archived, 6 active).\n"


def completion(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "reconcile"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_shell_completion_through_click() -> None:
    assert "complete -o nosort -F _reconcile_completion reconcile" in completion(
        _RECONCILE_COMPLETE="bash_source"
    )
    assert "compdef _reconcile_completion reconcile" in completion(_RECONCILE_COMPLETE="zsh_source")
    assert "complete --no-files --command reconcile" in completion(
        _RECONCILE_COMPLETE="fish_source"
    )
    words = {"COMP_WORDS": "reconcile apply --ch", "COMP_CWORD": "2"}
    assert completion(_RECONCILE_COMPLETE="bash_complete", **words) == "plain,--checksum\n"
    words = {"COMP_WORDS": "reconcile plan --format ", "COMP_CWORD": "3"}
    assert completion(_RECONCILE_COMPLETE="bash_complete", **words) == (
        "plain,text\nplain,json\nplain,markdown\n"
    )


def shell(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a recipe's script as GitHub Actions and GitLab run `run:` and `script:` steps."""
    environ = os.environ | {"STATE_FILE": "state.toml", **env}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ['PATH']}"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def pull_request(repo: Path) -> None:
    """A git repository whose default branch (seen as origin/main) declares every demo run as it
    is, and whose checked-out branch edits that to the example state file."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "--quiet", "--initial-branch", "main")
    git("config", "user.email", "ci@example.com")
    git("config", "user.name", "CI")
    live = {run_id: "archived" if run_id in DEMO_ARCHIVED else "active" for run_id in DEMO_IDS}
    write_state(repo / "state.toml", live)
    git("add", "state.toml")
    git("commit", "--quiet", "-m", "Declare the runs as they are")
    git("update-ref", "refs/remotes/origin/main", "HEAD")
    git("checkout", "--quiet", "-b", "edit")
    shutil.copy(EXAMPLE, repo / "state.toml")


def test_the_github_recipe_plans_applies_the_reviewed_plan_and_detects_drift(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    jobs = yaml.safe_load(GITHUB.read_text())["jobs"]
    pull_request(tmp_path)
    planned = shell(step(jobs["plan"], "Plan")["run"], tmp_path, BASE_REF="main")
    assert planned.returncode == 0, planned.stderr
    assert (tmp_path / "plan.md").read_text().startswith("**Plan: 2 to archive, 1 to activate")
    assert (
        "Against the baseline `origin/main:state.toml`: 3 requested"
        in (tmp_path / "plan.md").read_text()
    )
    assert json.loads((tmp_path / "plan.json").read_text())["summary"]["archive"] == 2
    assert sandbox.writes == []

    lookup = step(jobs["apply"], "Find the checksum of the reviewed plan")["with"]["script"]
    pattern = re.search(r"\.match\(/(.+?)/\)", lookup)
    assert pattern is not None
    comment = "<!-- reconcile-plan:x -->\n" + (tmp_path / "plan.md").read_text()
    found = re.search(pattern[1], comment)
    assert found is not None
    apply_step = step(jobs["apply"], "Apply exactly the reviewed plan")["run"]
    applied = shell(apply_step, tmp_path, CHECKSUM=found[1])
    assert applied.returncode == 0, applied.stderr
    assert len(sandbox.writes) == 3
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["ok"] == 3

    again = shell(apply_step, tmp_path, CHECKSUM=found[1])
    assert again.returncode == 0, "a re-run after success has nothing to write"
    assert again.stdout.endswith("No changes. 10 runs match state.toml.\n")

    drift = step(jobs["drift"], "Detect drift")["run"]
    assert shell(drift, tmp_path).returncode == 0
    sandbox.set_archived(DEMO_IDS[4], True)
    assert shell(drift, tmp_path).returncode == 2
    refused = shell(apply_step, tmp_path, CHECKSUM=found[1])
    assert refused.returncode == 3, "a change nobody reviewed is not applied"
    assert len(sandbox.writes) == 3


def test_the_gitlab_recipe_runs_the_same_commands(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    pipeline = yaml.safe_load(GITLAB.read_text())
    pull_request(tmp_path)
    fetch, plan_line = pipeline["reconcile-plan"]["script"][:2]
    assert fetch.startswith("git fetch --quiet origin ")
    planned = shell(plan_line, tmp_path, CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main")
    assert planned.returncode == 0, planned.stderr
    assert "3 requested (the declaration changed), 0 drift" in (tmp_path / "plan.md").read_text()
    digest = json.loads((tmp_path / "plan.json").read_text())["checksum"]
    (tmp_path / "checksum.txt").write_text(digest + "\n")
    apply_block = pipeline["reconcile-apply"]["script"][1]
    applied = shell(apply_block, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert len(sandbox.writes) == 3
    (tmp_path / "checksum.txt").write_text("\n")
    assert shell(apply_block, tmp_path).returncode == 0, "no reviewed changes and none live"
    assert shell(pipeline["reconcile-drift"]["script"][0], tmp_path).returncode == 0
