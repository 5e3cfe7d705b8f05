"""Headless Chromium's own WebSocket (through Playwright) against a raw WebSocket echo endpoint.

The page is served by the App itself (a temporary static dir), so its origin is the server's
and the WebSocket handshake carries a same-origin ``Origin``. Every scenario runs with
permessage-deflate on and off in the App; Chromium always offers it, so with compression on it
must be negotiated (seen by the page as ``ws.extensions``) and with it off it must not be.

The server records what it saw (close codes from the browser) in a list the test reads.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.server_thread import ServerThread

from .conftest import HERE

pytestmark = pytest.mark.interop

PAGE = HERE / "ws_page.html"
ONE_MIB = 1 << 20
EVALUATE_TIMEOUT_MS = 30_000


def build_echo_app(static_dir: Path, compression: bool, log: list[dict[str, Any]]) -> Any:
    """An App with the test page as its static dir and one echo endpoint, ``/echo``.

    Text commands: ``!info`` answers a JSON description of the connection; ``!close CODE
    REASON`` closes with that code and reason. Anything else is echoed unchanged.
    """
    from pyserver.trio.http.app import App

    app = App(static_dir=str(static_dir), compression=compression)

    @app.websocket("/echo")
    async def echo(ws: Any) -> None:
        try:
            async for message in ws:
                if isinstance(message, str) and message == "!info":
                    await ws.send(
                        json.dumps(
                            {
                                "offered": ws.request.headers.get("sec-websocket-extensions"),
                                "origin": ws.request.headers.get("origin"),
                                "deflate_window_bits": getattr(ws, "deflate_window_bits", None),
                                "subprotocol": ws.subprotocol,
                            }
                        )
                    )
                elif isinstance(message, str) and message.startswith("!close "):
                    _, code, reason = message.split(" ", 2)
                    await ws.close(int(code), reason)
                    return
                else:
                    await ws.send(message)
        finally:
            log.append(
                {
                    "close_code": getattr(ws, "close_code", None),
                    "close_reason": getattr(ws, "close_reason", None),
                }
            )

    return app


class EchoSite:
    def __init__(self, server: ServerThread, log: list[dict[str, Any]], compression: bool):
        self.server = server
        self.log = log
        self.compression = compression

    @property
    def page_url(self) -> str:
        return f"{self.server.base_url}/index.html"

    def wait_log(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait (bounded) until the server handler has finished ``n`` connections."""
        deadline = time.monotonic() + timeout
        while len(self.log) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.log)


@pytest.fixture(scope="module", params=[True, False], ids=["deflate-on", "deflate-off"])
def echo_site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EchoSite]:
    compression: bool = request.param
    static_dir = tmp_path_factory.mktemp("static")
    shutil.copyfile(PAGE, static_dir / "index.html")
    log: list[dict[str, Any]] = []
    server = ServerThread(lambda: build_echo_app(static_dir, compression, log))
    server.start()
    try:
        yield EchoSite(server, log, compression)
    finally:
        server.stop()


@pytest.fixture
def page(chromium_browser: Any, echo_site: EchoSite) -> Iterator[Any]:
    context = chromium_browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(EVALUATE_TIMEOUT_MS)
        messages: list[str] = []
        pg.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
        response = pg.goto(echo_site.page_url)
        assert response is not None and response.status == 200, (
            f"GET {echo_site.page_url} -> {response and response.status}"
        )
        pg.wait_for_function("window.pageReady === true")
        yield pg
    finally:
        context.close()


def evaluate(page: Any, function: str, *args: Any) -> Any:
    """Call ``window.<function>(...args)`` in the page and return its (JSON) result."""
    return page.evaluate(f"(args) => window.{function}(...args)", list(args))


def assert_all_echoed(result: dict[str, Any]) -> None:
    bad = [r for r in result["results"] if not r["equal"]]
    assert not bad, f"messages not echoed unchanged: {bad}\nfull result: {result}"
    close = result["finalClose"]
    assert close is not None, f"the page never saw its close complete: {result}"
    assert close["code"] == 1000 and close["wasClean"], close


def test_page_is_served_same_origin(page: Any, echo_site: EchoSite) -> None:
    info = evaluate(page, "infoTest", "/echo")
    assert info["server"] is not None, info
    assert info["server"]["origin"] == echo_site.server.base_url, info


def test_cross_origin_page_is_refused(
    chromium_browser: Any, echo_site: EchoSite, page: Any
) -> None:
    """The App's default Origin rule is same-origin: a page from http://localhost:PORT may open
    ws://localhost:PORT/ but not ws://127.0.0.1:PORT/ (another origin, refused with 403, which
    the page sees as a failed connection, close code 1006)."""
    port = echo_site.server.port
    other = chromium_browser.new_context()
    try:
        pg = other.new_page()
        pg.set_default_timeout(EVALUATE_TIMEOUT_MS)
        response = pg.goto(f"http://localhost:{port}/index.html")
        assert response is not None and response.status == 200
        pg.wait_for_function("window.pageReady === true")
        same = evaluate(pg, "openTest", f"ws://localhost:{port}/echo")
        assert same["opened"], same
        cross = evaluate(pg, "openTest", f"ws://127.0.0.1:{port}/echo")
        assert not cross["opened"], cross
        assert "closed before open: 1006" in cross["error"], cross
    finally:
        other.close()
    # And the page served from 127.0.0.1 (the fixture's) is refused on localhost.
    cross = evaluate(page, "openTest", f"ws://localhost:{port}/echo")
    assert not cross["opened"], cross


def test_permessage_deflate_negotiation(page: Any, echo_site: EchoSite) -> None:
    info = evaluate(page, "infoTest", "/echo")
    server = info["server"]
    assert server is not None, info
    # Chromium always offers permessage-deflate.
    assert "permessage-deflate" in (server["offered"] or ""), info
    if echo_site.compression:
        assert info["extensions"].startswith("permessage-deflate"), info
        assert server["deflate_window_bits"] is not None, info
    else:
        assert info["extensions"] == "", info
        assert server["deflate_window_bits"] is None, info


def test_text_messages(page: Any) -> None:
    result = evaluate(page, "echoTest", "/echo", "text")
    assert [r["sent"]["kind"] for r in result["results"]] == ["text"] * 4
    assert_all_echoed(result)


def test_binary_messages(page: Any) -> None:
    result = evaluate(page, "echoTest", "/echo", "binary")
    assert [r["got"] and r["got"]["kind"] for r in result["results"]] == ["binary"] * 4, result
    assert_all_echoed(result)


def test_one_mebibyte_messages(page: Any) -> None:
    result = evaluate(page, "echoTest", "/echo", "large")
    assert [r["sent"]["length"] for r in result["results"]] == [ONE_MIB, ONE_MIB]
    assert_all_echoed(result)


def test_compressible_messages(page: Any) -> None:
    result = evaluate(page, "echoTest", "/echo", "compressible")
    assert_all_echoed(result)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "going away"), (4001, "bye"), (4999, "r\u00e9sum\u00e9 \u2713")],
    ids=["1000", "1001", "4001", "4999-utf8-reason"],
)
def test_server_close_code_seen_by_page(page: Any, code: int, reason: str) -> None:
    result = evaluate(page, "serverCloseTest", "/echo", code, reason)
    close = result["closeEvent"]
    assert close is not None, f"the page saw no close event: {result}"
    assert (close["code"], close["reason"], close["wasClean"]) == (code, reason, True), result


@pytest.mark.parametrize(
    ("code", "reason", "server_sees"),
    [(1000, "done", 1000), (4002, "client bye", 4002), (None, None, 1005)],
    ids=["1000", "4002", "no-code"],
)
def test_page_close_code_seen_by_server(
    page: Any, echo_site: EchoSite, code: int | None, reason: str | None, server_sees: int
) -> None:
    before = len(echo_site.log)
    if code is None:
        result = page.evaluate(
            """async () => {
                const h = await connect("/echo");
                h.ws.close();
                return { closeEvent: await waitClosed(h) };
            }"""
        )
    else:
        result = evaluate(page, "clientCloseTest", "/echo", code, reason)
    close = result["closeEvent"]
    assert close is not None and close["wasClean"], result
    assert close["code"] == server_sees, result
    log = echo_site.wait_log(before + 1)
    assert len(log) > before, "the server handler did not finish after the page closed"
    seen = log[before]
    assert seen["close_code"] == server_sees, seen
    if reason:
        assert seen["close_reason"] == reason, seen


@pytest.mark.parametrize("size", [ONE_MIB + 1, 4 * ONE_MIB], ids=["1MiB+1", "4MiB"])
def test_message_over_the_limit_closes_1009(page: Any, size: int) -> None:
    """The App's default message limit is 1 MiB; a bigger message is refused with 1009, and the
    page must see that code (not 1006) even while it is still sending. Three connections in a
    row, so that a close frame lost to a TCP reset does not pass by luck."""
    results = [evaluate(page, "oversizeTest", "/echo", size) for _ in range(3)]
    codes = [r["closeEvent"] and r["closeEvent"]["code"] for r in results]
    assert codes == [1009, 1009, 1009], results
    assert all(r["leftover"] == [] for r in results), results
