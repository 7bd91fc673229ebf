"""The pure parts of `reconcile import`: the filters (reconcile.selection) and the state file they
write (reconcile.importer), on plain values."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconcile.domain import ObservedRun, RunState, Tag
from reconcile.errors import ConfigError, StateFileError
from reconcile.importer import build_import
from reconcile.selection import Selection, make_selection
from reconcile.state import load_state
from tests.demo import ORG
from tests.helpers import STAMP

BLUEPRINT = "b" * 32


def observed(n: int, **fields: Any) -> ObservedRun:
    return replace(ObservedRun(f"{n:032x}", f"Run {n}", "active", None, STAMP), **fields)


def test_every_unusable_filter_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        make_selection(blueprint="ACME", name="(")
    message = str(refused.value)
    assert "--blueprint 'ACME' is not a blueprint ID" in message
    assert "--name '(' is not a regular expression" in message
    assert message.endswith("Nothing was read or written.")


def test_each_filter_must_match() -> None:
    run = observed(
        1,
        checklist_id=BLUEPRINT,
        owner_id=7,
        tags=(Tag("t1", "audit"),),
        started_at="2026-02-10T12:00:00.000Z",
        name="Quarterly audit",
    )
    assert Selection().matches(run)
    assert make_selection(blueprint=BLUEPRINT, owner=7, tag="audit", name="audit$").matches(run)
    assert make_selection(tag="t1").matches(run)
    for unmatched in (
        make_selection(blueprint="c" * 32),
        make_selection(owner=8),
        make_selection(tag="onboarding"),
        make_selection(name="^audit"),
        make_selection(started_before=datetime(2026, 2, 10)),
        make_selection(started_after=datetime(2026, 2, 11)),
    ):
        assert not unmatched.matches(run), unmatched.describe()
    assert make_selection(started_after=datetime(2026, 2, 10, tzinfo=UTC)).matches(run)
    assert not make_selection(started_before=datetime(2027, 1, 1)).matches(observed(2))


def test_the_listing_is_narrowed_only_to_a_superset_and_the_filters_are_described() -> None:
    selection = make_selection(
        include="archived",
        blueprint=BLUEPRINT,
        tag="audit",
        owner=7,
        started_before=datetime(2026, 3, 1),
        started_after=datetime(2026, 1, 1),
        name="Q[1-4]",
    )
    assert selection.query() == {"checklist_id": BLUEPRINT, "owners": "7", "with": "tags"}
    assert selection.describe() == (
        f"--include archived --blueprint {BLUEPRINT} --tag 'audit' --owner 7 "
        "--started-before 2026-03-01 --started-after 2026-01-01 --name 'Q[1-4]'"
    )
    assert selection.name == re.compile("Q[1-4]")
    assert Selection().query() == {}


def test_a_new_file_declares_exactly_the_runs_read(tmp_path: Path) -> None:
    runs = [observed(1), observed(2, archived_at=STAMP, name='Say "hi"\nthere')]
    output = tmp_path / "state.toml"
    imported = build_import(output, runs, org_id=ORG, selection=Selection(), existing=None)
    assert imported.summary == f"Wrote 2 runs (1 archived, 1 active) to {output}."
    output.write_text(imported.text, encoding="utf-8")
    state = load_state(output)
    assert state.tallyfy.org_id == ORG
    assert [(r.run_id, r.state, r.name) for r in state.runs] == [
        (runs[0].run_id, RunState.ACTIVE, "Run 1"),
        (runs[1].run_id, RunState.ARCHIVED, 'Say "hi"\nthere'),
    ]
    with pytest.raises(ConfigError, match="No run of organization"):
        build_import(output, [], org_id=ORG, selection=Selection(), existing=None)


def test_a_merge_appends_only_what_the_file_lacks(tmp_path: Path) -> None:
    output = tmp_path / "state.toml"
    output.write_text(f'# mine\n[runs]\n{observed(1).run_id} = "archived"\n', encoding="utf-8")
    existing = load_state(output)
    merged = build_import(
        output, [observed(1), observed(2)], org_id=ORG, selection=Selection(), existing=existing
    )
    assert merged.text.startswith(output.read_text(encoding="utf-8").rstrip("\n") + "\n\n")
    assert [run.run_id for run in merged.written] == [observed(2).run_id]
    assert merged.kept == 1
    same = build_import(output, [observed(1)], org_id=ORG, selection=Selection(), existing=existing)
    assert same.text == output.read_text(encoding="utf-8")
    assert same.summary.startswith("No new runs:")

    inline = tmp_path / "inline.toml"
    inline.write_text(f'runs = {{ {observed(1).run_id} = "active" }}\n', encoding="utf-8")
    with pytest.raises(StateFileError, match="cannot be appended"):
        build_import(
            inline, [observed(2)], org_id=ORG, selection=Selection(), existing=load_state(inline)
        )
    other = tmp_path / "other.toml"
    other.write_text(f'[tallyfy]\norg_id = "{"f" * 32}"\n[runs]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=f"declares organization {'f' * 32}"):
        build_import(
            other, [observed(2)], org_id=ORG, selection=Selection(), existing=load_state(other)
        )
