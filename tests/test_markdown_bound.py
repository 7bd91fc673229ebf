"""The Markdown plan and apply summary fit in one GitHub comment whatever the API returns: random
hostile plans (thousands of changes, outdated labels and unmanaged runs; names, statuses, IDs,
paths and messages from the hostile corpus, random text and very long text), each rendered and
checked for its size, its lines and its tables."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.apply import ApplyReport, Result
from reconcile.cli import cli
from reconcile.domain import DesiredRun, ObservedRun, RunState, Source
from reconcile.plan import Plan, Reason, build_plan
from reconcile.planfile import checksum
from reconcile.render.markdown import (
    BUDGET,
    COMMENT_LIMIT,
    render_apply_markdown,
    render_plan_markdown,
)
from reconcile.render.origin import Origin, ci_origin
from reconcile.sandbox import Sandbox, SandboxRun
from reconcile.state import StateFile, TallyfySettings
from tests.demo import ORG
from tests.guards import FIGURES
from tests.hostile import HOSTILE, assert_inert, table_rows

outside_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(alphabet=st.characters(exclude_categories=()), max_size=80),
    st.builds(lambda text, times: text * times, st.sampled_from(HOSTILE), st.integers(1, 400)),
)
"""A name, status, message or path as a hostile API (or an odd checkout) could give it."""
CI_VARIABLES = (
    *("GITHUB_SHA", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"),
    *("CI_COMMIT_SHA", "CI_PIPELINE_URL"),
)


@st.composite
def plans(draw: st.DrawFn) -> tuple[Plan, list[str], Origin]:
    """A plan of up to 3,000 declared runs from up to 3,000 blueprints and owners, and 3,000
    unmanaged runs, with the gate warnings apply would give and where it was made."""
    names = draw(st.lists(outside_text, min_size=1, max_size=4))
    statuses = draw(st.lists(outside_text, min_size=1, max_size=3))
    path = draw(st.one_of(st.just("state.toml"), outside_text))
    declared = draw(st.integers(0, 3000))
    changed = draw(st.integers(0, declared))
    relabelled = draw(st.integers(0, declared))
    # Many blueprints (some with hostile IDs) and owners, so that the groups' tables are long too.
    blueprints = draw(st.integers(1, 3000))
    odd_blueprint = draw(outside_text)
    runs = []
    observed = {}
    for n in range(declared):
        run_id = f"{n:032x}"
        archived = n % 3 == 0
        desired = RunState.ACTIVE if (n < changed) == archived else RunState.ARCHIVED
        label = "old label" if n < relabelled else None
        runs.append(DesiredRun(run_id, desired, label, Source(path, n + 2)))
        observed[run_id] = ObservedRun(
            run_id=run_id,
            name=names[n % len(names)],
            status=statuses[n % len(statuses)],
            archived_at="2026-01-01T00:00:00Z" if archived else None,
            last_updated=None,
            checklist_id=odd_blueprint if n % 7 == 1 else f"{n % blueprints:032x}",
            checklist_title=names[(n + 1) % len(names)] if n % 5 else None,
            owner_id=n % blueprints if n % 11 else None,
        )
    state = StateFile(path=path, sha256="0" * 64, tallyfy=TallyfySettings(), runs=tuple(runs))
    plan = build_plan(state, observed, org_id=ORG, api_url="https://go.tallyfy.com/api")
    if draw(st.booleans()):
        reasons = [Reason.REQUESTED, Reason.DRIFT]
        changes = tuple(replace(c, reason=reasons[i % 2]) for i, c in enumerate(plan.changes))
        plan = replace(plan, changes=changes, baseline=draw(outside_text))
    if draw(st.booleans()):
        unmanaged = tuple(
            ObservedRun(draw(outside_text) if n < 3 else f"{n:x}", names[0], "", None, None)
            for n in range(draw(st.integers(0, 3000)))
        )
        plan = replace(plan, unmanaged=unmanaged)
    warnings = draw(st.lists(outside_text, max_size=3))
    environ = draw(
        st.dictionaries(
            st.sampled_from(CI_VARIABLES),
            st.one_of(st.just("https://github.com"), st.just("0123abc" * 5), outside_text),
        )
    )
    return plan, warnings, ci_origin(environ)


def rendered(plan: Plan, warnings: list[str], origin: Origin) -> str:
    stream = io.StringIO()
    render_plan_markdown(plan, stream, warnings=warnings, origin=origin)
    return stream.getvalue()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_the_markdown_plan_fits_in_one_comment_and_forges_nothing(
    drawn: tuple[Plan, list[str], Origin],
) -> None:
    plan, warnings, origin = drawn
    text = rendered(plan, warnings, origin)
    assert len(text) <= BUDGET < COMMENT_LIMIT
    assert_inert(text)
    lines = text.splitlines()
    assert lines[0].startswith(("**Plan: ", "**No changes. "))
    rows = [line for line in lines if line.startswith(("| archive | ", "| activate | "))]
    # The rows shown are the first changes of the plan, in order; the note counts the rest.
    assert [row.split(" | ")[1].strip("`") for row in rows] == [
        change.run_id for change in plan.changes[: len(rows)]
    ]
    if len(rows) < len(plan.changes):
        assert f"_{len(plan.changes) - len(rows):,} more changes (" in text
    if not plan.changes:
        assert "| action |" not in text
        assert not [line for line in lines if line.startswith("Checksum:")]
    else:
        assert lines[-1].startswith("Checksum: `")
    shown = sum(1 for line in lines if line.startswith("> **Warning:** "))
    total = len(warnings) + len(plan.warnings)
    left = re.search(r"^> _([0-9,]+) more warnings not shown", text, re.MULTILINE)
    assert shown + (int(left[1].replace(",", "")) if left else 0) == total
    assert table_rows(text) >= len(rows)
    FIGURES["hostile plans rendered as Markdown"] += 1
    FIGURES["forged lines"] += 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.lists(outside_text, min_size=1, max_size=4), st.booleans())
def test_the_markdown_apply_summary_fits_in_one_comment(
    drawn: tuple[Plan, list[str], Origin], details: list[str], stopped: bool
) -> None:
    plan, _, origin = drawn
    results = tuple(
        Result(change, ok=n % 3 != 0, detail=details[n % len(details)], writes=n % 2)
        for n, change in enumerate(plan.changes)
    )
    stream = io.StringIO()
    render_apply_markdown(plan, ApplyReport(results, stopped=stopped), stream, origin=origin)
    text = stream.getvalue()
    assert len(text) <= BUDGET
    assert_inert(text)
    assert text.startswith(("**Apply finished: ", "**Apply interrupted: "))
    assert table_rows(text) <= len(results)
    FIGURES["hostile plans rendered as Markdown"] += 1


def test_a_plan_without_changes_has_no_empty_table() -> None:
    run = DesiredRun("0" * 32, RunState.ACTIVE, None, Source("state.toml", 2))
    state = StateFile("state.toml", "0" * 64, TallyfySettings(), (run,))
    seen = {run.run_id: ObservedRun(run.run_id, "A run", "active", None, None)}
    plan = build_plan(state, seen, org_id=ORG, api_url="https://go.tallyfy.com/api")
    text = rendered(plan, [], Origin())
    assert "| action |" not in text
    assert text.startswith("**No changes. 1 run matches state.toml.**\n")
    assert "<details><summary>1 unchanged run</summary>" in text


def test_the_header_names_the_commit_and_the_ci_run() -> None:
    github = ci_origin(
        {
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "acme/ops",
            "GITHUB_RUN_ID": "42",
        }
    )
    assert github == Origin(
        "0123456789abcdef0123456789abcdef01234567", "https://github.com/acme/ops/actions/runs/42"
    )
    gitlab = ci_origin({"CI_COMMIT_SHA": "abc1234", "CI_PIPELINE_URL": "https://gl.example/p/7"})
    assert gitlab == Origin("abc1234", "https://gl.example/p/7")
    assert ci_origin({}) == Origin()
    plan = one_change_plan()
    assert (
        "\nCommit 0123456789abcdef0123456789abcdef01234567 · "
        "[CI run](https://github.com/acme/ops/actions/runs/42)\n"
    ) in rendered(plan, [], github)
    forged = Origin("not a sha) [x](https://evil.example", "https://evil.example/a b)(")
    text = rendered(plan, [], forged)
    assert (
        "\nCommit not a sha) \\[x\\](https://evil.example · CI run https://evil.example/a b)(\n"
    ) in text


def one_change_plan() -> Plan:
    run = DesiredRun("0" * 32, RunState.ARCHIVED, None, Source("ops/state.toml", 2))
    state = StateFile("ops/state.toml", "0" * 64, TallyfySettings(), (run,))
    seen = {run.run_id: ObservedRun(run.run_id, "A run", "active", None, None)}
    return build_plan(state, seen, org_id=ORG, api_url="https://go.tallyfy.com/api")


def test_the_suggested_apply_command_names_the_state_file() -> None:
    plan = one_change_plan()
    assert rendered(plan, [], Origin()).endswith(
        f"(`reconcile apply ops/state.toml --checksum {checksum(plan)}`)\n"
    )
    odd = replace(plan, state_file=replace(plan.state_file, path="my `state` | file.toml"))
    text = rendered(odd, [], Origin())
    assert "(reconcile apply 'my \\`state\\` \\| file.toml' --checksum " in text


def test_two_thousand_renamed_runs_with_long_names_fit_through_the_cli(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = [f"{0xB0000 + n:032x}" for n in range(2000)]
    sandbox.add_runs(
        [SandboxRun(id=run_id, name=HOSTILE[n % len(HOSTILE)] * 3) for n, run_id in enumerate(ids)]
    )
    lines = ["[safety]", "max_archive_percent = 100", "[runs]"]
    lines += [
        f'{run_id} = {{ state = "{"archived" if n % 2 else "active"}", name = "old name {n}" }}'
        for n, run_id in enumerate(ids)
    ]
    path = tmp_path / "state.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["plan", str(path), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert len(text) <= BUDGET
    assert_inert(text)
    shown = text.count("\n> **Warning:** ")
    assert f"\n> _{2000 - shown:,} more warnings not shown. " in text
    assert table_rows(text) > 50


def test_a_name_cannot_mention_anyone() -> None:
    run = DesiredRun("0" * 32, RunState.ARCHIVED, None, Source("state.toml", 2))
    state = StateFile("state.toml", "0" * 64, TallyfySettings(), (run,))
    name = "@acme/security please approve, @@dana"
    seen = {run.run_id: ObservedRun(run.run_id, name, "active", None, None)}
    plan = build_plan(state, seen, org_id=ORG, api_url="https://go.tallyfy.com/api")
    text = rendered(plan, [], Origin())
    assert re.search(r"(^|[^>])@", text) is None  # every @ is inside <code>
    assert (
        "| <code>@</code>acme/security please approve, <code>@</code><code>@</code>dana |" in text
    )
