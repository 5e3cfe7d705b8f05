"""``pyserver demo --admin-password P`` (a real process): the admin namespace takes user
``admin`` with P (bcrypt-hashed at startup) and refuses another password with ``invalid
credentials``, the UI's page is at ``/admin/``; without the option there is no admin
namespace and no page. python-socketio's client logs in."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo(tmp_path: Path, *options: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyserver", "demo", "--port", str(port), *options],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "PYSERVER_ADMIN_PASSWORD"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def instrumented(tmp_path: Path) -> Iterator[str]:
    yield from demo(tmp_path, "--admin-password", "open sesame")


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[str]:
    yield from demo(tmp_path)


def test_admin_password_instruments_the_demo(instrumented: str) -> None:
    page = requests.get(instrumented + "/admin/", timeout=10)
    assert page.status_code == 200 and "Socket.IO Admin UI" in page.text
    assert "Content-Security-Policy" in page.headers
    refused = socketio.Client(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", errors.append, namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        refused.connect(
            instrumented,
            namespaces=["/admin"],
            auth={"username": "admin", "password": "wrong"},
            wait_timeout=10,
        )
    assert errors == [{"message": "invalid credentials"}]
    refused.disconnect()
    with socketio.SimpleClient() as admin:
        admin.connect(
            instrumented,
            namespace="/admin",
            auth={"username": "admin", "password": "open sesame"},
            wait_timeout=10,
        )
        names: set[str] = set()
        while "all_sockets" not in names:  # development mode (a timeout fails the test)
            names.add(admin.receive(timeout=10)[0])
        assert {"session", "config"} <= names


def test_without_the_option_no_admin_namespace(plain: str) -> None:
    assert requests.get(plain + "/admin/", timeout=10).status_code == 404
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            plain,
            namespaces=["/admin"],
            auth={"username": "admin", "password": "x"},
            wait_timeout=5,
        )
