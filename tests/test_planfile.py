"""reconcile.planfile on plain values: a saved plan reads back as the plan that was saved, the
checksum covers exactly the writes, and a file that is not a plan is refused with every problem."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.errors import PlanFileError, SafetyError
from reconcile.planfile import checksum, document, load_plan
from reconcile.render import render_plan_json
from reconcile.state import SafetySettings
from tests.helpers import make_plan


def save(tmp_path: Path, value: Any) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    states=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=12),
    limit=st.sampled_from([0.0, 12.5, 30.0, 100.0]),
)
def test_a_saved_plan_reads_back_as_the_plan_saved(
    tmp_path: Path, states: list[tuple[bool, bool]], limit: float
) -> None:
    limits = SafetySettings(max_archive_percent=limit, min_runs=3)
    plan = make_plan([now for now, _ in states], [want for _, want in states], limits)
    stream = io.StringIO()
    render_plan_json(plan, stream, warnings=("a gate",))
    loaded = load_plan(save(tmp_path, json.loads(stream.getvalue())))
    assert (loaded.org_id, loaded.api_url, loaded.state_file) == (
        plan.org_id,
        plan.api_url,
        plan.state_file,
    )
    assert loaded.changes == plan.changes
    assert loaded.unchanged == plan.unchanged
    assert loaded.limits == limits
    assert checksum(loaded) == checksum(plan)


def test_the_checksum_covers_the_writes_and_nothing_else() -> None:
    plan = make_plan([False, False, True], [True, False, True])
    assert checksum(plan) == checksum(replace(plan, unchanged=(), baseline="main.toml"))
    assert checksum(plan) != checksum(make_plan([False, False, True], [True, True, True]))
    assert checksum(plan) != checksum(replace(plan, changes=()))


def test_an_edited_plan_is_refused(tmp_path: Path) -> None:
    saved = document(make_plan([False, True], [True, False]))
    saved["changes"] = saved["changes"][:1]
    with pytest.raises(SafetyError, match="does not match its checksum"):
        load_plan(save(tmp_path, saved))


def test_every_problem_of_a_malformed_plan_is_listed(tmp_path: Path) -> None:
    saved = document(make_plan([False, True], [True, True]))
    del saved["org_id"]
    saved["safety"]["min_runs"] = -1
    saved["changes"][0]["current"] = "gone"
    saved["unchanged"][0]["run_id"] = "xyz"
    with pytest.raises(PlanFileError) as refused:
        load_plan(save(tmp_path, saved))
    problems = str(refused.value).splitlines()[1:]
    assert problems == [
        "  org_id: missing or not a string",
        "  safety: a percentage outside 0-100 or a negative min_runs",
        '  changes[0].current: \'gone\' is not "archived" or "active"',
        "  unchanged[0].run_id: 'xyz' is not a run ID",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "is not JSON"),
        (b"[]", "the document is not a JSON object"),
        (b'{"format_version": 2}', "format_version is 2, not 1"),
    ],
)
def test_what_is_not_a_plan_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(PlanFileError, match=message):
        load_plan(path)
    with pytest.raises(PlanFileError, match="Cannot read the plan file"):
        load_plan(tmp_path / "missing.json")
