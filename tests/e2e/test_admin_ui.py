"""The Socket.IO Admin UI (``@socket.io/admin-ui`` 0.5, the page the package carries) in
headless Chromium, served by the demo server instrumented as ``pyserver demo
--admin-password`` does: a wrong password is refused, the login works with the form's
default server URL, the sockets of two real clients (python-socketio's) and their room show,
an event they send shows, and the UI's disconnect button disconnects one of them. Screenshots:
``artifacts/screenshots/admin-*.png``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import socketio
from helpers.server_thread import ServerThread
from playwright.sync_api import expect

from .conftest import screenshot

pytestmark = pytest.mark.interop

PASSWORD = "e2e-admin-password"


@pytest.fixture(scope="module")
def admin_server() -> Iterator[ServerThread]:
    def build() -> Any:
        from pyserver.demo import build_server
        from pyserver.trio.socketio.admin import basic_auth

        sio = build_server(ping_interval=2.0, ping_timeout=2.0)
        sio.instrument(auth=basic_auth("admin", PASSWORD), serve_ui=True)  # --admin-password
        return sio

    server = ServerThread(build)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def drawing_client(url: str, gone: list[str], left: threading.Event) -> socketio.Client:
    client = socketio.Client(reconnection=False)

    @client.on("disconnect", namespace="/drawing")
    def disconnected(*reason: Any) -> None:
        gone.append(str(reason[0]) if reason else "")
        left.set()

    client.connect(url, namespaces=["/drawing"], auth={"board": "admin-e2e"}, wait_timeout=10)
    return client


def choose_namespace(page: Any, name: str) -> None:
    select = page.locator(".v-select:visible", has_text="Select namespace")
    select.locator(".v-input__slot").last.click()
    page.get_by_role("option", name=name, exact=True).click()


def test_admin_ui_login_sockets_rooms_events_disconnect(
    admin_server: ServerThread, new_page: Any
) -> None:
    url = admin_server.base_url
    gone: list[str] = []
    left = threading.Event()
    alice = drawing_client(url, gone, left)
    bob = drawing_client(url, [], threading.Event())
    try:
        alice_id = alice.get_sid("/drawing")
        bob_id = bob.get_sid("/drawing")
        page = new_page(url + "/admin/", bypass_csp=False)  # the page under its own CSP
        page.set_viewport_size({"width": 1280, "height": 800})
        # the form offers this server; a wrong password is refused as Node refuses it
        assert page.get_by_label("Server URL").input_value() == url
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("wrong")
        page.get_by_role("button", name="Connect").click()
        page.get_by_text("Invalid credentials").wait_for()
        screenshot(page, "admin-refused")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Connect").click()
        page.get_by_label("Password").wait_for(state="hidden")  # the form closed
        page.locator("td", has_text="/drawing").first.wait_for()
        screenshot(page, "admin-dashboard")

        page.get_by_role("link", name="Sockets").click()
        choose_namespace(page, "/drawing")
        expect(page.locator("tr:visible", has_text=alice_id)).to_have_count(1)
        expect(page.locator("tr:visible", has_text=bob_id)).to_have_count(1)
        screenshot(page, "admin-sockets")

        page.get_by_role("link", name="Rooms").click()
        choose_namespace(page, "/drawing")
        page.locator("td", has_text="admin-e2e").first.wait_for()
        screenshot(page, "admin-rooms")

        alice.emit("sync", None, namespace="/drawing")  # an event, acked by the demo
        page.get_by_role("link", name="Events").click()
        choose_namespace(page, "/drawing")
        page.locator("td", has_text="sync").first.wait_for()
        screenshot(page, "admin-events")

        page.get_by_role("link", name="Sockets").click()
        choose_namespace(page, "/drawing")
        row = page.locator("tr:visible", has_text=alice_id)
        row.locator("button").click()
        assert left.wait(10), "the client was not disconnected"
        # (the click also opens the socket's page, which shows it disconnected)
        page.locator(".v-chip:visible", has_text="disconnected").first.wait_for()
        screenshot(page, "admin-disconnected")
        page.get_by_role("link", name="Sockets").first.click()
        choose_namespace(page, "/drawing")
        expect(page.locator("tr:visible", has_text=bob_id)).to_have_count(1)
        expect(page.locator("tr:visible", has_text=alice_id)).to_have_count(0)
        screenshot(page, "admin-sockets-after")
        assert gone == ["server disconnect"] or gone[0].startswith("io server")
        assert bob.connected
    finally:
        for client in (alice, bob):
            if client.connected:
                client.disconnect()


def test_ui_page_loads_nothing_from_elsewhere(admin_server: ServerThread, new_page: Any) -> None:
    elsewhere: list[str] = []
    page = new_page("about:blank")
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(admin_server.base_url) else elsewhere.append(request.url)
        ),
    )
    page.goto(admin_server.base_url + "/admin/")
    page.get_by_label("Username").wait_for()
    page.wait_for_load_state("networkidle")
    assert elsewhere == []
    index = page.request.get(admin_server.base_url + "/admin")
    assert index.ok and index.url.endswith("/admin/")  # redirected to the slash form
    assert page.request.get(admin_server.base_url + "/admin/nothing.js").status == 404
