"""Shared fixtures: the demo organization in the sandbox, in-process or over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.config import Target, Token
from reconcile.sandbox import Sandbox, serve
from reconcile.tallyfy import TallyfyClient

ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = ROOT / "examples" / "demo-org.toml"
ORG = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"
TOKEN = "sandbox-token"
DEMO_IDS = (
    "3f2a9c0d5e6b47a8b9c0d1e2f3a4b5c6",
    "9b1e2d3c4b5a69788796a5b4c3d2e1f0",
    "1c4e7a9b2d5f48e6a3c1b7d9e2f4a6c8",
    "7d2b9e4f1a6c43d8b5e0a7c2f9d4b1e6",
    "2a8f5c1e9b3d47a6c0e4f8b2d6a9c3e1",
    "6e3c0a7d4b1f48e5a2c9f6b3d0e7a4c1",
    "4b9d2f6a8c1e43b7d5a0c9e2f4b6d8a3",
    "8f1a4c7e2b5d49a6c3f0e8b1d4a7c2e9",
    "0d6b3e9a5c2f47d1b8e4a0c6f3b9d5e2",
    "5c0e8b2f6a9d41c3e7b5f1a8d2c6e4b0",
)
DEMO_ARCHIVED = frozenset({DEMO_IDS[2], DEMO_IDS[8], DEMO_IDS[9]})


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox.from_seed(DEMO_SEED)


@pytest.fixture
def served(sandbox: Sandbox) -> Iterator[str]:
    with serve(sandbox) as running:
        yield running.url


@pytest.fixture
def cli_env(served: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the served sandbox through the environment, as a user would."""
    monkeypatch.setenv("TALLYFY_API_URL", served)
    monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", TOKEN)
    return served


def client_for(sandbox: Sandbox, **options: Any) -> TallyfyClient:
    """A client wired to the in-process sandbox."""
    return TallyfyClient(
        Target("https://sandbox.test/api", sandbox.org_id),
        Token(sandbox.token),
        transport=sandbox.transport(),
        **options,
    )


def write_state(path: Path, runs: Mapping[str, str], org_id: str | None = None) -> Path:
    """Write a state file declaring `runs` (run ID -> "archived" | "active")."""
    lines = [f'[tallyfy]\norg_id = "{org_id}"\n'] if org_id else []
    lines.append("[runs]")
    lines += [f'{run_id} = "{state}"' for run_id, state in runs.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sandbox_states(sandbox: Sandbox, run_ids: Iterator[str] | tuple[str, ...]) -> dict[str, str]:
    """The sandbox's truth, in the state file's vocabulary."""
    return {run_id: "archived" if sandbox.is_archived(run_id) else "active" for run_id in run_ids}


def json_checksum(state_file: Path | str) -> str:
    """The checksum `plan --format json` gives for a state file, to check text output against."""
    result = CliRunner().invoke(cli, ["plan", str(state_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    checksum: str = json.loads(result.stdout)["checksum"]
    return checksum
