"""Seed files: the organization, its runs and its [sandbox] switches, and the demo seed that
ships inside the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import reconcile.sandbox
from reconcile.sandbox import (
    Behaviour,
    Sandbox,
    SeedError,
)
from reconcile.sandbox.seed import DEMO_SEED, load_seed
from tests.demo import DEMO_IDS, ORG, ROOT, TOKEN

IDS = DEMO_IDS
ARCHIVED = (IDS[2], IDS[8], IDS[9])
ORG_OK = '[org]\nid = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"\ntoken = "t"\n'


# --- seed files ----------------------------------------------------------------------------


def test_demo_seed_has_the_documented_org_and_runs() -> None:
    seed = load_seed(DEMO_SEED)
    assert (seed.org_id, seed.org_name, seed.token) == (ORG, "Acme Operations (demo)", TOKEN)
    assert tuple(run.id for run in seed.runs) == IDS
    assert tuple(run.id for run in seed.runs if run.archived_at) == ARCHIVED
    assert {run.status for run in seed.runs} == {"active", "complete", "problem"}
    assert len({run.name for run in seed.runs}) == 10


def test_from_seed_builds_the_org_in_listing_order() -> None:
    sandbox = Sandbox.from_seed(DEMO_SEED, Behaviour(archived_get=404))
    assert (sandbox.org_id, sandbox.token, sandbox.org_name) == (
        ORG,
        TOKEN,
        "Acme Operations (demo)",
    )
    assert sandbox.behaviour == Behaviour(archived_get=404)
    assert sandbox.run_ids() == list(IDS)  # the seed's created_at values ascend
    assert sandbox.run_ids(archived=True) == list(ARCHIVED)
    assert sandbox.run(IDS[8])["archived_at"] == "2026-02-21T10:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[org\n", "not valid TOML"),
        ('[runs]\nid = "x"\n', "missing [org] table"),
        ('[org]\nid = "ABC"\ntoken = "t"\n', "[org] id: 'ABC' is not 32 lowercase hex"),
        ('[org]\nid = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"\n', "[org]: missing required key 'token'"),
        (ORG_OK + "[[runs]]\nid = " + '"' + "a" * 32 + '"\n', "missing required key 'name'"),
        (ORG_OK + '[[runs]]\nid = "a1"\nname = "x"\n', "run id 'a1' is not 32 lowercase hex"),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\narchived_at = "yesterday"\n',
            "'yesterday' is not an ISO-8601 UTC timestamp",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\nowner_id = "7"\n',
            "owner_id must be an integer",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\ntags = [1]\n',
            "tags must be an array of strings",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\narchived = true\n',
            "unknown key 'archived'",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\n' * 2,
            f"run id {'a' * 32} appears 2 times",
        ),
        ("runs = 3\n" + ORG_OK, "runs must be an array of tables"),
    ],
)
def test_malformed_seeds_name_file_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SeedError) as caught:
        Sandbox.from_seed(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_seed_error_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text('[org]\nid = 5\n[[runs]]\nname = 3\n[[runs]]\nid = "b"\n', encoding="utf-8")
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    assert caught.value.problems == (
        "[org]: id must be a string, not int",
        "[org]: missing required key 'token'",
        "[[runs]] #1: missing required key 'id'",
        "[[runs]] #1: name must be a string, not int",
        "[[runs]] #2 (id b): missing required key 'name'",
    )


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match=r"nowhere\.toml: unusable sandbox seed:\n  - cannot read"):
        load_seed(tmp_path / "nowhere.toml")


def test_seed_accepts_toml_datetimes_and_normalizes_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    run = f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\narchived_at = 2026-01-10T09:00:00Z\n'
    path.write_text(ORG_OK + run + 'created_at = "2026-01-02T03:04:05Z"\n', encoding="utf-8")
    (seeded,) = load_seed(path).runs
    assert seeded.archived_at == "2026-01-10T09:00:00.000Z"
    assert seeded.created_at == "2026-01-02T03:04:05.000Z"


# --- the [sandbox] table ---------------------------------------------------------------------


def test_sandbox_table_sets_switches(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    switches = '[sandbox]\nnoop_write = "409"\narchived_get = 404\nrate_windows = ["12/5s:get"]\n'
    path.write_text(ORG_OK + switches + "latency_ms = 20\ncan_archive = false\n", "utf-8")
    expected = Behaviour(
        noop_write="409",
        archived_get=404,
        rate_windows=("12/5s:get",),
        latency=0.02,
        can_archive=False,
    )
    assert load_seed(path).behaviour == expected
    assert Sandbox.from_seed(path).behaviour == expected
    # Given explicitly, a Behaviour replaces the seed's switches.
    assert Sandbox.from_seed(path, Behaviour()).behaviour == Behaviour()


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("[sandbox]\nnoop = 409\n", "[sandbox]: unknown key 'noop' (known: activity_feed, admin"),
        ("[sandbox]\nnoop_write = 204\n", "[sandbox] noop_write: must be one of 200, 400, 404"),
        ("[sandbox]\ncan_archive = 1\n", "[sandbox] can_archive: must be true or false, not 1"),
        ("[sandbox]\nper_page_cap = -3\n", "[sandbox] per_page_cap: must be a whole number"),
        ('[sandbox]\nlatency_ms = "soon"\n', "[sandbox] latency_ms: must be a number of milli"),
        ("[sandbox]\nrate_windows = [5]\n", "[sandbox] rate_windows: must be a list of LIMIT/SP"),
        ('[sandbox]\nrate_windows = "5/1x"\n', "[sandbox] rate_windows: rate window '5/1x' is"),
        ('[sandbox]\ntotal_pages = "all"\n', '[sandbox] total_pages: must be "served", "abs'),
        ("[sandbox]\nrate_limit_headers = 2\n", "[sandbox]: invalid sandbox Behaviour: rate_lim"),
        ("sandbox = 3\n", "sandbox must be a table ([sandbox])"),
    ],
)
def test_bad_sandbox_tables_name_the_key(tmp_path: Path, table: str, problem: str) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(ORG_OK + table if table.startswith("[") else table + ORG_OK, "utf-8")
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)


# --- the demo seed ships in the package ------------------------------------------------------


def test_the_demo_seed_is_package_data_and_the_example_is_the_same_file() -> None:
    assert DEMO_SEED.parent == Path(reconcile.sandbox.__file__).parent
    assert (ROOT / "examples" / "demo-org.toml").samefile(DEMO_SEED)
    with (ROOT / "pyproject.toml").open("rb") as file:
        package_data = tomllib.load(file)["tool"]["setuptools"]["package-data"]["reconcile"]
    assert "sandbox/demo-org.toml" in package_data
    assert load_seed(DEMO_SEED).behaviour == Behaviour()  # the demo has no switches set
