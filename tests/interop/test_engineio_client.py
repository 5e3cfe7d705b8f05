"""The official ``engine.io-client`` (npm, under Node) against our Engine.IO server.

``eio_client.js`` connects, runs one scenario and prints what it observed as JSON lines; these
tests assert on them. The server is ours, in-process (a background thread with its own
``trio.run``): an ``EngineIOServer`` mounted on an ``App`` at ``/engine.io/`` that echoes every
message, except the text ``close-me``, on which it closes the session.

Every scenario runs over polling only, WebSocket only, and "both" (polling, then the upgrade to
WebSocket). Binary over polling travels in the ``b<base64>`` form of the v4 payload: the
official client always encodes it that way, so the binary echoes below exercise it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.server_thread import ServerThread

from .conftest import NodeRun, Site, run_eio_client

pytestmark = pytest.mark.interop

TRANSPORTS = ["polling", "websocket", "both"]
CLOSE_TRIGGER = "close-me"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Below the defaults (max_payload 1_000_000; the App's max_body_size 1 MiB) even in base64.
LARGE_SIZE = 500_000
BURST_COUNT = 500
FAST_PING_INTERVAL = 0.3
FAST_PING_TIMEOUT = 1.0
HEARTBEAT_DURATION_MS = 2000


class EioSite(Site):
    """The Engine.IO server under test plus what its callbacks saw."""

    def __init__(self) -> None:
        super().__init__()
        self.connected: list[str] = []

    def build(self, app_options: dict[str, Any], **options: Any) -> Any:
        from pyserver.trio.engineio import EngineIOServer
        from pyserver.trio.http.app import App

        def on_connect(session: Any) -> None:
            with self.lock:
                self.connected.append(str(session.sid))

        def on_message(session: Any, data: str | bytes) -> None:
            if data == CLOSE_TRIGGER:
                session.close()
            else:
                session.send(data)

        def on_disconnect(session: Any, reason: Any) -> None:
            with self.lock:
                self.disconnected[str(session.sid)] = str(reason)

        eio = EngineIOServer(
            on_connect=on_connect, on_message=on_message, on_disconnect=on_disconnect, **options
        )
        app = App(serve_client=False, health_path=None, **app_options)
        app.mount("/engine.io/", eio)
        return app, [eio.serve]


def _site(app_options: dict[str, Any] | None = None, **options: Any) -> Iterator[EioSite]:
    site = EioSite()
    site.server = ServerThread(lambda: site.build(app_options or {}, **options))
    site.server.start()
    try:
        yield site
    finally:
        site.server.stop()


@pytest.fixture(scope="module")
def eio_site() -> Iterator[EioSite]:
    yield from _site()


@pytest.fixture(scope="module")
def eio_fast_heartbeat_site() -> Iterator[EioSite]:
    yield from _site(ping_interval=FAST_PING_INTERVAL, ping_timeout=FAST_PING_TIMEOUT)


@pytest.fixture(scope="module")
def eio_deflate_site() -> Iterator[EioSite]:
    """The App with permessage-deflate on (the Node client, through `ws`, always offers it)."""
    yield from _site(app_options={"compression": True})


# --------------------------------------------------------------------------------------------
# Checks shared by the scenarios


def assert_completed(run: NodeRun) -> None:
    """The script ran its scenario to the end: no timeout, exception or transport error."""
    problems = [e for e in run.events if e["event"] in ("timeout", "exception", "error")]
    assert run.returncode == 0 and not problems, f"the client did not complete:\n{run}"
    assert run.of("done"), f"no 'done' line:\n{run}"


def assert_transport_path(run: NodeRun, transports: str) -> None:
    """Opened on the right transport, and upgraded exactly when it should."""
    handshake = run.one("handshake")
    opened = run.one("open")
    done = run.one("done")
    if transports == "polling":
        assert opened["transport"] == "polling", run
        assert handshake["upgrades"] == ["websocket"], run  # offered, but the client declines
        assert not run.of("upgrading") and not run.of("upgrade"), run
        assert done["transport"] == "polling", run
    elif transports == "websocket":
        assert opened["transport"] == "websocket", run
        assert handshake["upgrades"] == [], run
        assert not run.of("upgrade"), run
        assert done["transport"] == "websocket", run
    else:
        assert opened["transport"] == "polling", run
        assert handshake["upgrades"] == ["websocket"], run
        upgrade = run.one("upgrade")
        assert upgrade["transport"] == "websocket", run
        assert upgrade["socketTransport"] == "websocket", run
        assert not run.of("upgradeError"), run
        assert done["transport"] == "websocket" and done["upgraded"] is True, run


def _key(event: dict[str, Any]) -> tuple[str, str]:
    if event["kind"] == "undefined":
        # engine.io-parser decodes an empty message ("4") to undefined on the client side.
        return ("text", EMPTY_SHA256)
    return (event["kind"], event["sha256"])


def assert_echoed_in_order(run: NodeRun) -> None:
    sent = [_key(e) for e in run.of("sent")]
    got = [_key(e) for e in run.of("message")]
    assert sent, run
    if got != sent:
        first = next((i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b), None)
        pytest.fail(
            f"echoes differ from what was sent (sent {len(sent)}, got {len(got)}, first "
            f"difference at index {first}):\n{run}"
        )


def assert_client_close_seen(site: EioSite, run: NodeRun) -> None:
    """The client closed at the end; the server must report it as "transport close"."""
    sid = run.one("handshake")["sid"]
    assert run.one("close")["reason"] == "forced close", run
    reason = site.wait_disconnect(sid)
    assert reason == "transport close", f"server-side reason for {sid}: {reason!r}\n{run}"


# --------------------------------------------------------------------------------------------
# Scenarios


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_text_and_binary_echo(node: str, eio_site: EioSite, transports: str) -> None:
    run = run_eio_client(node, eio_site.url, transports=transports, mode="echo")
    assert_completed(run)
    assert_transport_path(run, transports)
    kinds = {e["kind"] for e in run.of("sent")}
    assert kinds == {"text", "binary"}, run
    if transports != "polling":
        # The client offers permessage-deflate; the App has compression off: not agreed.
        assert run.one("done")["extensions"] == "", run
    assert_echoed_in_order(run)
    assert_client_close_seen(eio_site, run)


@pytest.mark.parametrize("mode", ["echo", "large"])
def test_fetch_polling(node: str, eio_site: EioSite, mode: str) -> None:
    """The client's other polling implementation (``fetch`` instead of XMLHttpRequest). Node's
    fetch sends ``Accept-Encoding: gzip, deflate``, so large poll responses may come compressed."""
    run = run_eio_client(
        node,
        eio_site.url,
        transports="polling",
        mode=mode,
        polling="fetch",
        size=LARGE_SIZE,
        timeout=30,
    )
    assert_completed(run)
    assert_transport_path(run, "polling")
    assert_echoed_in_order(run)
    assert_client_close_seen(eio_site, run)


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_large_messages(node: str, eio_site: EioSite, transports: str) -> None:
    run = run_eio_client(
        node, eio_site.url, transports=transports, mode="large", size=LARGE_SIZE, timeout=30
    )
    assert_completed(run)
    assert_transport_path(run, transports)
    assert [e["kind"] for e in run.of("sent")] == ["text", "binary"], run
    assert run.of("sent")[1]["length"] == LARGE_SIZE, run
    assert_echoed_in_order(run)
    assert_client_close_seen(eio_site, run)


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_burst_keeps_order(node: str, eio_site: EioSite, transports: str) -> None:
    run = run_eio_client(
        node, eio_site.url, transports=transports, mode="burst", count=BURST_COUNT, timeout=30
    )
    assert_completed(run)
    assert_transport_path(run, transports)
    assert len(run.of("sent")) == BURST_COUNT, run
    previews = [e["preview"] for e in run.of("message") if e["kind"] == "text"]
    assert previews == [f"msg-{i}" for i in range(BURST_COUNT) if i % 10 != 9], run
    assert_echoed_in_order(run)
    assert_client_close_seen(eio_site, run)


def test_upgrade_keeps_messages_in_order(node: str, eio_site: EioSite) -> None:
    """Messages sent while polling (some while the probe is in flight) and after the upgrade."""
    run = run_eio_client(node, eio_site.url, transports="both", mode="upgrade")
    assert_completed(run)
    assert_transport_path(run, "both")
    names = run.names()
    assert names.index("upgrading") < names.index("upgrade"), run
    assert_echoed_in_order(run)
    after = [e for e in run.of("message") if e["preview"].startswith(("after", "6166746572"))]
    assert len(after) == 3 and all(e["transport"] == "websocket" for e in after), run
    assert_client_close_seen(eio_site, run)


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_server_close(node: str, eio_site: EioSite, transports: str) -> None:
    run = run_eio_client(
        node, eio_site.url, transports=transports, mode="server-close", trigger=CLOSE_TRIGGER
    )
    assert_completed(run)
    close = run.one("close")
    assert close["reason"] == "transport close", run
    if transports == "polling":
        # The close packet arrived in a poll response.
        assert close["description"] == {"description": "transport closed by the server"}, run
    assert run.one("done")["received"] == 0, run
    sid = run.one("handshake")["sid"]
    assert eio_site.wait_disconnect(sid) == "forced close", run


@pytest.mark.parametrize("transports", TRANSPORTS)
def test_heartbeat_survives_several_intervals(
    node: str, eio_fast_heartbeat_site: EioSite, transports: str
) -> None:
    site = eio_fast_heartbeat_site
    run = run_eio_client(
        node, site.url, transports=transports, mode="heartbeat", duration=HEARTBEAT_DURATION_MS
    )
    assert_completed(run)
    handshake = run.one("handshake")
    assert handshake["pingInterval"] == round(FAST_PING_INTERVAL * 1000), run
    assert handshake["pingTimeout"] == round(FAST_PING_TIMEOUT * 1000), run
    assert_transport_path(run, transports)
    # ~6 intervals fit in the duration; demand at least 3 so a slow machine does not flake.
    assert run.one("done")["pings"] >= 3, run
    assert [e["preview"] for e in run.of("message")] == ["still-alive"], run
    assert_client_close_seen(site, run)


@pytest.mark.parametrize("transports", ["websocket", "both"])
@pytest.mark.parametrize("mode", ["echo", "large", "burst"])
def test_websocket_with_permessage_deflate(
    node: str, eio_deflate_site: EioSite, mode: str, transports: str
) -> None:
    run = run_eio_client(
        node,
        eio_deflate_site.url,
        transports=transports,
        mode=mode,
        size=LARGE_SIZE,
        count=BURST_COUNT,
        timeout=30,
    )
    assert_completed(run)
    assert_transport_path(run, transports)
    assert run.one("done")["extensions"] == "permessage-deflate", run
    assert_echoed_in_order(run)
    assert_client_close_seen(eio_deflate_site, run)
