"""`reconcile import` end to end against the sandbox over real HTTP: the file it writes, its
filters, --force and --merge, and the invariant that `plan` right after `import` shows no changes,
for an organization with several pages of runs in both listings."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reconcile import pipeline
from reconcile.config import TOKEN_ENV, Flags, Settings
from reconcile.domain import RunState
from reconcile.sandbox import Behaviour, Sandbox, SandboxRun, serve
from reconcile.selection import make_selection
from reconcile.state import load_state
from reconcile.tallyfy import TallyfyClient
from tests.demo import DEMO_IDS, ORG, TOKEN
from tests.helpers import BLUEPRINTS, ODD_NAMES, big_org_runs, json_checksum, run


@pytest.fixture
def big_org() -> Sandbox:
    return Sandbox(ORG, TOKEN, big_org_runs())


@pytest.fixture
def big_env(big_org: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serve(big_org) as running:
        monkeypatch.setenv("TALLYFY_API_URL", running.url)
        monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
        monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", TOKEN)
        yield running.url


Expect = Callable[[int, SandboxRun], bool]
FILTERS: dict[str, tuple[list[str], Expect]] = {
    "everything": ([], lambda i, r: True),
    "active": (["--include", "active"], lambda i, r: r.archived_at is None),
    "archived": (["--include", "archived"], lambda i, r: r.archived_at is not None),
    "blueprint": (["--blueprint", BLUEPRINTS[1]], lambda i, r: i % 3 == 1),
    "tag title": (["--tag", "q1"], lambda i, r: i % 4 == 1),
    "owner": (["--owner", "102"], lambda i, r: i % 4 == 2),
    "started before": (["--started-before", "2026-02-01"], lambda i, r: (i // 28) % 3 == 0),
    "started after": (["--started-after", "2026-03-01"], lambda i, r: (i // 28) % 3 == 2),
    "name": (["--name", r"^Run \d+5 - Au"], lambda i, r: bool(re.match(r"^Run \d+5 - Au", r.name))),
    "combined": (
        [
            "--include",
            "archived",
            "--tag",
            "audit",
            "--started-after",
            "2026-02-01",
            "--owner",
            "100",
        ],
        lambda i, r: r.archived_at is not None and i % 4 == 0 and (i // 28) % 3 > 0,
    ),
}


@pytest.mark.parametrize("case", FILTERS)
def test_import_then_plan_shows_no_changes(
    big_org: Sandbox, big_env: str, tmp_path: Path, case: str
) -> None:
    options, expect = FILTERS[case]
    wanted = sorted(r.id for i, r in enumerate(big_org_runs()) if expect(i, r))
    assert wanted, "every filter case must select runs"
    path = tmp_path / "state.toml"

    result = run("import", "--output", str(path), *options)

    assert result.exit_code == 0, result.output
    archived = sum(1 for run_id in wanted if big_org.is_archived(run_id))
    assert result.stdout == (
        f"Wrote {len(wanted)} runs ({archived} archived, {len(wanted) - archived} active) "
        f"to {path}.\n"
    )
    state = load_state(path)
    assert [r.run_id for r in state.runs] == wanted
    for declared in state.runs:
        live = big_org.run(declared.run_id)
        assert declared.name == live["name"]
        assert declared.state.value == ("archived" if live["archived_at"] else "active")
    assert state.tallyfy.org_id == ORG
    assert big_org.writes == []

    plan = run("plan", str(path), "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert plan.stdout == (
        f"Organization {ORG} at {big_env}; {len(wanted)} runs declared in {path}.\n"
        f"No changes. {len(wanted)} runs match {path}.\n"
    )
    assert big_org.writes == []


def test_listings_are_read_in_full_pages_with_server_side_narrowing(
    big_org: Sandbox, big_env: str, tmp_path: Path
) -> None:
    everything = run("import", "--output", str(tmp_path / "all.toml"))
    assert everything.exit_code == 0, everything.output
    listings = sorted(
        (r.query.get("archived", ""), r.query["page"], r.query["per_page"])
        for r in big_org.requests
    )
    assert listings == [
        ("", "1", "100"),
        ("", "2", "100"),
        ("only", "1", "100"),
        ("only", "2", "100"),
    ]

    big_org.clear_log()
    narrowed = run(
        "import", "--output", str(tmp_path / "some.toml"), "--include", "active",
        "--blueprint", BLUEPRINTS[0], "--owner", "100", "--tag", "audit",
    )  # fmt: skip
    assert narrowed.exit_code == 0, narrowed.output
    assert [r.query for r in big_org.requests] == [
        {
            "checklist_id": BLUEPRINTS[0],
            "owners": "100",
            "with": "tags",
            "page": "1",
            "per_page": "100",
        }
    ]


def test_the_file_is_sorted_by_run_id_with_names_as_labels(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    result = run("import", "--output", str(path), "--tag", "audit", "--name", "SOC|safety")
    assert result.exit_code == 0, result.output
    assert path.read_text(encoding="utf-8") == (
        f"# Process runs of organization {ORG}, from `reconcile import --include all --tag "
        "'audit' --name 'SOC|safety'`.\n"
        "# Each state is the run's live state; `name` is a label for humans, and the plan warns\n"
        "# when it no longer matches the run's live name.\n"
        "\n"
        "[tallyfy]\n"
        f'org_id = "{ORG}"\n'
        "\n"
        "[runs.8f1a4c7e2b5d49a6c3f0e8b1d4a7c2e9]\n"
        'state = "active"\n'
        'name = "Fire safety inspection - Leeds warehouse"\n'
        "\n"
        f"[runs.{DEMO_IDS[1]}]\n"
        'state = "active"\n'
        'name = "Quarterly SOC 2 access review - Q1 2026"\n'
    )


def test_reimport_changes_only_the_lines_of_runs_that_changed(
    big_org: Sandbox, big_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    assert run("import", "--output", str(path)).exit_code == 0
    before = path.read_text(encoding="utf-8")
    moved = big_org_runs()[42].id
    big_org.set_archived(moved, True)

    result = run("import", "--output", str(path), "--force")

    assert result.exit_code == 0, result.output
    after = path.read_text(encoding="utf-8")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert diff == ['-state = "active"', '+state = "archived"']
    block = after.split(f"[runs.{moved}]\n", 1)[1].split("\n", 1)[0]
    assert block == 'state = "archived"'


def test_refuses_to_overwrite_without_force(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text("# mine\n", encoding="utf-8")
    result = run("import", "--output", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path} already exists; nothing was written. Pass --force to replace it, or "
        "--merge to add the runs it does not declare while keeping its declarations.\n"
    )
    assert path.read_text(encoding="utf-8") == "# mine\n"
    assert sandbox.requests == []

    both = run("import", "--output", str(path), "--force", "--merge")
    assert both.exit_code == 1
    assert both.stderr == "Error: Give --force or --merge, not both.\n"

    forced = run("import", "--output", str(path), "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout == f"Wrote 10 runs (3 archived, 7 active) to {path}.\n"
    assert len(load_state(path).runs) == 10


def test_merge_appends_new_runs_and_keeps_the_file_text(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    original = (
        "# Our runs. Reviewed by the ops team.\n"
        "[tallyfy]\n"
        f'org_id = "{ORG}"\n'
        "\n"
        "[runs]\n"
        f'{DEMO_IDS[0]} = "archived"   # to be archived next week\n'
        f"[runs.{DEMO_IDS[2]}]\n"
        'state = "archived"\n'
        'name = "Vendor DD"   # an old label: kept as written\n'
    )
    path.write_text(original, encoding="utf-8")

    result = run("import", "--output", str(path), "--merge", "--name", "^(Client|Vendor|Supp)")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Added 2 runs (1 archived, 1 active) to {path}; its 2 declarations and its comments "
        "are unchanged.\n"
    )
    assert path.read_text(encoding="utf-8") == original + (
        "\n"
        "[runs.0d6b3e9a5c2f47d1b8e4a0c6f3b9d5e2]\n"
        'state = "archived"\n'
        'name = "Client offboarding - Soylent Foods"\n'
        "\n"
        "[runs.4b9d2f6a8c1e43b7d5a0c9e2f4b6d8a3]\n"
        'state = "active"\n'
        'name = "Supplier contract renewal - Umbrella Logistics"\n'
    )
    plan = run("plan", str(path))
    assert plan.exit_code == 0, plan.output
    assert plan.stdout == (
        f"Organization {ORG} at {cli_env}; 4 runs declared in {path}.\n"
        "\n"
        f"  archive   {DEMO_IDS[0]}  active -> archived  (status: active)  "
        f"'Client onboarding - Globex Corporation'  [{path}:6]\n"
        "\n"
        f"Warning: {path}:7: run {DEMO_IDS[2]} is labelled 'Vendor DD' but is named "
        "'Vendor due diligence - Initech Supplies' in Tallyfy; update the label.\n"
        "\n"
        f"Checksum: {json_checksum(path)}\n"
        "Plan: 1 to archive, 0 to activate, 3 unchanged.\n"
    )

    again = run("import", "--output", str(path), "--merge", "--name", "^(Client|Vendor|Supp)")
    assert again.exit_code == 0, again.output
    assert again.stdout == (
        f"No new runs: {path} already declares every selected run; it is unchanged.\n"
    )
    assert sandbox.writes == []


def test_merge_into_a_missing_file_writes_a_new_one(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    result = run("import", "--output", str(path), "--merge", "--include", "archived")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote 3 runs (3 archived, 0 active) to {path}.\n"


def test_merge_refuses_what_it_cannot_append_to(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    inline = tmp_path / "inline.toml"
    inline.write_text(f'runs = {{ {DEMO_IDS[0]} = "active" }}\n', encoding="utf-8")
    result = run("import", "--output", str(inline), "--merge")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 1 problem in the state file; nothing was sent to Tallyfy:\n"
        f"  {inline}: [runs] the new runs cannot be appended as [runs.<id>] tables (is [runs] "
        "written as an inline table or with dotted keys?); nothing was written. Rewrite [runs] "
        "as a table or import into a new file\n"
    )
    assert inline.read_text(encoding="utf-8") == f'runs = {{ {DEMO_IDS[0]} = "active" }}\n'

    other = tmp_path / "other.toml"
    other.write_text(f'[tallyfy]\norg_id = "{"f" * 32}"\n[runs]\n', encoding="utf-8")
    result = run("import", "--output", str(other), "--merge", "--org", ORG)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {other} declares organization {'f' * 32}, but the runs were read from "
        f"organization {ORG}; nothing was written. Merge into a file of the same organization.\n"
    )

    broken = tmp_path / "broken.toml"
    broken.write_text('[runs]\nxyz = "archived"\n', encoding="utf-8")
    result = run("import", "--output", str(broken), "--merge")
    assert result.exit_code == 1
    assert "[runs.xyz] 'xyz' is not a run ID" in result.stderr
    assert sandbox.writes == []


def test_bad_filters_are_refused_before_any_request(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    result = run("import", "--output", str(path), "--name", "([a-z]", "--blueprint", "ABC")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: --blueprint 'ABC' is not a blueprint ID (32 lowercase hex characters, the run's "
        "checklist_id); --name '([a-z]' is not a regular expression: missing ), unterminated "
        "subpattern at position 0. Nothing was read or written.\n"
    )
    assert sandbox.requests == []
    assert not path.exists()


def test_a_selection_of_no_runs_writes_nothing(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    result = run("import", "--output", str(path), "--owner", "101", "--tag", "finance")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: No run of organization {ORG} matches --include all --tag 'finance' --owner 101; "
        "nothing was written.\n"
    )
    assert not path.exists()


def test_names_that_need_escaping_survive_the_round_trip(
    big_org: Sandbox, big_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    result = run("import", "--output", str(path), "--name", "Soci|\n|日本")
    assert result.exit_code == 0, result.output
    assert {run.name for run in load_state(path).runs} == set(ODD_NAMES.values())
    plan = run("plan", str(path))
    assert plan.stdout.endswith(f"No changes. 3 runs match {path}.\n")
    assert "Warning" not in plan.stdout


def test_one_run_is_counted_in_the_singular(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    result = run("import", "--output", str(path), "--name", "^Fire")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote 1 run (0 archived, 1 active) to {path}.\n"


class ArchivesDuringListing(httpx.AsyncBaseTransport):
    """The in-process sandbox, where `run_id` is archived in the web app the moment the archived
    listing is first asked for: the active listing already showed it, so it is in both."""

    def __init__(self, sandbox: Sandbox, run_id: str) -> None:
        self._sandbox = sandbox
        self._inner = sandbox.transport()
        self._run_id = run_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        archived_listing = params.get("archived") == "only" or params.get("status") == "archived"
        if archived_listing and not self._sandbox.is_archived(self._run_id):
            self._sandbox.set_archived(self._run_id, True)
        return await self._inner.handle_async_request(request)


@pytest.mark.parametrize("archived_get", [200, 404])
def test_a_run_that_moves_while_listed_stays_in_a_tag_filtered_import(
    sandbox: Sandbox, tmp_path: Path, archived_get: int
) -> None:
    """The run is read again because the two listings disagree on it; that read asks for its tags
    too, so the tag filter still matches it, and it is written in the state it moved to."""
    sandbox.behaviour = Behaviour(archived_get=archived_get)
    moving = DEMO_IDS[1]  # active, tagged "audit"

    def connect(settings: Settings) -> TallyfyClient:
        transport = ArchivesDuringListing(sandbox, moving)
        return TallyfyClient(settings.target, settings.token, transport=transport, parallelism=1)

    path = tmp_path / "state.toml"
    flags = Flags(api_url="https://sandbox.test/api", org_id=ORG)
    imported = pipeline.import_runs(
        path, make_selection(tag="audit"), flags=flags, environ={TOKEN_ENV: TOKEN}, connect=connect
    )

    assert sandbox.is_archived(moving)
    reread = [r for r in sandbox.requests if r.path == f"/organizations/{ORG}/runs/{moving}"]
    assert [r.query.get("with") for r in reread] == ["tags"]
    if archived_get == 404:
        archived_listings = [r for r in sandbox.requests if r.query.get("archived") == "only"]
        assert [r.query.get("with") for r in archived_listings] == ["tags", "tags"]
    assert {run.run_id: run.state for run in imported.written} == {
        moving: RunState.ARCHIVED,
        DEMO_IDS[7]: RunState.ACTIVE,
    }
    assert {run.run_id: run.state.value for run in load_state(path).runs} == {
        moving: "archived",
        DEMO_IDS[7]: "active",
    }
