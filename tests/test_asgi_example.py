"""``examples/starlette_app.py`` served both ways, as its docstring says: ``hypercorn -k trio
examples.starlette_app:app`` (pyserver as an ASGI app) and ``pyserver run
examples.starlette_app:sio`` (Starlette behind pyserver's server), each a real process; a
python-socketio client and plain HTTP see the one message board from both sides."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(way: str, port: int) -> list[str]:
    if way == "hypercorn":
        target = "examples.starlette_app:app"
        return [str(BIN / "hypercorn"), "-k", "trio", "--bind", f"127.0.0.1:{port}", target]
    target = "examples.starlette_app:sio"
    return [sys.executable, "-m", "pyserver", "run", "--port", str(port), target]


@pytest.mark.parametrize("way", ["hypercorn", "pyserver"])
def test_the_example_both_ways(way: str, tmp_path: Path) -> None:
    import socketio

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "server.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            command(way, port),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                board = requests.get(url + "/api/messages", timeout=2).json()
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
        assert board == [{"id": 1, "text": "board opened", "by": "server"}]  # lifespan ran
        with socketio.SimpleClient() as client:
            client.connect(url, wait_timeout=10)
            assert client.receive(timeout=10) == ["history", board]
            assert client.call("post", "from socket.io", timeout=10) == 2
            assert client.receive(timeout=10)[0] == "message"
            posted = requests.post(url + "/api/messages", json={"text": "from rest"}, timeout=10)
            assert posted.status_code == 201
            assert client.receive(timeout=10) == [
                "message",
                {"id": 3, "text": "from rest", "by": "rest"},
            ]
        texts = [m["text"] for m in requests.get(url + "/api/messages", timeout=10).json()]
        assert texts == ["board opened", "from socket.io", "from rest"]
        page = requests.get(url + "/", timeout=10)
        assert "socket.io.min.js" in page.text
        assert requests.get(url + "/socket.io/socket.io.min.js", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT if way == "hypercorn" else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
