"""The demo organization the tests run against (examples/demo-org.toml): where the repository is,
the organization's ID and token, its runs, and the runs the sandbox's own tests name by role.
Test modules import these from here, never from each other."""

from __future__ import annotations

from pathlib import Path

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

# The demo runs by role, for the tests that talk to the sandbox directly.
IDS = DEMO_IDS
ARCHIVED = (DEMO_IDS[2], DEMO_IDS[8], DEMO_IDS[9])
"""DEMO_ARCHIVED in listing order."""
LIVE = tuple(i for i in IDS if i not in ARCHIVED)
ACTIVE = IDS[0]  # active, users [101, 102]
DONE = IDS[2]  # status "complete", archived
UNKNOWN = "f" * 32
