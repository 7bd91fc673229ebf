"""TLS on loopback: a throwaway self-signed certificate, and a TLS endpoint in front of the
sandbox's plain-HTTP port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


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
        with secured, socket.create_connection(("127.0.0.1", port)) as upstream:
            back = threading.Thread(target=pump, args=(upstream, secured), daemon=True)
            back.start()
            pump(secured, upstream)
            back.join(timeout=5)

    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            threads.append(threading.Thread(target=forward, args=(connection,), daemon=True))
            threads[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)
        for thread in threads:  # each ends when its client closes: every socket is closed here
            thread.join(timeout=5)
