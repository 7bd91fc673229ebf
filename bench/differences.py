"""`python -m bench --differences`: what explaining a change with DeepDiff costs, in this process
(no sandbox): the declarations changed since a baseline (`plan --baseline`), the fields of runs that
moved since a saved plan (`apply --plan`), and importing deepdiff."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from bench.world import World
from reconcile.differences import compare_declarations, declared, moved_fields
from reconcile.domain import ObservedRun, RunState
from reconcile.state import load_state

REPEAT = 5


def best_cpu(work: Callable[[], object], repeat: int = REPEAT) -> float:
    """The least CPU time of `repeat` runs of `work`, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def explain(before: ObservedRun, after: ObservedRun, count: int) -> None:
    for _ in range(count):
        moved_fields(before, after)


def import_seconds() -> float:
    """What `import deepdiff` costs a fresh process (it happens once, on first use)."""
    code = "import time; t = time.perf_counter(); import deepdiff; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def measure(work: Path) -> list[str]:
    """One line per measured use."""
    lines = [f"import deepdiff (once, on first use): {import_seconds():.2f} s"]
    world = World.generate(100_000, seed=3)
    for size in (10_000, 100_000):
        path = world.write_state(work / f"baseline-{size}.toml", declared=size, drifted=0, seed=5)
        baseline = declared(load_state(path))
        for share in (0.0, 0.01, 0.1):
            edited = {run_id: dict(value) for run_id, value in baseline.items()}
            for run_id in list(edited)[: round(size * share)]:
                was = edited[run_id]["state"]
                edited[run_id]["state"] = "active" if was == "archived" else "archived"
            cpu = best_cpu(partial(compare_declarations, baseline, edited))
            lines.append(
                f"declarations since a baseline: {size:,} declared, {share:.0%} changed: "
                f"{cpu:.3f} s CPU"
            )
    run = ObservedRun("a" * 32, "Run", "active", None, "2026-01-01T00:00:00.000Z")
    moved = replace(run, status="complete", last_updated="2026-02-01T00:00:00.000Z")
    assert moved.state is RunState.ACTIVE
    for count in (1, 100, 1_000):
        cpu = best_cpu(partial(explain, run, moved, count))
        lines.append(
            f"fields of runs that moved since a saved plan: {count:,} runs: {cpu:.3f} s CPU"
        )
    return lines
