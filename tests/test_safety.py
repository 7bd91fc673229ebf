"""Safety gates end to end: each gate refuses apply with exit 3 and no write, plan exits 3 with the
same reason in every format, and the state file's [safety] table, the flags and --force move or
lift them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.sandbox import Sandbox
from tests.demo import ORG
from tests.helpers import add_runs, run, sandbox_states, write_state


def declare(
    path: Path, ids: list[str], archive: int, *, state: str = "archived", safety: str = ""
) -> Path:
    """A state file declaring `ids`, the first `archive` of them as `state` and the rest as the
    other state."""
    other = "active" if state == "archived" else "archived"
    write_state(path, {run_id: state if n < archive else other for n, run_id in enumerate(ids)})
    if safety:
        path.write_text(f"[safety]\n{safety}\n" + path.read_text())
    return path


def test_archiving_more_than_30_percent_of_active_runs_is_refused(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 20, archived=False)
    path = declare(tmp_path / "state.toml", ids, 7)
    sandbox.clear_log()

    result = run("apply", str(path), "--auto-approve")
    assert result.exit_code == 3, result.output
    assert result.stderr == (
        "Error: A safety gate refused the plan; nothing was written:\n"
        "  - the plan would archive 7 of the 20 declared runs that are active now (35.0%), over "
        "the limit of 30% (max_archive_percent, checked from 10 active runs on).\n"
        "Check the state file and the organization. If the plan is intended, raise the limit in "
        "the state file's [safety] table or with --max-archive-percent / --max-activate-percent / "
        "--gate-min-runs, or pass --force.\n"
    )
    assert sandbox.writes == []

    plan = run("plan", str(path))
    assert plan.exit_code == 3, "the pull request's check fails before the merge"
    reason = "the plan would archive 7 of the 20 declared runs that are active now (35.0%)"
    assert f"Warning: apply would refuse: {reason}" in plan.stdout
    assert plan.stdout.endswith("Plan: 7 to archive, 0 to activate, 13 unchanged.\n")
    assert plan.stderr.startswith(
        f"Error: apply would refuse this plan; nothing can be applied as it is:\n  - {reason}"
    )
    assert sandbox.writes == []


def test_plan_exits_3_with_the_reason_in_every_format_and_force_shows_the_forced_plan(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 20, archived=False)
    path = declare(tmp_path / "state.toml", ids, 7)
    reason = "the plan would archive 7 of the 20 declared runs that are active now (35.0%)"
    as_json = run("plan", str(path), "--format", "json", "--detailed-exitcode")
    assert as_json.exit_code == 3, "3 wins over 2: there is nothing to review that could be applied"
    document = json.loads(as_json.stdout)
    assert any(reason in warning for warning in document["warnings"])
    markdown = run("plan", str(path), "--format", "markdown")
    assert markdown.exit_code == 3
    assert f"> **Warning:** apply would refuse: {reason}" in markdown.stdout

    forced = run("plan", str(path), "--force", "--detailed-exitcode", "--format", "json")
    assert forced.exit_code == 2
    assert forced.stderr.startswith(f"Warning: --force overrides a safety gate: {reason}")
    assert json.loads(forced.stdout)["warnings"] == []
    assert json.loads(forced.stdout)["checksum"] == document["checksum"]
    applied = run(
        "apply", str(path), "--auto-approve", "--force", "--checksum", document["checksum"]
    )
    assert applied.exit_code == 0, applied.output
    assert len(sandbox.writes) == 7, "apply --force carried out the plan plan --force showed"


def test_exactly_at_the_limit_passes(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    ids = add_runs(sandbox, 20, archived=False)
    path = declare(tmp_path / "state.toml", ids, 6)
    plan = run("plan", str(path))
    assert "Warning" not in plan.stdout
    result = run("apply", str(path), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert len(sandbox.writes) == 6


def test_below_the_minimum_number_of_runs_the_gate_is_not_checked(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 9, archived=False)
    path = declare(tmp_path / "state.toml", ids, 9)
    result = run("apply", str(path), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert sandbox_states(sandbox, tuple(ids)) == dict.fromkeys(ids, "archived")

    more = add_runs(sandbox, 10, archived=False, start=100)
    path = declare(tmp_path / "more.toml", more, 10)
    refused = run("apply", str(path), "--auto-approve", "--gate-min-runs", "5")
    assert refused.exit_code == 3
    assert "checked from 5 active runs on" in refused.stderr


def test_activating_more_than_30_percent_of_archived_runs_is_refused(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 10, archived=True)
    path = declare(tmp_path / "state.toml", ids, 4, state="active")
    sandbox.clear_log()
    result = run("apply", str(path), "--auto-approve")
    assert result.exit_code == 3
    assert (
        "the plan would activate 4 of the 10 declared runs that are archived now (40.0%), over "
        "the limit of 30% (max_activate_percent, checked from 10 archived runs on)."
    ) in result.stderr
    assert sandbox.writes == []

    forced = run("apply", str(path), "--auto-approve", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stderr.startswith("Warning: --force overrides a safety gate: the plan would ")
    assert [w.method for w in sandbox.writes] == ["PUT"] * 4


def test_the_safety_table_and_flags_move_the_limits(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 20, archived=False)
    strict = declare(tmp_path / "strict.toml", ids, 5, safety="max_archive_percent = 20")
    refused = run("apply", str(strict), "--auto-approve")
    assert refused.exit_code == 3
    assert "(25.0%), over the limit of 20%" in refused.stderr

    loose = declare(tmp_path / "loose.toml", ids, 10, safety="max_archive_percent = 50.5")
    flagged = run("apply", str(loose), "--auto-approve", "--max-archive-percent", "40")
    assert flagged.exit_code == 3, "the flag overrides the file"
    assert "(50.0%), over the limit of 40%" in flagged.stderr
    assert sandbox.writes == []

    result = run("apply", str(loose), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert len(sandbox.writes) == 10


def test_a_state_file_without_runs_is_refused(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    path.write_text(f'[tallyfy]\norg_id = "{ORG}"\n\n[runs]\n')
    plan = run("plan", str(path))
    assert plan.exit_code == 3
    assert plan.stdout == (
        f"Organization {ORG} at {cli_env}; 0 runs declared in {path}.\n"
        "\n"
        f"Warning: apply would refuse: {path} declares no runs at all; an empty state file is "
        "more likely a mistake (a bad merge, the wrong file) than an intent.\n"
        "\n"
        f"No changes. 0 runs match {path}.\n"
    )
    refused = run("apply", str(path), "--auto-approve")
    assert refused.exit_code == 3
    assert f"  - {path} declares no runs at all" in refused.stderr
    forced = run("apply", str(path), "--force")
    assert forced.exit_code == 0
    assert sandbox.writes == []


def test_max_changes_caps_the_writes_of_one_apply(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 10, archived=False)
    path = declare(tmp_path / "state.toml", ids, 3)
    for extra in ([], ["--force"]):
        refused = run("apply", str(path), "--auto-approve", "--max-changes", "2", *extra)
        assert refused.exit_code == 3
        assert refused.stderr == (
            "Error: The plan has 3 changes, more than --max-changes 2; nothing was written. "
            "Raise --max-changes, or split the change into smaller steps.\n"
        )
    assert sandbox.writes == []
    planned = run("plan", str(path), "--max-changes", "2", "--force")
    assert planned.exit_code == 3, "--force does not lift --max-changes, in plan either"
    assert "Warning: apply would refuse: the plan has 3 changes, more than --max-changes 2." in (
        planned.stdout
    )
    assert run("plan", str(path), "--max-changes", "3").exit_code == 0
    result = run("apply", str(path), "--auto-approve", "--max-changes", "3")
    assert result.exit_code == 0, result.output
    assert len(sandbox.writes) == 3


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            "max_archive_percent = 130",
            "[safety.max_archive_percent] must be a percentage from 0 to 100 (got 130)",
        ),
        (
            'max_activate_percent = "30"',
            "[safety.max_activate_percent] must be a percentage from 0 to 100 (got '30')",
        ),
        ("min_runs = 2.5", "[safety.min_runs] must be a whole number of runs, 0 or more (got 2.5)"),
        (
            "min_runs = true",
            "[safety.min_runs] must be a whole number of runs, 0 or more (got True)",
        ),
        ("max_archive = 10", "[max_archive] unknown key; did you mean 'max_archive_percent'?"),
    ],
)
def test_a_bad_safety_table_is_reported_with_its_line(
    tmp_path: Path, table: str, problem: str
) -> None:
    path = tmp_path / "state.toml"
    path.write_text(f'[runs]\n{"a" * 32} = "active"\n\n[safety]\n{table}\n')
    result = run("validate", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: 1 problem in the state file; nothing was sent to Tallyfy:\n  {path}:5: {problem}\n"
    )


def test_a_saved_plan_keeps_its_limits_and_is_gated_at_apply(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 20, archived=False)
    path = declare(tmp_path / "state.toml", ids, 8)
    strict, loose = tmp_path / "strict.json", tmp_path / "loose.json"
    assert run("plan", str(path), "--out", str(strict)).exit_code == 3, "saved all the same"
    assert run("plan", str(path), "--out", str(loose), "--max-archive-percent", "40").exit_code == 0
    sandbox.clear_log()

    refused = run("apply", "--plan", str(strict))
    assert refused.exit_code == 3
    assert "the plan would archive 8 of the 20 declared runs" in refused.stderr
    assert sandbox.writes == []

    result = run("apply", "--plan", str(loose))
    assert result.exit_code == 0, result.output
    assert len(sandbox.writes) == 8
