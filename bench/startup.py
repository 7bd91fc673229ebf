"""Start-up time: what pre-commit pays on every commit. `reconcile --version` and `reconcile
validate` of a 1,000-run state file, each against `python -c pass` (the interpreter alone), best
and median of repeated runs in fresh processes, with the number of modules each one imported."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.world import World


def _timed(args: Sequence[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=60)
        times.append(time.perf_counter() - started)
    return times


def _modules(code: str) -> int:
    """Modules in sys.modules after running `code` as reconcile's entry point would."""
    shown = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(len(sys.modules), file=sys.stderr)"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(shown.stderr.strip().splitlines()[-1])


def startup(work: Path, repeat: int) -> str:
    """The table of start-up times."""
    state = World.generate(1_000, seed=5).write_state(
        work / "validate-1k.toml", declared=1_000, drifted=0.0, seed=6
    )
    entry = "import sys\nsys.argv = ['reconcile', {args}]\nfrom reconcile.cli import main\ntry:\n"
    entry += "    main()\nexcept SystemExit:\n    pass"
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"], "pass"),
        (
            "reconcile --version",
            [sys.executable, "-m", "reconcile", "--version"],
            entry.format(args="'--version'"),
        ),
        (
            "reconcile validate (1,000 runs)",
            [sys.executable, "-m", "reconcile", "validate", str(state)],
            entry.format(args=f"'validate', {str(state)!r}"),
        ),
    ]
    lines = [f"{'command':<34} {'best':>8} {'median':>8} {'modules':>8}"]
    base = None
    for name, args, code in commands:
        times = _timed(args, repeat)
        best = min(times)
        base = base if base is not None else best
        extra = "" if best is base else f"  (+{(best - base) * 1000:.0f} ms)"
        lines.append(
            f"{name:<34} {best * 1000:>6.0f}ms {statistics.median(times) * 1000:>6.0f}ms "
            f"{_modules(code):>8}{extra}"
        )
    return "\n".join(lines)
