"""A long plan is summarised by blueprint and by owner, largest first, in text and Markdown; the
JSON plan always carries the groups."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from jsonschema import Draft202012Validator

from reconcile.cli import cli
from reconcile.domain import ObservedRun
from reconcile.plan import Group, build_plan
from reconcile.sandbox import Sandbox, SandboxRun
from reconcile.state import load_state
from tests.helpers import run, write_state

PLAN_SCHEMA = json.loads(files("reconcile").joinpath("schema/plan.schema.json").read_text())
ONBOARDING = "0b0b0b0b" * 4
OFFBOARDING = "0f0f0f0f" * 4
AUDIT = "0a0a0a0a" * 4
# blueprint, its title, owner, and how many active runs of each the file declares archived
LAYOUT = [
    (ONBOARDING, "Client onboarding", 7, 12),
    (OFFBOARDING, "Offboarding | *staff*", 7, 6),
    (AUDIT, "Quarterly audit", 9, 4),
]


def seed(sandbox: Sandbox, layout: list[tuple[str, str, int, int]], tmp_path: Path) -> Path:
    """Active runs as `layout` says, and a state file declaring every one of them archived."""
    runs = [
        SandboxRun(
            id=f"{0xB0000000 + len(layout) * n + index:032x}",
            name=f"{title} {n}",
            checklist_id=blueprint,
            checklist_title=title,
            owner_id=owner,
        )
        for index, (blueprint, title, owner, count) in enumerate(layout)
        for n in range(count)
    ]
    sandbox.add_runs(runs)
    return write_state(tmp_path / "state.toml", {r.id: "archived" for r in runs})


def test_a_long_plan_is_summarised_by_blueprint_and_owner(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    state = seed(sandbox, LAYOUT, tmp_path)
    # --force: the plan archives every declared run, which a gate refuses; the groups are the point

    text = run("plan", str(state), "--force")
    assert text.exit_code == 0, text.output
    head = text.output.split("\n\n")[1].splitlines()
    assert head == [
        "22 changes by blueprint:",
        f"      12  blueprint 'Client onboarding' ({ONBOARDING})",
        f"       6  blueprint 'Offboarding | *staff*' ({OFFBOARDING})",
        f"       4  blueprint 'Quarterly audit' ({AUDIT})",
        "22 changes by owner:",
        "      18  owner 7",
        "       4  owner 9",
    ]
    assert text.output.count("  archive   ") == 22  # the per-run lines are all still there

    markdown = run("plan", str(state), "--force", "--format", "markdown").output
    assert (
        "| blueprint | changes |\n| --- | --- |\n"
        f"| Client onboarding (`{ONBOARDING}`) | 12 |\n"
        f"| Offboarding \\| \\*staff\\* (`{OFFBOARDING}`) | 6 |\n"
        f"| Quarterly audit (`{AUDIT}`) | 4 |\n"
    ) in markdown
    assert "| owner | changes |\n| --- | --- |\n| `7` | 18 |\n| `9` | 4 |\n" in markdown
    assert markdown.count("| archive |") == 22

    summary = plan_json(state)["summary"]
    assert summary["by_blueprint"] == [
        {"id": ONBOARDING, "title": "Client onboarding", "count": 12},
        {"id": OFFBOARDING, "title": "Offboarding | *staff*", "count": 6},
        {"id": AUDIT, "title": "Quarterly audit", "count": 4},
    ]
    assert summary["by_owner"] == [
        {"id": 7, "title": None, "count": 18},
        {"id": 9, "title": None, "count": 4},
    ]

    saved = tmp_path / "plan.json"
    assert run("plan", str(state), "--force", "--out", str(saved)).exit_code == 0
    shown = CliRunner().invoke(cli, ["apply", "--plan", str(saved)], input="n\n")
    assert "\n".join(head) in shown.output, shown.output
    assert not any(request.is_write for request in sandbox.requests)


def test_a_short_plan_lists_its_changes_without_groups(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    state = seed(sandbox, [(ONBOARDING, "Client onboarding", 7, 20)], tmp_path)
    text = run("plan", str(state)).output
    markdown = run("plan", str(state), "--format", "markdown").output
    assert text.count("  archive   ") == 20
    assert "changes by" not in text
    assert "| blueprint | changes |" not in markdown
    assert plan_json(state)["summary"]["by_owner"] == [{"id": 7, "title": None, "count": 20}]


def plan_json(state: Path) -> dict[str, Any]:
    result = run("plan", str(state), "--format", "json")
    document: dict[str, Any] = json.loads(result.stdout)
    Draft202012Validator(PLAN_SCHEMA).validate(document)
    return document


def test_groups_are_largest_first_and_ties_put_unknowns_last() -> None:
    def observed(
        n: int, blueprint: str | None, owner: int | None, title: str | None
    ) -> ObservedRun:
        return ObservedRun(
            run_id=f"{n:032x}",
            name=f"Run {n}",
            status="active",
            archived_at=None,
            last_updated=None,
            checklist_id=blueprint,
            checklist_title=title,
            owner_id=owner,
        )

    runs = [
        observed(1, None, None, None),
        observed(2, AUDIT, 3, None),
        observed(3, AUDIT, 3, "Quarterly audit"),
        observed(4, ONBOARDING, 2, "Client onboarding"),
        observed(5, OFFBOARDING, None, ""),
    ]
    text = "[runs]\n" + "".join(f'{run.run_id} = "archived"\n' for run in runs)
    state = load_state("s.toml", raw=text.encode())
    plan = build_plan(state, {run.run_id: run for run in runs}, org_id=AUDIT, api_url="x")
    assert plan.by_blueprint == (
        Group(AUDIT, "Quarterly audit", 2),
        Group(ONBOARDING, "Client onboarding", 1),
        Group(OFFBOARDING, None, 1),
        Group(None, None, 1),
    )
    assert plan.by_owner == (Group(3, None, 2), Group(None, None, 2), Group(2, None, 1))
    assert not plan.summarised
