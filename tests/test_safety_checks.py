"""reconcile.safety on plain values, without a server: the gates, the order of the checks before
the first write, and what is left of a saved plan."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.errors import ConfigError, SafetyError
from reconcile.plan import SavedPlan
from reconcile.planfile import checksum
from reconcile.safety import (
    check_before_writes,
    check_target,
    parse_checksum,
    remaining,
    tripped,
)
from reconcile.state import SafetySettings
from tests.demo import ORG
from tests.helpers import API, STAMP, make_plan


def test_an_empty_file_trips_a_gate_naming_it() -> None:
    (gate,) = tripped(make_plan([], []))
    assert gate.startswith("state.toml declares no runs at all")


@given(
    active=st.integers(0, 30),
    archive=st.integers(0, 30),
    limit=st.sampled_from([0.0, 10.0, 30.0, 100.0]),
    min_runs=st.integers(0, 20),
)
def test_the_archive_gate_trips_exactly_over_its_limit(
    active: int, archive: int, limit: float, min_runs: int
) -> None:
    archive = min(archive, active)
    limits = SafetySettings(max_archive_percent=limit, min_runs=min_runs)
    plan = make_plan(
        [False] * active + [True], [True] * archive + [False] * (active - archive) + [True], limits
    )
    gates = [gate for gate in tripped(plan) if "would archive" in gate]
    assert bool(gates) == (active >= min_runs and archive * 100 > limit * active)


def test_the_checks_before_writes_in_order() -> None:
    plan = replace(make_plan([False] * 4, [True] * 4), gates=("a gate",))
    with pytest.raises(SafetyError, match="checksum"):
        check_before_writes(plan, expected_checksum="0" * 64, force=True, max_changes=0)
    with pytest.raises(SafetyError, match="more than --max-changes 3"):
        check_before_writes(plan, expected_checksum=checksum(plan), force=True, max_changes=3)
    with pytest.raises(SafetyError, match=r"A safety gate refused the plan.*\n  - a gate\n"):
        check_before_writes(plan, expected_checksum=None, force=False, max_changes=4)
    check_before_writes(plan, expected_checksum=checksum(plan), force=True, max_changes=4)
    # A plan with no changes needs no checksum: re-running a finished apply is harmless.
    done = make_plan([True], [True])
    check_before_writes(done, expected_checksum="0" * 64, force=False, max_changes=0)


def test_a_checksum_is_normalized_or_refused() -> None:
    assert parse_checksum(f"  {'AB' * 32}\n") == "ab" * 32
    with pytest.raises(ConfigError, match="is not a sha256 checksum"):
        parse_checksum("abc")


def test_a_saved_plan_for_another_target_is_refused() -> None:
    plan = make_plan([False], [True])
    check_target(plan, "plan.json", org_id=ORG, api_url=API)
    with pytest.raises(SafetyError, match=f"made for organization {ORG} at {API}, but"):
        check_target(plan, "plan.json", org_id="f" * 32, api_url=API)


def test_what_is_left_of_a_saved_plan() -> None:
    saved = make_plan([False, False, True], [True, True, True])
    first, second, third = (run.run_id for run in saved.runs)
    now = {run.run_id: run.observed for run in saved.runs}
    now[first] = replace(now[first], archived_at=STAMP)  # done meanwhile: skipped
    left = remaining(saved, "plan.json", now)
    assert [change.run_id for change in left.changes] == [second]
    assert {run.run_id for run in left.unchanged} == {first, third}
    assert left.saved == SavedPlan("plan.json", reviewed=2, done=1)
    assert left.limits == saved.limits

    now[second] = replace(now[second], status="complete", name="Renamed")
    with pytest.raises(SafetyError) as refused:
        remaining(saved, "plan.json", now)
    (line,) = str(refused.value).splitlines()[1:]
    assert line.startswith(f"  {second} (state.toml:3): planned from active")
    assert line.endswith("; changed: status 'active' -> 'complete', name 'Run' -> 'Renamed'")
