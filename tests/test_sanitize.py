"""Text from the API is data, never terminal control or markup: the one sanitizer, and the CLI's
text, Markdown and JSON output of hostile names, statuses and messages from the sandbox."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconcile.render.sanitize import clean, quoted
from reconcile.sandbox import Sandbox, SandboxRun
from tests.guards import FIGURES
from tests.helpers import run
from tests.hostile import HOSTILE, assert_inert, table_rows

CHANGE_LINE = re.compile(r"^  (archive|activate) +([0-9a-f]{32})  ", re.MULTILINE)
"""The start of a change line of the text output."""


def test_clean_escapes_what_a_terminal_would_act_on() -> None:
    assert clean("\x1b[2J\x1b[H") == "\\x1b[2J\\x1b[H"
    assert clean("a\r\nb\tc\x07") == "a\\r\\nb\\tc\\x07"
    assert clean("\u202eevil\u2066x\u2069") == "\\u202eevil\\u2066x\\u2069"
    assert clean("line\u2028sep\x85") == "line\\u2028sep\\x85"
    assert clean("\ud800 \U000e0041 \u3164 \xa0") == "\\ud800 \\U000e0041 \\u3164 \\xa0"
    assert clean("zero\u200bwidth\ufeff") == "zero\\u200bwidth\\ufeff"


def test_clean_leaves_printable_text_exactly_as_it_is() -> None:
    text = "Client onboarding - Globex (café, 日本語, ✓, 😀) <b>|</b> `x` \\ 'q' \"d\""
    assert clean(text) is text
    assert quoted("it's") == "'it's'"


@given(st.text(alphabet=st.characters(exclude_categories=())))
def test_clean_output_is_one_printable_line(text: str) -> None:
    shown = clean(text)
    assert "\n" not in shown
    assert_inert(shown)
    assert clean(shown) == shown


@given(st.text(alphabet=st.characters(exclude_categories=(), exclude_characters='\\"')))
def test_clean_escapes_read_back_as_the_original(text: str) -> None:
    """The escapes are Python's: nothing is lost, a reader can tell exactly what was sent."""
    assert ast.literal_eval(f'"{clean(text)}"') == text


def hostile_state(sandbox: Sandbox, path: Path) -> tuple[Path, list[str]]:
    """Four runs per hostile string: named with it and to be archived; with it as status and to
    be archived; named with it, already right, with an outdated label (so a warning quotes the
    name); named with it and not declared (an unmanaged run). Returns the state file and the runs
    the plan changes, in plan order."""
    runs: dict[str, list[SandboxRun]] = {
        kind: [] for kind in ("name", "status", "label", "unmanaged")
    }
    for n, text in enumerate(HOSTILE):
        for k, kind in enumerate(runs):
            run_id = f"{0xA0000 + 4 * n + k:032x}"
            status = text if kind == "status" else "active"
            runs[kind].append(
                SandboxRun(id=run_id, name=f"Run {n}" if kind == "status" else text, status=status)
            )
    sandbox.add_runs([run for kind in runs.values() for run in kind])
    changed = [run.id for run in runs["name"] + runs["status"]]
    lines = ["[runs]", *(f'{run_id} = "archived"' for run_id in changed)]
    lines += [f'{run.id} = {{ state = "active", name = "old" }}' for run in runs["label"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, changed


def test_hostile_names_and_statuses_forge_nothing_in_any_plan_format(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path, changed = hostile_state(sandbox, tmp_path / "state.toml")

    text = run("plan", str(path), "--force", "--show-unmanaged")
    assert text.exit_code == 0, text.output
    assert_inert(text.output)
    shown = [m[2] for m in CHANGE_LINE.finditer(text.output)]
    assert shown == changed  # one line per change, in plan order, and no other
    assert len(re.findall("^Warning: ", text.output, re.MULTILINE)) == len(HOSTILE) + 1  # + a gate

    markdown = run("plan", str(path), "--force", "--format", "markdown", "--show-unmanaged").output
    assert_inert(markdown)
    rows = [line for line in markdown.splitlines() if line.startswith("| archive |")]
    assert [row.split("`")[1] for row in rows] == changed
    assert table_rows(markdown) >= len(changed)
    for markup in ("<img", "<!--", "<details><summary>x"):
        assert markup not in markdown

    raw = run("plan", str(path), "--force", "--format", "json", "--show-unmanaged").stdout
    assert raw.isascii()
    document: dict[str, Any] = json.loads(raw)
    for entry in document["changes"] + document["unchanged"] + document["unmanaged"]:
        truth = sandbox.run(entry["run_id"])
        assert (entry["name"], entry["status"]) == (truth["name"], truth["status"])
    FIGURES["hostile strings shown through the CLI"] += 3 * 4 * len(HOSTILE)
    FIGURES["forged lines"] += len(shown) - len(changed)


def test_apply_of_hostile_runs_reports_inertly(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path, changed = hostile_state(sandbox, tmp_path / "state.toml")
    summary = tmp_path / "summary.md"
    report = tmp_path / "report.json"
    result = run(
        "apply",
        str(path),
        "--auto-approve",
        "--force",
        "--report",
        str(report),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 0, result.output
    assert_inert(result.output)
    assert [m[2] for m in CHANGE_LINE.finditer(result.output)] == changed
    done = [line.split()[1] for line in result.output.splitlines() if line.startswith("  ok ")]
    assert sorted(done) == sorted(changed)
    markdown = summary.read_text(encoding="utf-8")
    assert_inert(markdown)
    assert table_rows(markdown) == len(changed)
    outcome = json.loads(report.read_text(encoding="utf-8"))
    assert [entry["name"] for entry in outcome["changes"]] == [
        sandbox.run(run_id)["name"] for run_id in changed
    ]
    assert all(sandbox.is_archived(run_id) for run_id in changed)
    FIGURES["hostile strings shown through the CLI"] += 3 * 2 * len(HOSTILE)
    FIGURES["forged lines"] += 0
