"""Fixtures for the interop tests: our server in a background thread, real peers driven at it.

The server runs in its own thread with its own ``trio.run`` (``helpers.server_thread``) so the
peers can be driven from plain synchronous tests: Node through ``subprocess.run`` (with a
timeout), Chromium through Playwright's sync API (``helpers.browser``'s ``chromium_browser``,
imported here so every test of the folder can ask for it).

A test skips only when the peer itself is absent from the machine (no ``node`` on PATH, no
``/usr/bin/chromium``, no ``playwright`` package). CI installs all of them, so there they run.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers.browser import chromium_browser
from helpers.server_thread import ServerThread

HERE = Path(__file__).resolve().parent
EIO_CLIENT_JS = HERE / "eio_client.js"

__all__ = ["chromium_browser"]  # a fixture, found by its name


# --------------------------------------------------------------------------------------------
# Node and the official engine.io-client


def _node_with(package: str) -> str:
    """``node``, with ``package`` installed next to the scripts: skip when Node is absent,
    fail when Node is here but the packages are not (a setup error, not an absent tool)."""
    path = shutil.which("node")
    if path is None:
        pytest.skip(f"node is not installed (the official {package} runs under Node)")
    modules = HERE / "node_modules" / package
    if not modules.is_dir():
        pytest.fail(f"{modules} is missing: run `npm ci` in {HERE} (scripts/bootstrap.sh does)")
    return path


@pytest.fixture(scope="session")
def node() -> str:
    return _node_with("engine.io-client")


@dataclass
class NodeRun:
    """What eio_client.js printed, parsed; ``events`` keeps the order it observed."""

    argv: list[str]
    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    raw: str = field(repr=False, default="")

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.of(name)
        assert len(found) == 1, f"expected exactly one {name!r} event, got {found}\n{self}"
        return found[0]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def __str__(self) -> str:
        lines = []
        for e in self.events:
            if e.get("event") in ("sent", "message"):
                e = {k: v for k, v in e.items() if k != "sha256"}
            lines.append(json.dumps(e)[:300])
        shown = "\n".join(lines[:80])
        if len(lines) > 80:
            shown += f"\n... ({len(lines) - 80} more lines)"
        return (
            f"$ {' '.join(self.argv)}\nexit code {self.returncode}\n"
            f"--- stdout (JSON lines)\n{shown}\n--- stderr\n{self.stderr[-3000:]}"
        )


def run_eio_client(
    node: str,
    url: str,
    *,
    transports: str,
    mode: str,
    timeout: float = 20.0,
    **options: Any,
) -> NodeRun:
    """Run eio_client.js to completion (bounded by ``timeout`` inside Node and, with a margin,
    by ``subprocess.run`` outside it) and parse its JSON lines."""
    argv = [
        node,
        str(EIO_CLIENT_JS),
        "--url",
        url,
        "--transports",
        transports,
        "--mode",
        mode,
        "--timeout",
        str(int(timeout * 1000)),
    ]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 10, cwd=HERE, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"node did not exit in {timeout + 10}s\n$ {' '.join(argv)}\n{out}\n{err}")
    events = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            events.append({"event": "unparsed", "line": line})
    return NodeRun(argv, proc.returncode, events, proc.stderr, proc.stdout)


# --------------------------------------------------------------------------------------------
# Socket.IO: our Server running the "test protocol", the official socket.io-client under Node,
# and python-socketio's client (used directly by test_socketio_python_client.py).
#
# The test protocol (also described at the top of sio_client.js) is one set of handlers,
# installed on "/", on "/chat" and on the dynamic namespaces /dyn-<digits>:
#   middleware     refuses auth {"token": "bad"}: ConnectionRefused("Authentication error",
#                  data={"reason": "bad token"})
#   connection     emits "init" {id, nsp, auth}; recorded in SioSite.connected
#   disconnect     recorded in SioSite.disconnected (socket id -> reason)
#   echo           emits "echo" back with the same arguments
#   echo-ack       acks with the same arguments (returns the tuple)
#   join / leave   acks the sorted rooms of the socket
#   broadcast      {form, rooms, except, event, data}: emits in that form (FORMS below), acks "ok"
#   fence n        a namespace-wide emit("fence", n), acks n (the Node script's barrier)
#   ask            {event, args, timeout, tag}: socket.emit_with_ack, acks {reply: [...]} or
#                  {error}; with a tag, how it ended is kept in SioSite.asks
#   ask-room       {room, event, data, timeout, tag}: to(room).timeout(t).emit_with_ack, acks
#                  {replies: [...]} or {error}
#   burst n        socket.emit("seq", i) for i in 0..n-1 (every 5th with bytes), acks n
#   parent-broadcast {room, event, data}: from a dynamic namespace's parent (every child)
#   handshake, whoami, boom, sockets-join, sockets-leave, disconnect-room, start-ticker: see
#                  the handlers below
#   fetch-room     acks the sorted ids of in_(room).fetch_sockets()
#   volatile n     n volatile "vol" events, then "after-volatile"
#   disconnect-me  socket.disconnect()

SIO_CLIENT_JS = HERE / "sio_client.js"
DYNAMIC_NAMESPACE = r"^/dyn-\d+$"
TICKER_PERIOD = 0.05
TICKER_MAX_TICKS = 400  # 20 s at most, however the room behaves


def _nsp_name(socket: Any) -> str:
    nsp = getattr(socket, "nsp", None)
    name = getattr(nsp, "name", None)
    if isinstance(name, str):
        return name
    return str(getattr(socket, "namespace", "/"))


def _as_list(reply: Any) -> list[Any]:
    """An ack reply as the list of its arguments (one argument: a list of one)."""
    return list(reply) if isinstance(reply, tuple) else [reply]


class Site:
    """What a server under test saw, appended from its thread and read from the test thread
    under ``lock``; the ``wait_*`` methods poll it with a bound."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.disconnected: dict[str, str] = {}
        self.server: ServerThread | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def wait_until(self, read: Callable[[], Any], timeout: float = 10.0) -> Any:
        """The first value of ``read()`` (called under ``lock``) that is not None, or None
        once ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                value = read()
            if value is not None or time.monotonic() >= deadline:
                return value
            time.sleep(0.02)

    def wait_disconnect(self, sid: str, timeout: float = 10.0) -> str | None:
        """The reason the server gave for ``sid`` ending (bounded wait)."""
        result: str | None = self.wait_until(lambda: self.disconnected.get(sid), timeout)
        return result


class SioSite(Site):
    """Our Socket.IO server running the test protocol, plus what its handlers saw."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = {"cors_allowed_origins": "*", **options}
        self.connected: dict[str, dict[str, Any]] = {}
        self.tickers: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.sio: Any = None

    # -- the server --------------------------------------------------------------------------

    def build(self) -> Any:
        import re

        from pyserver import Server

        sio = Server(**self.options)
        self.sio = sio
        self.install(sio, sio)
        self.install(sio, sio.of("/chat"))
        self.install(sio, sio.of(re.compile(DYNAMIC_NAMESPACE)))
        return sio

    def install(self, sio: Any, namespace: Any) -> None:
        """The protocol's handlers on ``namespace`` (``sio`` itself for "/")."""
        import inspect

        from pyserver import ConnectionRefused

        site = self

        def target(socket: Any) -> Any:
            # "/" broadcasts through the Server itself (sio.emit, sio.to, ...), as users write it.
            name = _nsp_name(socket)
            return sio if name == "/" else socket.nsp

        @namespace.use
        async def authenticate(socket: Any) -> None:
            auth = socket.handshake.auth
            if isinstance(auth, dict) and auth.get("token") == "bad":
                raise ConnectionRefused("Authentication error", data={"reason": "bad token"})

        @namespace.on("connection")
        async def connection(socket: Any) -> None:
            # Per-packet middleware (refuses the event "forbidden") and a catch-all handler
            # (counts events into socket.data), on every socket.
            socket.data.setdefault("events", 0)  # a recovered socket keeps its count

            async def refuse_forbidden(*args: Any) -> None:
                packet = args[-1]
                if packet and packet[0] == "forbidden":
                    raise PermissionError("forbidden event")

            def count(event: str, *args: Any) -> None:
                socket.data["events"] += 1

            socket.use(refuse_forbidden)
            socket.on_any(count)
            with site.lock:
                site.connected[socket.id] = {
                    "nsp": _nsp_name(socket),
                    "auth": socket.handshake.auth,
                }
            socket.emit(
                "init", {"id": socket.id, "nsp": _nsp_name(socket), "auth": socket.handshake.auth}
            )

        @namespace.on("disconnect")
        async def disconnect(socket: Any, reason: Any) -> None:
            with site.lock:
                site.disconnected[socket.id] = str(reason)

        @namespace.on("echo")
        async def echo(socket: Any, *args: Any) -> None:
            socket.emit("echo", *args)

        @namespace.on("echo-ack")
        async def echo_ack(socket: Any, *args: Any) -> tuple[Any, ...]:
            return args

        @namespace.on("join")
        async def join(socket: Any, room: str) -> list[str]:
            done = socket.join(room)
            if inspect.isawaitable(done):
                await done
            return sorted(socket.rooms)

        @namespace.on("leave")
        async def leave(socket: Any, room: str) -> list[str]:
            done = socket.leave(room)
            if inspect.isawaitable(done):
                await done
            return sorted(socket.rooms)

        @namespace.on("fence")
        async def fence(socket: Any, n: Any) -> Any:
            target(socket).emit("fence", n)
            return n

        @namespace.on("broadcast")
        async def broadcast(socket: Any, spec: dict[str, Any]) -> str:
            form = spec["form"]
            event, data = spec["event"], spec["data"]
            rooms = list(spec.get("rooms") or [])
            excluded = list(spec.get("except") or [])
            t = target(socket)
            if form == "all":
                t.emit(event, data)
            elif form == "broadcast":
                socket.broadcast.emit(event, data)
            elif form == "to":
                t.to(rooms).emit(event, data)
            elif form == "to-chained":
                op = t.to(rooms[0])
                for room in rooms[1:]:
                    op = op.to(room)
                op.emit(event, data)
            elif form == "to-except":
                t.to(rooms).except_(excluded).emit(event, data)
            elif form == "except":
                t.except_(excluded).emit(event, data)
            elif form == "socket-to":
                socket.to(rooms).emit(event, data)
            elif form == "socket-broadcast-except":
                socket.broadcast.except_(excluded).emit(event, data)
            elif form == "volatile":
                t.volatile.emit(event, data)
            elif form == "compress-false":
                t.compress(False).emit(event, data)
            elif form == "local":
                t.local.emit(event, data)
            elif form == "to-binary":
                t.to(rooms).emit(event, data, f"bin:{data}".encode())
            else:
                raise ValueError(f"unknown broadcast form {form!r}")
            return "ok"

        def outcome(tag: Any, result: str) -> None:
            if tag is not None:
                with site.lock:
                    site.asks[str(tag)] = result

        @namespace.on("ask")
        async def ask(socket: Any, spec: dict[str, Any]) -> dict[str, Any]:
            try:
                reply = await socket.emit_with_ack(
                    spec["event"], *spec.get("args", []), timeout=spec.get("timeout")
                )
            except Exception as exc:
                outcome(spec.get("tag"), type(exc).__name__)
                return {"error": type(exc).__name__}
            outcome(spec.get("tag"), "reply")
            return {"reply": _as_list(reply)}

        @namespace.on("ask-room")
        async def ask_room(socket: Any, spec: dict[str, Any]) -> dict[str, Any]:
            try:
                replies = await (
                    target(socket)
                    .to(spec["room"])
                    .timeout(spec["timeout"])
                    .emit_with_ack(spec["event"], spec["data"])
                )
            except Exception as exc:
                outcome(spec.get("tag"), type(exc).__name__)
                return {"error": type(exc).__name__}
            outcome(spec.get("tag"), "replies")
            return {"replies": list(replies)}

        @namespace.on("burst")
        async def burst(socket: Any, n: int) -> int:
            for i in range(int(n)):
                if i % 5:
                    socket.emit("seq", i)
                else:  # binary among them
                    socket.emit("seq", i, bytes([i % 256]) * 3)
            return int(n)

        @namespace.on("parent-broadcast")
        async def parent_broadcast(socket: Any, spec: dict[str, Any]) -> int:
            parent = socket.nsp.parent  # the dynamic namespace this one was made from
            op = parent.to(spec["room"]) if spec.get("room") else parent
            return int(op.emit(spec["event"], spec["data"]))

        @namespace.on("fetch-room")
        async def fetch_room(socket: Any, room: str) -> list[str]:
            found = await target(socket).in_(room).fetch_sockets()
            return sorted(s.id for s in found)

        @namespace.on("volatile")
        async def volatile(socket: Any, n: int) -> None:
            for i in range(int(n)):
                socket.volatile.emit("vol", i)
            socket.emit("after-volatile", n)

        @namespace.on("handshake")
        async def handshake(socket: Any) -> dict[str, Any]:
            hs = socket.handshake
            return {
                "query": dict(hs.query),
                "header": hs.headers.get("x-test"),
                "address": hs.address,
                "auth": hs.auth,
                "secure": hs.secure,
            }

        @namespace.on("whoami")
        async def whoami(socket: Any) -> dict[str, Any]:
            return {"id": socket.id, "data": dict(socket.data), "recovered": socket.recovered}

        @namespace.on("boom")
        async def boom(socket: Any) -> None:
            raise RuntimeError("boom (a deliberate failure of the test protocol)")

        @namespace.on("sockets-join")
        async def sockets_join(socket: Any, spec: dict[str, Any]) -> None:
            target(socket).in_(spec["room"]).sockets_join(spec["new"])

        @namespace.on("sockets-leave")
        async def sockets_leave(socket: Any, spec: dict[str, Any]) -> None:
            target(socket).in_(spec["room"]).sockets_leave(spec["old"])

        @namespace.on("disconnect-room")
        async def disconnect_room(socket: Any, spec: dict[str, Any]) -> None:
            target(socket).in_(spec["room"]).disconnect_sockets()

        @namespace.on("start-ticker")
        async def start_ticker(socket: Any, room: str) -> None:
            t = target(socket)

            async def ticker() -> None:
                with site.lock:
                    site.tickers[room] = "running"
                state = "failed"
                try:
                    for n in range(TICKER_MAX_TICKS):
                        t.to(room).emit("tick", {"room": room, "n": n})
                        await trio.sleep(TICKER_PERIOD)
                    state = "finished"
                except trio.Cancelled:
                    state = "cancelled"
                    raise
                finally:
                    with site.lock:
                        site.tickers[room] = state

            t.room(room).start_soon(ticker)

        @namespace.on("disconnect-me")
        async def disconnect_me(socket: Any) -> None:
            socket.disconnect()

    # -- the thread --------------------------------------------------------------------------

    def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> int:
        self.server = ServerThread(self.build, port=port, ssl_context=ssl_context)
        return self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def wait_ticker(self, room: str, state: str, timeout: float = 10.0) -> str | None:
        """The state of the room task of ``room`` once it is ``state`` (or the last seen)."""
        if self.wait_until(lambda: state if self.tickers.get(room) == state else None, timeout):
            return state
        with self.lock:
            return self.tickers.get(room)

    def wait_ask(self, tag: str, timeout: float = 10.0) -> str | None:
        """How the server's ``ask``/``ask-room`` tagged ``tag`` ended: "reply", "replies", or
        the exception's type name (bounded wait; None if it has not ended)."""
        result: str | None = self.wait_until(lambda: self.asks.get(tag), timeout)
        return result

    def wait_connected(self, sid: str, timeout: float = 10.0) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.wait_until(lambda: self.connected.get(sid), timeout)
        return result


@pytest.fixture(scope="session")
def node_sio() -> str:
    """``node`` with the official socket.io-client installed next to the scripts."""
    return _node_with("socket.io-client")


def sio_argv(
    node: str, url: str, scenario: str, *, transports: str, timeout: float, **options: Any
) -> list[str]:
    argv = [
        node,
        str(SIO_CLIENT_JS),
        "--url",
        url,
        "--scenario",
        scenario,
        "--transports",
        transports,
        "--timeout",
        str(int(timeout * 1000)),
    ]
    for key, value in options.items():
        argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return argv


def _parse_lines(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            events.append({"event": "unparsed", "line": line})
    return events


def run_sio_client(
    node: str,
    url: str,
    scenario: str,
    *,
    transports: str = "websocket",
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
    **options: Any,
) -> NodeRun:
    """Run one sio_client.js scenario to completion (bounded inside Node and, with a margin,
    by ``subprocess.run``) and parse its JSON lines. ``options`` become ``--key value``
    (non-strings as JSON: ``auth={"token": "x"}``); ``env`` is added to Node's environment."""
    argv = sio_argv(node, url, scenario, transports=transports, timeout=timeout, **options)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout + 10,
            cwd=HERE,
            check=False,
            env={**os.environ, **env} if env else None,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        pytest.fail(f"node did not exit in {timeout + 10}s\n$ {' '.join(argv)}\n{out}\n{err}")
    return NodeRun(argv, proc.returncode, _parse_lines(proc.stdout), proc.stderr, proc.stdout)


class NodeStream:
    """A sio_client.js scenario running in the background; its JSON lines are read as they
    come (a reader thread), so a test can act between them (e.g. restart the server)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._stderr: list[str] = []
        self._out = threading.Thread(target=self._read, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parsed = _parse_lines(line)
            with self._cond:
                self.events.extend(parsed)
                self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait_for(self, name: str, timeout: float, count: int = 1) -> dict[str, Any]:
        """The ``count``-th line with event ``name`` (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if e.get("event") == name]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._out.is_alive()):
                    break
                self._cond.wait(min(left, 0.1))
        pytest.fail(f"no {name!r} line (#{count}) within {timeout}s\n{self.result()}")

    def finish(self, timeout: float) -> NodeRun:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._out.join(5)
        self._err.join(5)
        return self.result()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def result(self) -> NodeRun:
        with self._cond:
            events = list(self.events)
        rc = self.proc.poll()
        return NodeRun(self.argv, -999 if rc is None else rc, events, "".join(self._stderr))
