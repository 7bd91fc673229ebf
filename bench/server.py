"""The sandbox in its own process (so its CPU does not count as the client's), and a minimal
load generator that measures what the sandbox alone can serve."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.world import ORG, TOKEN


@dataclass(frozen=True)
class Served:
    """A sandbox process and where it listens."""

    url: str
    process: subprocess.Popen[str]


@contextmanager
def sandbox_process(
    seed: Path,
    *,
    latency_ms: float,
    rate_limit: int = 0,
    windows: Sequence[str] = (),
    headers: int = 1,
) -> Iterator[Served]:
    """Run `reconcile sandbox` on a free port for the duration of the with block. `windows` are
    its rolling windows (`--rate-window`), `headers` the one its X-RateLimit-* headers describe
    (1-based, the per-minute `rate_limit` first if set; 0 for none)."""
    command = [sys.executable, "-m", "reconcile", "sandbox", "--seed", str(seed), "--port", "0"]
    command += ["--latency-ms", str(latency_ms), "--rate-limit", str(rate_limit)]
    for window in windows:
        command += ["--rate-window", window]
    command += ["--rate-limit-headers", str(headers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if " at " not in first:
            raise RuntimeError(f"the sandbox did not start: {first!r}")
        yield Served(first.rsplit(" at ", 1)[1].strip(), process)
    finally:
        process.terminate()
        process.wait()


def cpu_seconds(process: subprocess.Popen[str]) -> float:
    """User plus system CPU time a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100


async def _client(host: str, port: int, request: bytes, until: float) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    served = 0
    try:
        while time.perf_counter() < until:
            writer.write(request)
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            served += 1
    finally:
        writer.close()
    return served


def requests_per_second(url: str, path: str, *, concurrency: int, seconds: float) -> float:
    """How many GET `path` (below the API URL) the server answers per second over `concurrency`
    keep-alive connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path}/{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nX-Tallyfy-Client: APIClient\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()

    async def load() -> int:
        until = time.perf_counter() + seconds
        counts = await asyncio.gather(
            *(_client(host, port, request, until) for _ in range(concurrency))
        )
        return sum(counts)

    started = time.perf_counter()
    served = asyncio.run(load())
    return served / (time.perf_counter() - started)


def listing_path(page: int = 1) -> str:
    """A page of 100 runs."""
    return f"organizations/{ORG}/runs?per_page=100&page={page}"


def run_path(run_id: str) -> str:
    """One run."""
    return f"organizations/{ORG}/runs/{run_id}"
