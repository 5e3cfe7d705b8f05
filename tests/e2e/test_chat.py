"""The chat (/chat/) in headless Chromium with the official client: two users in two browser
contexts log in, talk (delivery shown by ack), see each other in the presence list (a second
tab of a user does not duplicate them) and typing; a late joiner sees the history; an image is
shared as binary and shown, an oversized one refused; a bad or expired token is refused with
the server's message in the page; messages written offline are queued and flushed on
reconnect. The main scenario runs once more with ``?transport=polling``."""

from __future__ import annotations

import re
import struct
import time
import uuid
import zlib
from typing import Any

import pytest
from helpers.server_thread import ServerThread
from playwright.sync_api import expect

from pyserver.demo.chat import issue_token

from .conftest import JWT_SECRET, screenshot

pytestmark = pytest.mark.interop


def fresh_room() -> str:
    return "t" + uuid.uuid4().hex[:10]


def chat_url(server: ServerThread, room: str, transport: str | None = None) -> str:
    url = f"{server.base_url}/chat/?room={room}"
    return url + "&transport=polling" if transport == "polling" else url


def wait_joined(page: Any, room: str, name: str) -> None:
    expect(page.locator("#status")).to_have_attribute("data-status", "connected")
    expect(page.locator("#room-title")).to_have_text(f"#{room}")
    expect(page.locator(f'#presence li[data-user="{name}"]')).to_have_count(1)


def sign_in(new_page: Any, url: str, room: str, name: str) -> Any:
    page = new_page(url)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-name", name)
    page.click("#login-button")
    wait_joined(page, room, name)
    return page


def send(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def presence(page: Any) -> list[str]:
    names: list[str] = page.locator("#presence li").evaluate_all(
        "items => items.map(li => li.dataset.user)"
    )
    return names


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (the browser must decode it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("transport", [None, "polling"])
def test_two_users_talk_with_presence_typing_and_acks(
    demo_server: ServerThread, new_page: Any, transport: str | None
) -> None:
    room = fresh_room()
    url = chat_url(demo_server, room, transport)
    ada = sign_in(new_page, url, room, "ada")
    bob = sign_in(new_page, url, room, "bob")
    expect(ada.locator("#presence li")).to_have_count(2)
    assert presence(ada) == presence(bob) == ["ada", "bob"]

    # a second tab of ada (same browser context: same token) is still one user
    ada2 = ada.context.new_page()
    ada2.goto(url)
    wait_joined(ada2, room, "ada")
    expect(ada2.locator("#presence li")).to_have_count(2)
    assert presence(bob) == ["ada", "bob"]

    # typing shows at the other side. "typing" is volatile both ways (the client's emit and
    # the server's relay may each be dropped while a transport is busy, by design), and the
    # page sends it at most every 1.5 s: so keep typing until it shows, a few times at most
    for attempt in range(4):
        bob.locator("#text").press_sequentially("hel" if attempt == 0 else "l")
        try:
            expect(ada.locator("#typing")).to_have_text("bob is typing…", timeout=2_000)
            break
        except AssertionError:
            if attempt == 3:
                raise
    expect(bob.locator("#typing")).to_have_text("")

    # a message: pending, then delivered by the server's ack; shown to ada as text, not HTML
    text = "hello <b>ada</b> & co"
    send(bob, text)
    mine = bob.locator("#messages .msg.mine").last
    expect(mine).to_have_attribute("data-status", "delivered")
    expect(mine.locator(".state")).to_have_text("✓ delivered")
    message_id = mine.get_attribute("data-id")
    assert message_id
    for page in (ada, ada2):
        got = page.locator(f'#messages .msg[data-id="{message_id}"]')
        expect(got.locator(".body")).to_have_text(text)
        expect(got.locator(".user")).to_have_text("bob")
        assert got.locator(".body b").count() == 0
    expect(ada.locator("#typing")).to_have_text("")  # sending stops the indicator

    send(ada, "hi bob, from my first tab")
    expect(ada.locator("#messages .msg.mine").last).to_have_attribute("data-status", "delivered")
    expect(bob.locator("#messages .msg").last.locator(".body")).to_have_text(
        "hi bob, from my first tab"
    )
    # still one ada for bob (the presence update of her second tab came before this message)
    assert presence(bob) == ["ada", "bob"]
    # ada's other tab shows it as hers
    expect(ada2.locator("#messages .msg.mine").last.locator(".body")).to_have_text(
        "hi bob, from my first tab"
    )
    screenshot(bob, "chat-conversation" if transport is None else "chat-polling")

    # ada online until her last tab closes
    ada2.close()
    ada.close()
    expect(bob.locator("#presence li")).to_have_count(1)
    assert presence(bob) == ["bob"]


def test_late_joiner_sees_history(demo_server: ServerThread, new_page: Any) -> None:
    room = fresh_room()
    url = chat_url(demo_server, room)
    ada = sign_in(new_page, url, room, "ada")
    for n in range(3):
        send(ada, f"message {n}")
        expect(ada.locator("#messages .msg[data-status=delivered]")).to_have_count(n + 1)
    carol = sign_in(new_page, url, room, "carol")
    expect(carol.locator("#messages .msg .body")).to_have_text(
        ["message 0", "message 1", "message 2"]
    )
    # switching rooms loads that room's history, coming back loads this one again
    carol.click('#rooms button[data-room="random"]')
    expect(carol.locator("#room-title")).to_have_text("#random")
    expect(ada.locator("#presence li")).to_have_count(1)
    # joining a room by name (a leading # and capitals are fine)
    carol.fill("#join-input", f"#{room.upper()}-Side")
    carol.press("#join-input", "Enter")
    expect(carol.locator("#room-title")).to_have_text(f"#{room}-side")
    expect(carol.locator("#messages .empty")).to_have_text(
        f"No messages in #{room}-side yet. Say hello!"
    )
    carol.click(f'#rooms button[data-room="{room}"]')
    expect(carol.locator("#room-title")).to_have_text(f"#{room}")
    expect(carol.locator("#messages .msg .body")).to_have_count(3)
    assert carol.url.endswith("room=" + room)
    screenshot(carol, "chat-history")


def test_image_shared_and_size_limit(demo_server: ServerThread, new_page: Any) -> None:
    room = fresh_room()
    url = chat_url(demo_server, room)
    ada = sign_in(new_page, url, room, "ada")
    bob = sign_in(new_page, url, room, "bob")
    picture = png(120, 80, (232, 89, 12))
    ada.set_input_files(
        "#image-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": picture}]
    )
    mine = ada.locator("#messages .msg.mine").last
    expect(mine).to_have_attribute("data-status", "delivered")
    image = bob.locator("#messages .msg img").last
    expect(image).to_be_visible()
    assert image.get_attribute("src").startswith("blob:")
    bob.wait_for_function(
        "img => img.complete && img.naturalWidth === 120 && img.naturalHeight === 80",
        arg=image.element_handle(),
    )
    # too large: the server's ack refuses it and the page says why
    big = picture + b"\x00" * (600 * 1024)
    ada.set_input_files(
        "#image-input", files=[{"name": "big.png", "mimeType": "image/png", "buffer": big}]
    )
    refused = ada.locator("#messages .msg.mine").last
    expect(refused).to_have_attribute("data-status", "failed")
    expect(refused.locator(".state")).to_have_text("not sent: image too large (max 512 KiB)")
    screenshot(ada, "chat-image")
    # larger than a Socket.IO message may be: refused by the page before sending
    huge = picture + b"\x00" * (1 << 20)
    ada.set_input_files(
        "#image-input", files=[{"name": "huge.png", "mimeType": "image/png", "buffer": huge}]
    )
    expect(ada.locator("#messages .msg.mine")).to_have_count(3)
    expect(ada.locator("#messages .msg.mine").last.locator(".state")).to_have_text(
        "not sent: image too large (max 512 KiB)"
    )
    send(ada, "still connected")
    expect(bob.locator("#messages .msg .body").last).to_have_text("still connected")
    # bob never got the refused one, and a late joiner gets the image from the history
    expect(bob.locator("#messages .msg")).to_have_count(2)
    carol = sign_in(new_page, url, room, "carol")
    carol.wait_for_function(
        "() => { const img = document.querySelector('#messages .msg img');"
        " return img && img.complete && img.naturalWidth === 120; }"
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token", "invalid"),
        (issue_token("ada", JWT_SECRET, now=time.time() - 7200, ttl=60), "expired"),
        (issue_token("ada", "some-other-secret-that-is-long-enough!", now=time.time()), "invalid"),
    ],
)
def test_bad_token_refused_with_a_message(
    demo_server: ServerThread, chromium_browser: Any, token: str, reason: str
) -> None:
    context = chromium_browser.new_context(viewport={"width": 1000, "height": 700})
    errors: list[str] = []
    try:
        context.add_init_script(
            f"localStorage.getItem('pyserver-chat-token') === null &&"
            f" localStorage.setItem('pyserver-chat-token', {token!r})"
        )
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(chat_url(demo_server, "general"))
        expect(page.locator("#status")).to_have_attribute("data-status", "refused")
        expected = f"The server refused the connection: invalid token ({reason})"
        expect(page.locator("#notice")).to_contain_text(expected)
        expect(page.locator("#login")).to_be_visible()
        if reason == "expired":
            expect(page.locator("#notice")).to_contain_text("your session has expired")
            screenshot(page, "chat-refused")
        # the bad token is gone; signing in again works
        assert page.evaluate("localStorage.getItem('pyserver-chat-token')") is None
        page.fill("#login-name", "ada")
        page.click("#login-button")
        wait_joined(page, "general", "ada")
        expect(page.locator("#notice")).to_be_hidden()
    finally:
        context.close()
    assert not errors


def test_invalid_name_refused_by_login(demo_server: ServerThread, new_page: Any) -> None:
    page = new_page(chat_url(demo_server, "general"))
    page.fill("#login-name", "<b>x</b>")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_contain_text("a name is 2 to 24 letters")
    expect(page.locator("#status")).to_have_attribute("data-status", "signed-out")


@pytest.mark.parametrize("transport", [None, "polling"])
def test_offline_queue_flushes_on_reconnect(
    demo_server: ServerThread, new_page: Any, transport: str | None
) -> None:
    room = fresh_room()
    url = chat_url(demo_server, room, transport)
    ada = sign_in(new_page, url, room, "ada")
    bob = sign_in(new_page, url, room, "bob")
    ada.context.set_offline(True)
    expect(ada.locator("#status")).not_to_have_attribute("data-status", "connected")
    send(ada, "written offline 1")
    send(ada, "written offline 2")
    queued = ada.locator("#messages .msg.mine")
    expect(queued).to_have_count(2)
    for n in range(2):
        expect(queued.nth(n)).to_have_attribute("data-status", "pending")
        expect(queued.nth(n).locator(".state")).to_have_text("queued")
    expect(ada.locator("#queue-info")).to_have_text("2 queued: sent when the connection is back")
    if transport is None:
        screenshot(ada, "chat-offline")
    ada.context.set_offline(False)
    expect(ada.locator("#status")).to_have_attribute("data-status", "connected")
    expect(queued.nth(0)).to_have_attribute("data-status", "delivered")
    expect(queued.nth(1)).to_have_attribute("data-status", "delivered")
    expect(bob.locator("#messages .msg .body")).to_have_text(
        ["written offline 1", "written offline 2"]
    )
    expect(ada.locator("#queue-info")).to_be_hidden()


def test_lost_ack_is_retried_without_a_duplicate(demo_server: ServerThread, new_page: Any) -> None:
    """The server stores a message but its ack never reaches the page (the long-poll response
    carrying it is dropped, which also breaks the connection): after the reconnect the page
    finds the message in the room's history, and the other user sees it once."""
    room = fresh_room()
    url = chat_url(demo_server, room, "polling")
    ada = sign_in(new_page, url, room, "ada")
    bob = sign_in(new_page, url, room, "bob")
    dropped: list[str] = []
    ack = re.compile(r'43/chat,\d+\[\{"ok":true')

    def drop_first_ack(route: Any) -> None:
        if dropped or route.request.method != "GET":
            route.continue_()
            return
        response = route.fetch()
        body = response.text()
        if ack.search(body):
            dropped.append(body)
            route.abort()
        else:
            route.fulfill(response=response)

    # the poll pending now was sent before the route: wait for one sent after it
    with ada.expect_request(lambda r: r.method == "GET" and "/socket.io/?" in r.url):
        ada.route(re.compile(r"/socket\.io/\?"), drop_first_ack)
    send(ada, "said once")
    mine = ada.locator("#messages .msg.mine")
    expect(mine).to_have_count(1)
    expect(ada.locator("#status")).not_to_have_attribute("data-status", "connected")
    expect(ada.locator("#status")).to_have_attribute("data-status", "connected")
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-status", "delivered")
    assert dropped
    expect(bob.locator("#messages .msg .body")).to_have_text(["said once"])
    send(ada, "and then this")
    expect(bob.locator("#messages .msg .body")).to_have_text(["said once", "and then this"])
    expect(ada.locator("#messages .msg.mine")).to_have_count(2)
