"""Fixtures for the interop tests: our server in a background thread, real peers driven at it.

The server runs in its own thread with its own ``trio.run`` so the peers can be driven from
plain synchronous tests: Node through ``subprocess.run`` (with a timeout), Chromium through
Playwright's sync API (which runs its own asyncio loop and must not share a thread with trio).

A test skips only when the peer itself is absent from the machine (no ``node`` on PATH, no
``/usr/bin/chromium``, no ``playwright`` package). CI installs all of them, so there they run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

HERE = Path(__file__).resolve().parent
EIO_CLIENT_JS = HERE / "eio_client.js"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------
# The server under test, in a thread of its own


def _port_of(listeners: Any) -> int:
    """The bound TCP port, from the listeners ``nursery.start(app.serve, ...)`` reports."""
    return int(listeners[0].socket.getsockname()[1])


class ServerThread:
    """Run ``build()`` in a fresh ``trio.run`` on a daemon thread, serving on 127.0.0.1 and a
    free port. ``build`` returns the App (anything with ``async serve(host, port, *,
    task_status)``), or ``(app, services)`` where each service is started first with
    ``nursery.start(service)`` (the Engine.IO server's timer task, for one)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyserver-under-test", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self.app: Any = None
        self.port: int | None = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test through .error
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        built = self._build()
        services: list[Callable[..., Awaitable[Any]]] = []
        if isinstance(built, tuple):
            built, services = built[0], list(built[1])
        self.app = built
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            for service in services:  # e.g. EngineIOServer.serve, the Engine.IO timer task
                await nursery.start(service)
            started = await nursery.start(self.app.serve, "127.0.0.1", 0)
            self.port = _port_of(started)
            self._ready.set()

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"the server did not start within {START_TIMEOUT}s")
        if self.error is not None or self.port is None:
            raise RuntimeError(f"the server failed to start: {self.error!r}") from self.error
        return self.port

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None and self._thread.is_alive():
            try:
                trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the server thread did not stop within {STOP_TIMEOUT}s")
        if self.error is not None:
            raise RuntimeError(f"the server crashed: {self.error!r}") from self.error

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --------------------------------------------------------------------------------------------
# Node and the official engine.io-client


@pytest.fixture(scope="session")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (the official engine.io-client runs under Node)")
    modules = HERE / "node_modules" / "engine.io-client"
    if not modules.is_dir():
        # Node is here but the packages are not: a setup error, not an absent tool.
        pytest.fail(f"{modules} is missing: run `npm ci` in {HERE} (scripts/bootstrap.sh does)")
    return path


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
# Chromium through Playwright


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()
