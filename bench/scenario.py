"""One benchmark scenario, run in a child process of its own so that its CPU time and peak memory
are the client's alone: `python -m bench.scenario '<json>'` prints one JSON line per step."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from bench.world import TOKEN
from reconcile import pipeline
from reconcile.apply import apply_plan
from reconcile.cli.app import collect_less
from reconcile.config import TOKEN_ENV, Flags, Settings, resolve
from reconcile.plan import Plan
from reconcile.ratelimit import parse_window
from reconcile.tallyfy import TallyfyClient

ENVIRON = {TOKEN_ENV: TOKEN}


@dataclass(frozen=True)
class Step:
    """What one timed step did and cost."""

    step: str
    wall: float
    cpu: float
    requests: int
    throttled: int
    changes: int
    peak_mb: float


class _Meter:
    """Measures one step from its start. The step's API client is made before the clock starts,
    as a command makes it once at start-up (making one loads TLS settings: tens of ms)."""

    def __init__(self, spec: dict[str, Any], parallelism: int) -> None:
        self.flags = _flags(spec, parallelism)
        self.client = pipeline.connect(resolve(self.flags, environ=ENVIRON))
        self._wall = time.perf_counter()
        self._cpu = _cpu()

    def connect(self, settings: Settings) -> TallyfyClient:
        """The client made for this step (the settings are the ones it was made from)."""
        return self.client

    def step(self, name: str, changes: int) -> Step:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return Step(
            step=name,
            wall=time.perf_counter() - self._wall,
            cpu=_cpu() - self._cpu,
            requests=self.client.requests_sent,
            throttled=self.client.pacer.throttled,
            changes=changes,
            peak_mb=round(peak, 1),
        )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _flags(spec: dict[str, Any], parallelism: int) -> Flags:
    return Flags(
        api_url=spec["url"],
        org_id=spec["org"],
        fetch=spec["fetch"],
        parallelism=parallelism,
        rate_limit=spec["rate_limit"],
        rate_window=tuple(parse_window(window) for window in spec.get("rate_windows", ())) or None,
    )


def _plan(spec: dict[str, Any], name: str) -> tuple[Plan, Step]:
    """What `reconcile plan` does, without printing: the library's plan."""
    meter = _Meter(spec, spec["parallelism"])
    plan = pipeline.plan(spec["state"], meter.flags, environ=ENVIRON, connect=meter.connect)
    return plan, meter.step(name, len(plan.changes))


def _apply(spec: dict[str, Any], plan: Plan, parallelism: int) -> Step:
    """The write phase of `reconcile apply` for a plan already made (its plan step is timed on
    its own)."""
    meter = _Meter(spec, parallelism)

    async def write() -> int:
        async with meter.client as client:
            report = await apply_plan(client, plan)
        return len(report.succeeded)

    return meter.step("apply", asyncio.run(write()))


def run(spec: dict[str, Any]) -> list[Step]:
    """The steps `spec["kind"]` names, each measured."""
    plan, step = _plan(spec, "plan")
    steps = [step]
    if spec["kind"] == "plan":
        return steps
    parallelism = 1 if spec["kind"] == "naive-apply" else spec["parallelism"]
    steps.append(_apply(spec, plan, parallelism))
    steps.append(_plan(spec, "replan")[1])
    return steps


def main() -> None:
    """Entry point of the child process, which stands for one `reconcile` command."""
    collect_less()
    # httpx's connection pool imports anyio and its asyncio backend on its first request; do it
    # now, so that the timed steps exclude imports like the rest of start-up.
    anyio.run(anyio.sleep, 0)
    for step in run(json.loads(sys.argv[1])):
        sys.stdout.write(json.dumps(asdict(step)) + "\n")


if __name__ == "__main__":
    main()
