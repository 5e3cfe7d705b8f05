"""The Redis adapter through the ASGI mount: two Hypercorn processes (``hypercorn -k trio``)
serve ``ASGIApp(Server(adapter=RedisAdapter(url)), other_asgi_app=starlette_app)`` against
one real ``redis-server``; the adapter's tasks start on the lifespan, and an emit made by a
REST route on one node reaches python-socketio clients of both nodes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers.redis_process import RedisProcess, redis_server

pytestmark = pytest.mark.interop

__all__ = ["redis_server"]  # a fixture, found by its name

HYPERCORN = Path(sys.executable).with_name("hypercorn")

APP_MODULE = textwrap.dedent(
    """
    import os
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from pyserver import ASGIApp, RedisAdapter, Server

    sio = Server(adapter=RedisAdapter(os.environ["REDIS_URL"]))

    @sio.on("connection")
    async def connection(socket):
        socket.emit("hello", os.environ["NODE_NAME"])

    async def shout(request):
        sio.emit("shout", (await request.json())["text"])
        return JSONResponse({"from": os.environ["NODE_NAME"]})

    app = ASGIApp(sio, other_asgi_app=Starlette(routes=[Route("/shout", shout, methods=["POST"])]))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def nodes(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    tmp = tmp_path_factory.mktemp("asgi_redis")
    (tmp / "asgi_redis_app.py").write_text(APP_MODULE)
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for name in ("a", "b"):
            port = free_port()
            env = {
                **os.environ,
                "PYTHONPATH": str(tmp),
                "REDIS_URL": redis_server.url,
                "NODE_NAME": name,
            }
            procs.append(
                subprocess.Popen(
                    [str(HYPERCORN), "-k", "trio", "--bind", f"127.0.0.1:{port}",
                     "asgi_redis_app:app"],
                    cwd=tmp,
                    env=env,
                    stdout=(tmp / f"{name}.out").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        for url, proc in zip(urls, procs, strict=True):
            while True:
                try:
                    requests.get(url + "/socket.io/?EIO=4&transport=polling", timeout=2)
                    break
                except requests.ConnectionError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_an_emit_on_one_node_reaches_clients_of_both(nodes: list[str]) -> None:
    import socketio

    with socketio.SimpleClient() as on_a, socketio.SimpleClient() as on_b:
        on_a.connect(nodes[0], transports=["websocket"], wait_timeout=10)
        on_b.connect(nodes[1], wait_timeout=10)  # polling, then the upgrade
        assert on_a.receive(timeout=10) == ["hello", "a"]
        assert on_b.receive(timeout=10) == ["hello", "b"]
        sent = requests.post(nodes[0] + "/shout", json={"text": "one"}, timeout=10).json()
        assert sent == {"from": "a"}
        assert on_a.receive(timeout=10) == ["shout", "one"]
        assert on_b.receive(timeout=10) == ["shout", "one"]  # through Redis
        requests.post(nodes[1] + "/shout", json={"text": "two"}, timeout=10)
        assert on_a.receive(timeout=10) == ["shout", "two"]
        assert on_b.receive(timeout=10) == ["shout", "two"]
