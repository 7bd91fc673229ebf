"""Generated organizations and state files: a sandbox seed with N runs, and a state file that
declares some of them with a given share drifted from what the organization has."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ORG = "b3c4d5e6f708192a3b4c5d6e7f809a1b"
TOKEN = "bench-token"
ARCHIVED_SHARE = 0.3
MOVED_AT = "2026-11-30T12:00:00Z"


@dataclass(frozen=True)
class World:
    """An organization's runs, as ids with their archived flag (in listing order)."""

    runs: tuple[tuple[str, bool], ...]

    @classmethod
    def generate(cls, size: int, seed: int) -> World:
        """`size` runs, about 30% archived. Ids are sorted so the sandbox indexes them in order."""
        rng = random.Random(seed)
        ids = sorted({f"{rng.getrandbits(128):032x}" for _ in range(size)})
        while len(ids) < size:
            ids = sorted({*ids, f"{rng.getrandbits(128):032x}"})
        return cls(tuple((run_id, rng.random() < ARCHIVED_SHARE) for run_id in ids))

    @property
    def archived(self) -> int:
        return sum(1 for _, archived in self.runs if archived)

    def write_seed(self, path: Path, moved: Sequence[tuple[str, bool]] = ()) -> Path:
        """The sandbox seed TOML for this organization; `moved` runs (id, archived) were then
        moved to the other state by someone in the web app, at MOVED_AT."""
        lines = [f'[org]\nid = "{ORG}"\nname = "Benchmark org"\ntoken = "{TOKEN}"\n']
        for number, (run_id, archived) in enumerate(self.runs):
            lines.append(f'[[runs]]\nid = "{run_id}"\nname = "Benchmark run {number}"')
            if archived:
                lines.append('archived_at = "2026-01-10T09:00:00.000Z"')
        for run_id, archived in moved:
            verb = "unarchived" if archived else "archived"
            lines.append(f'[[activity]]\nrun = "{run_id}"\nverb = "{verb}"\nat = "{MOVED_AT}"')
            lines.append('actor = { id = 67890, name = "Jane Doe", email = "jane@example.com" }')
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def declared(self, declared: int, seed: int) -> list[tuple[str, bool]]:
        """The runs `write_state` declares for the same `declared` and `seed`, in file order."""
        return random.Random(seed).sample(self.runs, declared)

    def write_state(
        self, path: Path, *, declared: int, drifted: float, seed: int, first: int | None = None
    ) -> Path:
        """A state file declaring `declared` runs picked at random, `drifted` of them (a share)
        in the other state than the organization's. `first` keeps only that many declarations
        (the same runs, for a baseline measured on a subset)."""
        rng = random.Random(seed)
        picked = rng.sample(self.runs, declared)  # as `declared` picks them
        flip = set(rng.sample(range(declared), round(declared * drifted)))
        lines = [f'[tallyfy]\norg_id = "{ORG}"\n\n[runs]']
        for index, (run_id, archived) in enumerate(picked[:first]):
            wanted = archived != (index in flip)
            lines.append(f'{run_id} = "{"archived" if wanted else "active"}"')
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
