"""The state file: every rule, with file, line and key in every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.domain import RunState, Source
from reconcile.errors import StateFileError
from reconcile.state import DriftSettings, load_state

A = "3f2a9c0d5e6b47a8b9c0d1e2f3a4b5c6"
B = "9b1e2d3c4b5a69788796a5b4c3d2e1f0"


def write(tmp_path: Path, text: str, name: str = "state.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(StateFileError) as caught:
        load_state(path)
    return [str(p) for p in caught.value.problems]


def test_short_and_long_forms_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[tallyfy]\norg_id = "{"ab" * 16}"\n\n[runs]\n{A} = "archived"\n'
        f'[runs.{B}]\nstate = "active"\nname = "Onboarding"\n',
    )
    state = load_state(path)
    assert state.tallyfy.org_id == "ab" * 16
    assert [(r.run_id, r.state, r.name, r.source) for r in state.runs] == [
        (A, RunState.ARCHIVED, None, Source(str(path), 5)),
        (B, RunState.ACTIVE, "Onboarding", Source(str(path), 6)),
    ]
    assert len(state.sha256) == 64


def test_example_file_is_valid() -> None:
    state = load_state(Path(__file__).parent.parent / "state.example.toml")
    assert len(state.runs) == 10


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[tallyfy]\norg_id = 42\norgid = 'x'\n[runs]\n"
        f'{A.upper()} = "archived"\n"../{A[:29]}" = "active"\n'
        f'{A} = "complete"\n[runs.{B}]\nstat = "active"\nname = 7\n[extra]\n',
    )
    p = str(path)
    assert problems(path) == [
        f"{p}:2: [tallyfy.org_id] must be a string",
        f"{p}:3: [orgid] unknown key; did you mean 'org_id'?",
        f"{p}:5: [runs.{A.upper()}] run ID '{A.upper()}' must be lowercase (write '{A}')",
        f"{p}:6: [runs.../{A[:29]}] '../{A[:29]}' is not a run ID (32 lowercase hex characters, "
        "as in the run's URL)",
        f'{p}:7: [runs.{A}] \'complete\' is not a state; use "archived" or "active" (workflow '
        "statuses are not declared; only archived or not)",
        f'{p}:8: [runs.{B}.state] missing; set state = "archived" or state = "active"',
        f"{p}:9: [runs.{B}.stat] unknown key; did you mean 'state'?",
        f"{p}:10: [runs.{B}.name] must be a string",
        f"{p}:11: [extra] unknown key; valid keys: tallyfy, safety, drift, runs",
    ]


def test_run_declared_twice_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, f'[runs]\n{A} = "archived"\n\n[runs.{A}]\nstate = "active"\n')
    assert problems(path) == [
        f"{path}:4: [runs.{A}] run declared more than once (lines 2, 4); declare each run once"
    ]


def test_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, f'[runs]\n{A} = "archived"\n{B} = \n')
    assert problems(path) == [f"{path}:3: invalid TOML at column 36: Invalid value"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty; declare runs under a [runs] table (see state.example.toml)"),
        (
            b"  \n# only a comment\n",
            "[runs] no [runs] table; declare each run's desired "
            "state there (see state.example.toml)",
        ),
        (
            b'[tallyfy]\napi_url = "x"\n',
            "[runs] no [runs] table; declare each run's desired "
            "state there (see state.example.toml)",
        ),
    ],
)
def test_empty_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "state.toml"
    path.write_bytes(content)
    assert problems(path) == [f"{path}: {message}"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_bytes(b"[runs]\n# caf\xe9\n")
    assert problems(path) == [f"{path}:2: not UTF-8 text (byte 0xe9 at offset 12)"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert problems(path) == [
        f"{path}: no such file (create one from state.example.toml, or name another file)"
    ]


def test_value_of_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, f"[runs]\n{A} = true\nrunsx = 1\n")
    assert problems(path) == [
        f'{path}:2: [runs.{A}] must be "archived", "active", or a table with state = "..." and '
        'name = "..."',
        f"{path}:3: [runs.runsx] 'runsx' is not a run ID (32 lowercase hex characters, as in the "
        "run's URL)",
        f'{path}:3: [runs.runsx] must be "archived", "active", or a table with state = "..." and '
        'name = "..."',
    ]


def test_empty_runs_table_is_valid(tmp_path: Path) -> None:
    assert load_state(write(tmp_path, "[runs]\n")).runs == ()


def test_the_feed_bounds_of_the_drift_table(tmp_path: Path) -> None:
    text = f'[drift]\nlookback_days = 30\nfeed_pages = 40\n[runs]\n{A} = "active"\n'
    path = write(tmp_path, text)
    drift = load_state(path).drift
    assert (drift.auto_archived, drift.lookback_days, drift.feed_pages) == ("revert", 30, 40)
    bare = write(tmp_path, f'[runs]\n{A} = "active"\n', "bare.toml")
    assert load_state(bare).drift == DriftSettings()
    bad = write(
        tmp_path,
        f'[drift]\nlookback_days = 0\nfeed_pages = "15"\n[runs]\n{A} = "active"\n',
        "bad.toml",
    )
    assert problems(bad) == [
        f"{bad}:2: [drift.lookback_days] must be a whole number of days from 1 to 3650 (got 0)",
        f"{bad}:3: [drift.feed_pages] must be a whole number of pages from 1 to 1000 (got '15')",
    ]
    for key, value in (("lookback_days", "3651"), ("feed_pages", "1001"), ("feed_pages", "true")):
        edge = write(tmp_path, f'[drift]\n{key} = {value}\n[runs]\n{A} = "active"\n', "edge.toml")
        assert len(problems(edge)) == 1
