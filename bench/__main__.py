"""`python -m bench`: every scenario of the benchmark in one run, then one table.

The sandbox runs as `reconcile sandbox` in a process of its own with 20 ms of latency per request;
each scenario's client runs in a child process of its own (bench/scenario.py), which measures its
wall time, CPU time and peak memory. The lower bound of a scenario is the fewest requests that can
answer it (listing pages or single GETs, whichever are fewer; one write per change), divided by
what the API allows: `parallelism` requests per `latency`, or the server's rate limit.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import differences
from bench.server import (
    Served,
    cpu_seconds,
    listing_path,
    requests_per_second,
    run_path,
    sandbox_process,
)
from bench.startup import startup
from bench.world import ORG, World
from reconcile.config import DEFAULT_RATE_LIMIT

LATENCY = 0.020
PARALLELISM = 8
PAGE_SIZE = 100
WINDOW = 60.0
SERVER_LIMIT = 120
"""Requests per rolling minute in the rate-limited scenario: the server binds, not the latency."""
FAQ_LATENCY = 0.100
FAQ_WINDOWS = ((12, 5.0, "12/5s:get", "12/5s:GET"), (140, 10.0, "140/10s", "140/10s"))
"""The troubleshooting FAQ's limits, about 12 GETs per 5 s and 140 calls per 10 s: limit, seconds,
and how the sandbox and the client write each."""
FAQ_CASES = (
    ("6a told the FAQ's windows", True, 1),
    ("6b defaults; the headers describe 12/5s GET", False, 1),
    ("6c defaults; the headers describe 140/10s", False, 2),
    ("6d defaults; no rate-limit headers", False, 0),
)
"""Scenario 6's runs: name, whether the client is told the windows, and which window the
sandbox's X-RateLimit-* headers describe (1-based; 0 for none)."""


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    name: str
    wall: float
    requests: int
    bound: float
    cpu: float
    peak_mb: float
    throttled: int
    baseline: float | None = None


def lower_bound(requests: int, *, rate_limit: int = 0) -> float:
    """Seconds that `requests` need at best: rounds of PARALLELISM requests of LATENCY each, or,
    under a rolling-minute limit that admits `rate_limit` requests at once, one whole window per
    `rate_limit` requests after the first batch, whichever is slower."""
    network = requests * LATENCY / PARALLELISM
    if not rate_limit:
        return network
    return max(network, (requests - 1) // rate_limit * WINDOW + LATENCY)


def faq_bound(requests: int) -> float:
    """Seconds that `requests` GETs need at best under the FAQ's windows: each admits its limit at
    once, then its limit again each time the window has passed; plus one latency."""
    return max((requests - 1) // limit * seconds for limit, seconds, _, _ in FAQ_WINDOWS) + (
        FAQ_LATENCY
    )


def faq_rows(seed: Path, state: Path, requests: int) -> list[Row]:
    """Scenario 6: scenario 1's plan under the FAQ's windows with 100 ms of latency, each case
    against a fresh sandbox. The client keeps its default of 600 a minute in every case."""
    rows = []
    for name, told, headers in FAQ_CASES:
        windows = [sandbox for _, _, sandbox, _ in FAQ_WINDOWS]
        with sandbox_process(
            seed, latency_ms=FAQ_LATENCY * 1000, windows=windows, headers=headers
        ) as served:
            (step,) = child(
                served,
                kind="plan",
                state=str(state),
                parallelism=PARALLELISM,
                rate_limit=DEFAULT_RATE_LIMIT,
                rate_windows=[client for _, _, _, client in FAQ_WINDOWS] if told else [],
            )
        rows.append(row(name, step, faq_bound(requests)))
    return rows


def fewest_requests(world: World, declared: int) -> int:
    """Listing pages (with and without archived runs) or one GET per run, whichever is fewer."""
    active = len(world.runs) - world.archived
    pages = math.ceil(active / PAGE_SIZE) + math.ceil(world.archived / PAGE_SIZE)
    return min(pages, declared)


def child(served: Served, **spec: Any) -> list[dict[str, Any]]:
    """Run one scenario in a fresh process and return its measured steps."""
    spec = {"url": served.url, "org": ORG, "rate_limit": 0, "fetch": "auto", **spec}
    command = [sys.executable, "-m", "bench.scenario", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scenario {spec['kind']} failed:\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines()]


def median(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The measurement with the median wall time (the machine is shared, so single runs vary)."""
    return sorted(measured, key=lambda step: float(step["wall"]))[len(measured) // 2]


def row(name: str, step: dict[str, Any], bound: float, baseline: float | None = None) -> Row:
    return Row(
        name=name,
        wall=step["wall"],
        requests=step["requests"],
        bound=bound,
        cpu=step["cpu"],
        peak_mb=step["peak_mb"],
        throttled=step["throttled"],
        baseline=baseline,
    )


def sandbox_alone(seed: Path, run_id: str, seconds: float) -> list[str]:
    """Requests per second the sandbox serves by itself at PARALLELISM connections."""
    lines = []
    for latency_ms in (0.0, LATENCY * 1000):
        with sandbox_process(seed, latency_ms=latency_ms) as served:
            for what, path in (("one run", run_path(run_id)), ("page of 100", listing_path(3))):
                cpu = cpu_seconds(served.process)
                rate = requests_per_second(
                    served.url, path, concurrency=PARALLELISM, seconds=seconds
                )
                busy = (cpu_seconds(served.process) - cpu) / seconds
                lines.append(
                    f"  latency {latency_ms:>4.0f} ms, GET {what:<11}: {rate:>6.0f} requests/s "
                    f"over {PARALLELISM} connections (sandbox CPU {busy:.0%})"
                )
    ceiling = PARALLELISM / LATENCY
    lines.append(
        f"  (at {LATENCY * 1000:.0f} ms the most {PARALLELISM} connections can get is "
        f"{ceiling:.0f} requests/s)"
    )
    return lines


def plan_spread(seed: Path, state: Path, repeat: int, bound: float) -> str:
    """Scenario 1's plan `repeat` times, each against a fresh sandbox: how much single runs vary."""
    walls = []
    for _ in range(repeat):
        with sandbox_process(seed, latency_ms=LATENCY * 1000) as served:
            (step,) = child(served, kind="plan", state=str(state), parallelism=PARALLELISM)
        walls.append(float(step["wall"]))
    ratios = sorted(wall / bound for wall in walls)
    return (
        f"Scenario 1's plan, {repeat} runs against a bound of {bound:.3f} s: "
        + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        + f"; median {ratios[len(ratios) // 2]:.2f}x"
    )


def render(rows: Sequence[Row], notes: Sequence[str]) -> str:
    header = (
        f"{'scenario':<58} {'wall s':>8} {'requests':>8} {'bound s':>8} {'x bound':>7} "
        f"{'baseline x':>10} {'CPU s':>6} {'peak MB':>7} {'429s':>4}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        speedup = f"{r.baseline / r.wall:>9.0f}x" if r.baseline else f"{'':>10}"
        lines.append(
            f"{r.name:<58} {r.wall:>8.2f} {r.requests:>8} {r.bound:>8.2f} "
            f"{r.wall / r.bound:>6.2f}x {speedup} {r.cpu:>6.2f} {r.peak_mb:>7.0f} {r.throttled:>4}"
        )
    return "\n".join([*lines, "", *notes])


FAQ_NOTE = (
    f"6: sandbox windows 12/5s (GETs) and 140/10s, {FAQ_LATENCY * 1000:.0f} ms latency; client "
    f"{DEFAULT_RATE_LIMIT}/min, plus --rate-window 12/5s:GET --rate-window 140/10s in 6a only; "
    "bound: 12 GETs at once, then 12 more every 5 s."
)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=1000,
        help="declared runs the sequential-GET baseline reads; scaled linearly to 10,000",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="times scenarios 1 to 3 run; the table shows the run with the median wall time",
    )
    parser.add_argument(
        "--faq-limits",
        action="store_true",
        help="only run scenario 6 (scenario 1's plan under the FAQ's rate limits; minutes)",
    )
    parser.add_argument(
        "--plan-spread",
        action="store_true",
        help="only run scenario 1's plan --repeat times and print every run's ratio to the bound",
    )
    parser.add_argument(
        "--differences",
        action="store_true",
        help="only measure what DeepDiff's explanations cost (plan --baseline, apply --plan)",
    )
    parser.add_argument(
        "--startup",
        action="store_true",
        help="only measure start-up: --version and validate of 1,000 runs against python -c pass",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        work = Path(tmp)
        if args.differences:
            sys.stdout.write("\n".join(differences.measure(work)) + "\n")
            return
        if args.startup:
            sys.stdout.write(startup(work, max(args.repeat, 20)) + "\n")
            return
        org = World.generate(20_000, seed=1)
        seed = org.write_seed(work / "org-20k.toml")
        state = org.write_state(work / "plan-10k.toml", declared=10_000, drifted=0.1, seed=2)
        if args.plan_spread:
            bound = lower_bound(fewest_requests(org, 10_000))
            sys.stdout.write(plan_spread(seed, state, args.repeat, bound) + "\n")
            return
        faq = faq_rows(seed, state, fewest_requests(org, 10_000))
        if args.faq_limits:
            sys.stdout.write(render(faq, [FAQ_NOTE]) + "\n")
            return
        sample = org.write_state(
            work / "baseline-sample.toml",
            declared=10_000,
            drifted=0.1,
            seed=2,
            first=args.baseline_sample,
        )
        big = World.generate(100_000, seed=3)
        big_seed = big.write_seed(work / "org-100k.toml")
        big_state = big.write_state(work / "plan-100k.toml", declared=100_000, drifted=0.1, seed=4)

        alone = sandbox_alone(seed, org.runs[0][0], seconds=2.0)

        repeats: list[list[dict[str, Any]]] = []
        for _ in range(args.repeat):
            # A fresh organization each time: the apply changes it.
            with sandbox_process(seed, latency_ms=LATENCY * 1000) as served:
                repeats.append(
                    child(served, kind="apply", state=str(state), parallelism=PARALLELISM)
                )
        plan, apply, replan = (median(steps) for steps in zip(*repeats, strict=True))
        with sandbox_process(seed, latency_ms=LATENCY * 1000) as served:
            (naive_plan,) = child(
                served, kind="plan", state=str(sample), parallelism=1, fetch="get"
            )
            _, naive_apply, _ = child(
                served, kind="naive-apply", state=str(state), parallelism=PARALLELISM
            )
        with sandbox_process(big_seed, latency_ms=LATENCY * 1000) as served:
            huge = median(
                [
                    child(served, kind="plan", state=str(big_state), parallelism=PARALLELISM)[0]
                    for _ in range(args.repeat)
                ]
            )
        with sandbox_process(seed, latency_ms=LATENCY * 1000, rate_limit=SERVER_LIMIT) as served:
            (limited,) = child(
                served,
                kind="plan",
                state=str(state),
                parallelism=PARALLELISM,
                rate_limit=DEFAULT_RATE_LIMIT,
            )

    scale = 10_000 / args.baseline_sample
    naive_plan_wall = naive_plan["wall"] * scale
    plan_requests = fewest_requests(org, 10_000)
    changes = plan["changes"]
    rows = [
        row(
            "1 plan: 10,000 declared of 20,000, 10% drifted",
            plan,
            lower_bound(plan_requests),
            naive_plan_wall,
        ),
        row(f"2 apply: {changes:,} changes", apply, lower_bound(changes), naive_apply["wall"]),
        row("3 plan: 100,000 declared", huge, lower_bound(fewest_requests(big, 100_000))),
        Row(
            f"4a baseline plan: sequential GETs ({args.baseline_sample:,} x{scale:g})",
            naive_plan_wall,
            round(naive_plan["requests"] * scale),
            lower_bound(plan_requests),
            naive_plan["cpu"] * scale,
            naive_plan["peak_mb"],
            naive_plan["throttled"],
        ),
        row(f"4b baseline apply: {changes:,} sequential writes", naive_apply, lower_bound(changes)),
        row(
            f"5 = 1 under a server limit of {SERVER_LIMIT}/min (client {DEFAULT_RATE_LIMIT}/min)",
            limited,
            lower_bound(plan_requests, rate_limit=SERVER_LIMIT),
        ),
        *faq,
    ]
    notes = [
        f"Sandbox in its own process, {LATENCY * 1000:.0f} ms latency per request; client "
        f"parallelism {PARALLELISM}; client rate limit off (0) except in 5 and 6.",
        FAQ_NOTE,
        f"Baseline 4a measured on the first {args.baseline_sample:,} of the 10,000 declared runs "
        f"and scaled x{scale:g} (wall, requests, CPU); 4b measured in full.",
        f"Scenarios 1 to 3: the median of {args.repeat} runs (by wall time), each against a "
        "fresh sandbox for 1 and 2.",
        f"Apply: {apply['requests']} write requests for {changes} changes; the plan after it "
        f"shows {replan['changes']} changes.",
        "CPU s and peak MB are the client process's own (resource.getrusage); the CPU of a step "
        "excludes start-up and imports (also those httpx makes on its first request); peak MB "
        "is the whole process's maximum resident size.",
        "",
        "The sandbox alone:",
        *alone,
        "",
        f"Whole benchmark: {time.perf_counter() - started:.0f} s.",
    ]
    sys.stdout.write(render(rows, notes) + "\n")


if __name__ == "__main__":
    main()
