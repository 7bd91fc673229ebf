"""Helpers shared by test modules: deadlines for tests that could hang, an interrupted apply in a
process of its own, and TLS on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ORG, TOKEN, check_no_secret


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


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and its key for `name`, a subjectAltName such as
    `IP:127.0.0.1` or `DNS:api.example.test` (needs the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name.partition(':')[2]}",
            "-addext",
            f"subjectAltName={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def tls_in_front(port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS endpoint on loopback that forwards to the sandbox's plain-HTTP port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def forward(connection: socket.socket) -> None:
        connection.settimeout(5)  # a client that never finishes its handshake gives up a thread
        try:
            secured = context.wrap_socket(connection, server_side=True)
        except OSError:  # SSLError included: the client refused our certificate
            connection.close()
            return
        secured.settimeout(None)
        upstream = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pump, args=(upstream, secured), daemon=True).start()
        pump(secured, upstream)

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            threading.Thread(target=forward, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
