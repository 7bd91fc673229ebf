"""`reconcile refresh` end to end against the sandbox over HTTP: it accepts the live state into the
file, changes nothing else, never writes to Tallyfy, and leaves a file that plans no change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import pipeline
from reconcile.config import TOKEN_ENV, Flags, Settings
from reconcile.differences import Declaration, DeclarationChanges, FieldChange
from reconcile.errors import ConfigError
from reconcile.sandbox import Sandbox, SandboxRun, serve
from reconcile.tallyfy import TallyfyClient
from tests.demo import DEMO_IDS, ORG, ROOT, TOKEN
from tests.helpers import run, sandbox_connect

EXAMPLE = ROOT / "state.example.toml"
GONE = "0123456789abcdef" * 2


def writes(sandbox: Sandbox) -> list[str]:
    return [f"{r.method} {r.path}" for r in sandbox.requests if r.method not in ("GET", "HEAD")]


def test_refresh_changes_only_the_drifted_values_and_keeps_every_other_byte(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.toml"
    state.write_bytes(EXAMPLE.read_bytes())
    before = EXAMPLE.read_text().splitlines(keepends=True)
    drifted = run("plan", str(state), "--format", "json")
    assert drifted.exit_code == 0

    refreshed = run("refresh", str(state), "--detailed-exitcode")

    assert refreshed.exit_code == 2, refreshed.output
    after = state.read_text().splitlines(keepends=True)
    assert len(after) == len(before)
    changed = {n for n, (old, new) in enumerate(zip(before, after, strict=True)) if old != new}
    # The demo organization differs from the example file on three runs (two to archive, one to
    # activate); each is a short line whose value alone changes, its comment kept.
    assert [after[n].split("=")[0] for n in sorted(changed)] == [
        before[n].split("=")[0] for n in sorted(changed)
    ]
    assert len(changed) == 3
    assert all(after[n].split('"')[2] == before[n].split('"')[2] for n in changed)
    assert refreshed.output.endswith(
        f"{state} was refreshed: 3 states accepted from Tallyfy (1 now archived, 2 now active).\n"
    )
    assert refreshed.output.startswith(f"--- a/{state}\n+++ b/{state}\n")
    assert writes(sandbox) == []
    assert run("plan", str(state), "--detailed-exitcode").exit_code == 0
    again = run("refresh", str(state), "--detailed-exitcode")
    assert (again.exit_code, again.output) == (0, f"No changes: {state} matches Tallyfy.\n")


def test_dry_run_prints_the_diff_and_writes_nothing(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.toml"
    state.write_bytes(EXAMPLE.read_bytes())
    stamp = state.stat().st_mtime_ns
    result = run("refresh", str(state), "--dry-run", "--detailed-exitcode")
    assert result.exit_code == 2
    assert f'+{DEMO_IDS[0]} = "active"     # short form\n' in result.output
    assert result.output.endswith(
        f"{state} would be refreshed: 3 states accepted from Tallyfy (1 now archived, "
        "2 now active).\n"
    )
    assert state.read_bytes() == EXAMPLE.read_bytes()
    assert state.stat().st_mtime_ns == stamp
    assert run("refresh", str(state), "--dry-run").exit_code == 0


def test_names_updates_outdated_labels_written_as_toml_strings(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    odd = 'Q1 "review"\\ \u202e\x07 done'
    sandbox.add_runs([SandboxRun(id=GONE, name=odd)])
    state = tmp_path / "state.toml"
    state.write_text(
        f"[runs.{GONE}]\nstate = 'active'\nname = 'old label' # label\n"
        f"[runs.{DEMO_IDS[1]}]\nstate = 'archived'\nname = 'Unchanged label'\n"
    )
    assert run("refresh", str(state)).exit_code == 0
    assert "name = 'old label'" in state.read_text()

    result = run("refresh", str(state), "--names")
    assert result.exit_code == 0, result.output
    assert state.read_text().splitlines()[2] == (
        'name = "Q1 \\"review\\"\\\\ \\u202e\\u0007 done" # label'
    )
    assert "\u202e" not in result.output
    assert run("plan", str(state), "--format", "json").exit_code == 0
    labelled = run("validate", str(state))
    assert labelled.exit_code == 0


def test_prune_removes_gone_runs_and_then_the_plan_has_no_changes(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.toml"
    text = EXAMPLE.read_text() + f'\n# Retired\n[runs.{GONE}]\n# gone soon\nstate = "active"\n'
    state.write_text(text)

    refused = run("refresh", str(state))
    assert refused.exit_code == 1
    assert f"{state}:40: {GONE}" in refused.output
    assert "`reconcile refresh --prune` does" in refused.output
    assert state.read_text() == text

    pruned = run("refresh", str(state), "--prune")
    assert pruned.exit_code == 0, pruned.output
    assert state.read_text().endswith("\n# Retired\n")
    assert "1 run gone from Tallyfy removed" in pruned.output
    assert run("plan", str(state), "--detailed-exitcode").exit_code == 0
    assert writes(sandbox) == []


def test_a_gone_run_declared_archived_is_left_alone_as_plan_leaves_it(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    # DEMO_IDS[0] is active in the demo organization; GONE was deleted, as archived runs are.
    state = tmp_path / "state.toml"
    text = f'[runs]\n{DEMO_IDS[0]} = "archived"\n{GONE} = "archived" # deleted\n'
    state.write_text(text)

    result = run("refresh", str(state), "--detailed-exitcode")

    assert result.exit_code == 2, result.output
    assert state.read_text() == text.replace('"archived"\n', '"active"\n', 1)
    assert result.output.endswith(
        f"{state} was refreshed: 1 state accepted from Tallyfy (0 now archived, 1 now active); "
        "1 run gone from Tallyfy left in the file (--prune removes it).\n"
    )
    assert run("plan", str(state), "--detailed-exitcode").exit_code == 0
    again = run("refresh", str(state), "--detailed-exitcode")
    assert (again.exit_code, again.output) == (
        0,
        f"No changes to {state}; 1 run gone from Tallyfy left in the file (--prune removes it).\n",
    )
    # `[safety] gone = "error"` makes plan refuse it, and refresh with it.
    state.write_text(f'[safety]\ngone = "error"\n\n{text}')
    assert run("plan", str(state)).exit_code == 1
    refused = run("refresh", str(state))
    assert refused.exit_code == 1
    assert f"{state}:6: {GONE}" in refused.output
    assert writes(sandbox) == []


def test_a_file_refresh_cannot_edit_is_refused_before_any_request(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.toml"
    text = f'# inline\nruns = {{ {DEMO_IDS[0]} = "archived" }}\n'
    state.write_text(text)
    result = run("refresh", str(state))
    assert result.exit_code == 1
    assert f"{state}:2: [runs] it is written as an inline table (runs = {{...}})" in result.output
    assert "Traceback" not in result.output
    assert sandbox.requests == []
    assert state.read_text() == text

    link = tmp_path / "link.toml"
    state.write_text(EXAMPLE.read_text())
    link.symlink_to(state)
    result = run("refresh", str(link))
    assert result.exit_code == 1
    assert "symbolic link" in result.output
    assert sandbox.requests == []


Line = tuple[str, str | None, str | None]
"""A line of a generated state file, the run whose declaration it belongs to, and which of the
run's values it holds ("state", "name" or None)."""


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[SandboxRun], list[Line]]:
    """Runs in the organization (archived or not), and a state file that declares them and runs
    the organization does not have, in both forms, with comments, in any state."""
    count = draw(st.integers(1, 12))
    ids = [f"{0xC0000000 + n:032x}" for n in range(count)]
    exists = [n == 0 or draw(st.booleans()) for n in range(count)]
    runs = [
        SandboxRun(
            id=run_id,
            name=f"Run {n}",
            archived_at="2026-01-01T00:00:00.000Z" if draw(st.booleans()) else None,
        )
        for n, run_id in enumerate(ids)
        if exists[n]
    ]
    short: list[Line] = [("[runs]", None, None)]
    long: list[Line] = []
    for n, run_id in enumerate(ids):
        state = draw(st.sampled_from(["archived", "active"]))
        comment = draw(st.sampled_from(["", "  # why", "\n# about the next one"]))
        inline, below = comment.split("\n") if "\n" in comment else (comment, None)
        if draw(st.booleans()):
            short.append((f'{run_id} = "{state}"{inline}', run_id, "state"))
            if below is not None:
                short.append((below, None, None))
        else:
            long += [
                ("", None, None),
                (f"# Run {n}", None, None),
                (f"[runs.{run_id}]", run_id, None),
            ]
            long.append((f'state = "{state}"{inline}', run_id, "state"))
            if below is not None:
                long.append((below, run_id, None))
            long.append(('name = "x"', run_id, "name"))
    return runs, short + long


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), names=st.booleans())
def test_after_refresh_prune_the_plan_has_no_changes(
    world: tuple[list[SandboxRun], list[Line]],
    names: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    runs, lines = world
    sandbox = Sandbox(ORG, TOKEN, runs)
    state = tmp_path_factory.mktemp("refresh") / "state.toml"
    state.write_text("".join(line + "\n" for line, _, _ in lines))
    with serve(sandbox) as served:
        env = {"TALLYFY_API_URL": served.url, "TALLYFY_ORG_ID": ORG, TOKEN_ENV: TOKEN}
        args = ["refresh", str(state), "--prune", *(["--names"] if names else [])]
        refreshed = run(*args, env=env)
        assert refreshed.exit_code == 0, refreshed.output
        planned = run("plan", str(state), "--detailed-exitcode", env=env)
        assert planned.exit_code == 0, planned.output
        again = run(*args, "--detailed-exitcode", env=env)
        assert again.exit_code == 0, again.output
    assert writes(sandbox) == []

    live = {run.id: run for run in runs}
    expected = []
    for text, run_id, value in lines:
        if run_id is not None and run_id not in live:
            continue
        line = text
        if value == "state" and run_id is not None:
            now = "archived" if live[run_id].archived_at else "active"
            line = re.sub('"(archived|active)"', f'"{now}"', text)
        if value == "name" and names and run_id is not None:
            line = f'name = "{live[run_id].name}"'
        expected.append(line + "\n")
    assert state.read_text() == "".join(expected)


def test_a_file_edited_while_tallyfy_is_read_is_not_overwritten(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state = tmp_path / "state.toml"
    state.write_bytes(EXAMPLE.read_bytes())
    edited = EXAMPLE.read_text() + "# someone's edit\n"
    reach = sandbox_connect(sandbox)

    def connect(settings: Settings) -> TallyfyClient:
        # Someone saves the file while refresh reads the organization.
        state.write_text(edited)
        return reach(settings)

    flags = Flags(api_url="https://sandbox.test/api", org_id=ORG)
    with pytest.raises(ConfigError, match="changed while refresh read Tallyfy; it was not written"):
        pipeline.refresh(state, flags, environ={TOKEN_ENV: TOKEN}, connect=connect)
    assert state.read_text() == edited
    assert [r.method for r in sandbox.requests] == ["GET"] * len(sandbox.requests)


def test_the_library_reports_the_change_to_the_declarations(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    state = tmp_path / "state.toml"
    state.write_text(EXAMPLE.read_text() + f'\n[runs.{GONE}]\nstate = "active"\nname = "Old"\n')
    flags = Flags(api_url="https://sandbox.test/api", org_id=ORG)
    refreshed = pipeline.refresh(
        state,
        flags,
        prune=True,
        dry_run=True,
        environ={TOKEN_ENV: TOKEN},
        connect=sandbox_connect(sandbox),
    )
    assert refreshed.declarations == DeclarationChanges(
        added=(),
        removed=(Declaration(GONE, "active", "Old"),),
        changed=tuple(
            sorted(
                [
                    FieldChange(DEMO_IDS[0], "state", "archived", "active"),
                    FieldChange(DEMO_IDS[2], "state", "active", "archived"),
                    FieldChange(DEMO_IDS[3], "state", "archived", "active"),
                ],
                key=lambda change: change.run_id,
            )
        ),
    )
    assert not refreshed.written
    assert state.read_text().endswith('name = "Old"\n')


def test_the_diff_of_a_crlf_file_without_a_last_newline_reads_like_diffs_do(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    # DEMO_IDS[0] is active and DEMO_IDS[2] archived in the demo organization.
    state = tmp_path / "state.toml"
    lines = ["[runs]", f'{DEMO_IDS[2]} = "active" # a\u2028b', f'{DEMO_IDS[0]} = "archived"']
    state.write_bytes("\r\n".join(lines).encode())

    result = run("refresh", str(state))

    assert result.exit_code == 0, result.output
    # Result.output would turn each CRLF into LF: the bytes show what a terminal gets.
    assert result.stdout_bytes.decode() == (
        f"--- a/{state}\n+++ b/{state}\n@@ -1,3 +1,3 @@\n [runs]\r\n"
        f'-{DEMO_IDS[2]} = "active" # a\u2028b\r\n'
        f'-{DEMO_IDS[0]} = "archived"\n\\ No newline at end of file\n'
        f'+{DEMO_IDS[2]} = "archived" # a\u2028b\r\n'
        f'+{DEMO_IDS[0]} = "active"\n\\ No newline at end of file\n'
        f"{state} was refreshed: 2 states accepted from Tallyfy (1 now archived, 1 now active).\n"
    )
    expected = ["[runs]", f'{DEMO_IDS[2]} = "archived" # a\u2028b', f'{DEMO_IDS[0]} = "active"']
    assert state.read_bytes() == "\r\n".join(expected).encode()
