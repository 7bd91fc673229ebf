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
from reconcile.apply import apply_plan
from reconcile.cli.app import collect_less, plan_state
from reconcile.config import Target, Token
from reconcile.plan import Plan
from reconcile.state import load_state
from reconcile.tallyfy import Fetch, TallyfyClient


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
    def __init__(self, client: TallyfyClient) -> None:
        self._client = client
        self._wall = time.perf_counter()
        self._cpu = _cpu()
        self._requests = client.requests_sent
        self._throttled = client.pacer.throttled

    def step(self, name: str, changes: int) -> Step:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return Step(
            step=name,
            wall=time.perf_counter() - self._wall,
            cpu=_cpu() - self._cpu,
            requests=self._client.requests_sent - self._requests,
            throttled=self._client.pacer.throttled - self._throttled,
            changes=changes,
            peak_mb=round(peak, 1),
        )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client(spec: dict[str, Any], parallelism: int) -> TallyfyClient:
    return TallyfyClient(
        Target(spec["url"], spec["org"]),
        Token(TOKEN),
        parallelism=parallelism,
        rate_limit=spec["rate_limit"],
    )


async def _plan(client: TallyfyClient, path: str, fetch: Fetch) -> Plan:
    """What `reconcile plan` does, without printing: read the file, read the runs, diff."""
    return await plan_state(client, load_state(path), fetch)


async def _apply(client: TallyfyClient, plan: Plan) -> Step:
    meter = _Meter(client)
    report = await apply_plan(client, plan)
    return meter.step("apply", len(report.succeeded))


async def run(spec: dict[str, Any]) -> list[Step]:
    """The steps `spec["kind"]` names, each measured."""
    kind, path, parallelism = spec["kind"], spec["state"], spec["parallelism"]
    steps: list[Step] = []
    async with _client(spec, parallelism) as client:
        meter = _Meter(client)
        plan = await _plan(client, path, spec["fetch"])
        steps.append(meter.step("plan", len(plan.changes)))
        if kind == "plan":
            return steps
        if kind == "naive-apply":
            async with _client(spec, 1) as sequential:
                steps.append(await _apply(sequential, plan))
        else:
            steps.append(await _apply(client, plan))
        meter = _Meter(client)
        again = await _plan(client, path, spec["fetch"])
        steps.append(meter.step("replan", len(again.changes)))
    return steps


def main() -> None:
    """Entry point of the child process, which stands for one `reconcile` command."""
    collect_less()
    # httpx's connection pool imports anyio and its asyncio backend on its first request; do it
    # now, so that the timed steps exclude imports like the rest of start-up.
    anyio.run(anyio.sleep, 0)
    for step in asyncio.run(run(json.loads(sys.argv[1]))):
        sys.stdout.write(json.dumps(asdict(step)) + "\n")


if __name__ == "__main__":
    main()
