"""reconcile.differences: what moved, from DeepDiffs of plain records. Invariants: the reported
changes turn the old map into the new one, and a field is reported exactly when it differs."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from reconcile.differences import (
    RECORDED,
    Declaration,
    DeclarationChanges,
    FieldChange,
    compare_declarations,
    moved_fields,
)
from reconcile.domain import ObservedRun

_ids = st.sampled_from([f"{n:032x}" for n in range(1, 9)])
_declaration = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["archived", "active"]),
        "name": st.none() | st.sampled_from(["Onboarding", "Close", "x -> 'y'", ""]),
    }
)
_maps = st.dictionaries(_ids, _declaration, max_size=8)


def apply_changes(before: dict[str, dict[str, str | None]], edits: DeclarationChanges) -> object:
    after = {run_id: dict(value) for run_id, value in before.items()}
    for removed in edits.removed:
        assert after.pop(removed.run_id) == {"state": removed.state, "name": removed.name}
    for added in edits.added:
        assert added.run_id not in after
        after[added.run_id] = {"state": added.state, "name": added.name}
    for change in edits.changed:
        assert after[change.run_id][change.field] == change.before
        after[change.run_id][change.field] = change.after
    return after


@given(before=_maps, after=_maps)
def test_the_changes_turn_the_old_declarations_into_the_new(
    before: dict[str, dict[str, str | None]], after: dict[str, dict[str, str | None]]
) -> None:
    edits = compare_declarations(before, after)
    assert apply_changes(before, edits) == after
    assert bool(edits) == (before != after)
    assert [d.run_id for d in edits.added] == sorted(after.keys() - before.keys())
    assert [d.run_id for d in edits.removed] == sorted(before.keys() - after.keys())


def test_a_small_edit_in_words() -> None:
    run_a, run_b, run_c = (f"{n:032x}" for n in (1, 2, 3))
    edits = compare_declarations(
        {run_a: {"state": "active", "name": None}, run_b: {"state": "archived", "name": "B"}},
        {run_a: {"state": "archived", "name": "A"}, run_c: {"state": "active", "name": None}},
    )
    assert edits == DeclarationChanges(
        added=(Declaration(run_c, "active", None),),
        removed=(Declaration(run_b, "archived", "B"),),
        changed=(
            FieldChange(run_a, "name", None, "A"),
            FieldChange(run_a, "state", "active", "archived"),
        ),
    )
    assert edits.summary() == "1 added, 1 removed, 2 changed"
    assert str(edits.changed[1]) == "state 'active' -> 'archived'"
    assert not compare_declarations(
        {run_a: {"state": "active", "name": None}}, {run_a: {"state": "active", "name": None}}
    )


_text = st.none() | st.sampled_from(["2026-01-01T00:00:00.000Z", "active", "complete", "Run"])


@given(values=st.lists(_text, min_size=8, max_size=8))
def test_a_moved_field_is_reported_exactly_when_it_differs(values: list[str | None]) -> None:
    before = ObservedRun("a" * 32, "Run", "active", None, "2026-01-01T00:00:00.000Z")
    after = replace(
        before,
        archived_at=values[0],
        status=values[1] or "",
        name=values[2] or "",
        last_updated=values[3],
        checklist_id=values[4],  # not recorded in a saved plan: never reported
    )
    changes = moved_fields(before, after)
    expected = [f for f in RECORDED if getattr(before, f) != getattr(after, f)]
    assert [c.field for c in changes] == expected
    for change in changes:
        assert (change.before, change.after) == (
            getattr(before, change.field),
            getattr(after, change.field),
        )
