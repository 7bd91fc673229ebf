"""Deadlines for tests that could hang, and an apply interrupted by a signal in a process of its
own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from tests.demo import ORG, TOKEN
from tests.guards import check_no_secret


class Hung(BaseException):
    """A block outlived its deadline. BaseException, so that no `except Exception` on the way
    (CliRunner's included) can take it for the command's own failure."""


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail the block if it takes longer than `seconds` (SIGALRM: tests run in the main thread)."""

    def expire(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interrupt_apply(
    served: str,
    args: list[str],
    signum: int,
    ready: Callable[[], bool],
    timeout: float = 60,
) -> tuple[int, str, str]:
    """Run `reconcile apply --auto-approve ARGS` in a process of its own against the served
    sandbox, send it `signum` once `ready()` holds (or it ended, or `timeout` passed), and return
    its exit code and output, checked for the token. A process still running `timeout` seconds
    after the signal is killed and the test fails."""
    env = {
        **os.environ,
        "TALLYFY_API_URL": served,
        "TALLYFY_ORG_ID": ORG,
        "TALLYFY_ACCESS_TOKEN": TOKEN,
    }
    command = [sys.executable, "-m", "reconcile", "apply", "--auto-approve", *args]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        give_up = time.monotonic() + timeout
        while not ready() and process.poll() is None and time.monotonic() < give_up:
            time.sleep(0.01)
        process.send_signal(signum)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise Hung(f"apply still running {timeout} s after the signal") from None
    check_no_secret(stdout + stderr, "the output of an interrupted apply")
    return process.returncode, stdout, stderr
