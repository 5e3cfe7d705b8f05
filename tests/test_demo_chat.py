"""The chat demo's server side (``pyserver.demo.chat``): tokens, validation, the bounded
history and dedup memory as plain functions, then the namespace end to end with
pyserver's Trio client (login, refused tokens, presence across sockets of one user, acks,
dedup of a retried message, history for a late joiner, images and their size limit, the
rate limit), and two nodes sharing a real redis-server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from helpers.redis_process import REDIS_SERVER, RedisProcess
from helpers.sio_client import in_thread, next_event, serving

from pyserver import Server, testing
from pyserver.demo import chat
from pyserver.demo.chat import (
    Dedup,
    History,
    Invalid,
    TokenError,
    issue_token,
    sniff_image,
    validate_cid,
    validate_name,
    validate_room,
    validate_text,
    verify_token,
)
from pyserver.errors import ConnectionRefused
from pyserver.trio.client.socket import ClientSocket

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
NOW = 1_800_000_000.0
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

# -- tokens --------------------------------------------------------------------------------


def test_token_round_trip_and_expiry() -> None:
    token = issue_token("ada", SECRET, now=NOW, ttl=60)
    assert verify_token(token, SECRET, now=NOW) == "ada"
    assert verify_token(token, SECRET, now=NOW + 59) == "ada"
    with pytest.raises(TokenError) as info:
        verify_token(token, SECRET, now=NOW + 60)
    assert info.value.reason == "expired"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        (42, "missing"),
        ("not-a-jwt", "invalid"),
        ("x" * 5000, "invalid"),
        (issue_token("ada", "another-secret-that-is-long-enough-too!", now=NOW), "invalid"),
        # signed right but not ours: wrong issuer, a bad name, no expiry, alg "none"
        (jwt.encode({"sub": "ada", "iss": "x", "iat": 1, "exp": 2**31}, SECRET), "invalid"),
        (
            jwt.encode({"sub": "<b>", "iss": chat.ISSUER, "iat": 1, "exp": 2**31}, SECRET),
            "invalid",
        ),
        (jwt.encode({"sub": "ada", "iss": chat.ISSUER, "iat": 1}, SECRET), "invalid"),
        (  # issued an hour from now
            jwt.encode(
                {"sub": "ada", "iss": chat.ISSUER, "iat": int(NOW) + 3600, "exp": 2**31}, SECRET
            ),
            "invalid",
        ),
        (
            jwt.encode(
                {"sub": "ada", "iss": chat.ISSUER, "iat": 1, "exp": 2**31}, None, algorithm="none"
            ),
            "invalid",
        ),
    ],
)
def test_tokens_refused(token: object, reason: str) -> None:
    with pytest.raises(TokenError) as info:
        verify_token(token, SECRET, now=NOW)
    assert info.value.reason == reason


def test_tampered_token_refused() -> None:
    header, payload, signature = issue_token("ada", SECRET, now=NOW).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "bob"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(TokenError):
        verify_token(f"{header}.{forged}.{signature}", SECRET, now=NOW)


# -- validation ----------------------------------------------------------------------------


def test_names() -> None:
    assert validate_name(" ada.l-1_ ") == "ada.l-1_"
    for bad in ("a", "x" * 25, "-ada", "ada lovelace", "<script>", "名前", 7, None):
        with pytest.raises(Invalid):
            validate_name(bad)


def test_rooms() -> None:
    assert validate_room("#General") == "general"
    assert validate_room("r") == "r"
    for bad in ("", "#", "a b", "x" * 33, "../x", "_x", None, ["general"]):
        with pytest.raises(Invalid):
            validate_room(bad)


def test_text_and_cid() -> None:
    assert validate_text("  hi\r\nthere ") == "hi\nthere"
    assert validate_text("x" * chat.TEXT_LIMIT) == "x" * chat.TEXT_LIMIT
    for bad in ("", "   ", "x" * (chat.TEXT_LIMIT + 1), None, b"hi", {"text": "hi"}):
        with pytest.raises(Invalid):
            validate_text(bad)
    assert validate_cid("abc-_09") == "abc-_09"
    for bad_cid in ("", "x" * 65, "a b", "é", 1, None):
        with pytest.raises(Invalid):
            validate_cid(bad_cid)


def test_images_sniffed_and_limited() -> None:
    assert sniff_image(PNG) == "image/png"
    assert sniff_image(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_image(b"GIF89a...") == "image/gif"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(PNG + b"\x00" * (chat.IMAGE_LIMIT - len(PNG))) == "image/png"
    with pytest.raises(Invalid, match="too large"):
        sniff_image(PNG + b"\x00" * (chat.IMAGE_LIMIT - len(PNG) + 1))
    for bad in (b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"", "\x89PNG", None):
        with pytest.raises(Invalid):
            sniff_image(bad)


# -- history and dedup ---------------------------------------------------------------------


def msg(n: int, image: bytes | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"id": f"m{n}", "user": "ada", "ts": n}
    if image is None:
        m["text"] = str(n)
    else:
        m["image"] = image
    return m


def test_history_keeps_the_last_messages_per_room() -> None:
    history = History(limit=3)
    for n in range(5):
        history.add("general", msg(n))
    history.add("other", msg(9))
    assert [m["id"] for m in history.get("general")] == ["m2", "m3", "m4"]
    assert [m["id"] for m in history.get("other")] == ["m9"]
    assert history.get("never") == []


def test_history_bounds_rooms_but_keeps_the_fixed_ones() -> None:
    history = History(max_rooms=3, keep=("general",))
    history.add("general", msg(0))
    for n in range(1, 6):
        history.add(f"room{n}", msg(n))
    assert history.rooms() == ["general", "room4", "room5"]
    history.touch("room4")  # used recently: room5 goes first
    history.touch("room6")
    assert history.rooms() == ["general", "room4", "room6"]
    assert history.get("general") == [msg(0)]


def test_history_image_budgets() -> None:
    history = History(limit=10, image_budget=250, room_image_budget=200)
    history.add("a", msg(1, b"1" * 100))
    history.add("a", msg(2, b"2" * 100))
    assert history.image_bytes == 200
    history.add("a", msg(3, b"3" * 100))  # over the room's budget: m1 loses its data
    assert [m["image"] for m in history.get("a")] == [None, b"2" * 100, b"3" * 100]
    history.add("b", msg(4, b"4" * 100))  # over the global budget: m2, the oldest, goes
    assert history.get("a")[1]["image"] is None
    assert history.image_bytes == 200
    # a message pushed out of the history frees its bytes
    for n in range(10):
        history.add("b", msg(10 + n))
    assert history.get("b")[0]["id"] == "m10"
    assert history.image_bytes == 100


def test_dedup_is_bounded_and_per_user() -> None:
    dedup = Dedup(limit=3)
    dedup.put("ada", "c1", {"id": "1"})
    assert dedup.get("ada", "c1") == {"id": "1"}
    assert dedup.get("bob", "c1") is None
    for n in range(2, 6):
        dedup.put("ada", f"c{n}", {"id": str(n)})
    assert len(dedup) == 3
    assert dedup.get("ada", "c1") is None and dedup.get("ada", "c5") == {"id": "5"}


# -- the namespace, with pyserver's Trio client -------------------------------------------


def chat_server(**options: Any) -> Server:
    sio = Server()
    chat.register(sio, jwt_secret=SECRET, **options)
    return sio


def post_login(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/chat/login", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def user(clients: AsyncExitStack, url: str, name: str) -> ClientSocket:
    """Log in as ``name`` and connect to ``/chat`` with pyserver's Trio client, which
    ``clients`` disconnects."""
    status, body = await in_thread(post_login, url, json.dumps({"name": name}).encode())
    assert status == 200, body
    client = testing.connect(url + "/chat", auth={"token": body["token"]}, transports=["websocket"])
    return await clients.enter_async_context(client)


async def call(client: ClientSocket, event: str, *args: Any) -> Any:
    return await client.emit_with_ack(event, *args)


async def presence(client: ClientSocket, room: str, users: list[str]) -> None:
    """Wait for the presence event that lists ``users`` (earlier ones are skipped)."""
    while True:
        (info,) = await next_event(client, "presence")
        if info == {"room": room, "users": users}:
            return


@pytest.mark.interop
async def test_login_route() -> None:
    with trio.fail_after(10):
        async with serving(chat_server()) as url:
            status, body = await in_thread(post_login, url, b'{"name": "ada"}')
            assert status == 200 and body["name"] == "ada"
            assert verify_token(body["token"], SECRET, now=body["expires"] - 1) == "ada"
            for bad in (b'{"name": "a b"}', b"[]", b"not json", b'{"name": 3}'):
                status, body = await in_thread(post_login, url, bad)
                assert status == 400 and body["error"], bad
            status, body = await in_thread(post_login, url, b"{" + b" " * 2000 + b"}")
            assert status == 413


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (None, "missing"),
        ({"token": "garbage"}, "invalid"),
        ({"token": issue_token("ada", SECRET, now=time.time() - 3600, ttl=60)}, "expired"),
    ],
)
async def test_bad_tokens_refused(auth: dict[str, str] | None, reason: str) -> None:
    with trio.fail_after(10):
        async with serving(chat_server()) as url:
            with pytest.raises(ConnectionRefused) as info:
                async with testing.connect(url + "/chat", auth=auth, transports=["websocket"]):
                    pass
            assert info.value.message == "invalid token"
            assert info.value.data == {"reason": reason}


async def test_presence_messages_dedup_and_history() -> None:
    with trio.fail_after(30):
        async with serving(chat_server()) as url, AsyncExitStack() as clients:
            ada1, ada2, bob = (
                await user(clients, url, "ada"),
                await user(clients, url, "ada"),
                await user(clients, url, "bob"),
            )
            (welcome,) = await next_event(bob, "welcome")
            assert welcome["user"] == "bob" and welcome["rooms"] == ["general", "random"]
            # before joining, messages are refused
            answer = await call(bob, "message", {"room": "lab", "cid": "c0", "text": "hi"})
            assert answer == {"error": "join #lab first"}
            first = await call(ada1, "join", "#Lab")
            assert first["ok"] and first["room"] == "lab" and first["users"] == ["ada"]
            assert first["history"] == []
            assert (await call(ada2, "join", "lab"))["users"] == ["ada"]  # one user, two tabs
            assert (await call(bob, "join", "lab"))["users"] == ["ada", "bob"]
            await presence(ada1, "lab", ["ada", "bob"])

            sent = {"room": "lab", "cid": "c1", "text": "hello <b>bob</b>"}
            ack = await call(ada1, "message", sent)
            assert ack["ok"] and ack["id"] and isinstance(ack["ts"], int)
            (got,) = await next_event(bob, "message")
            assert got["id"] == ack["id"] and got["text"] == "hello <b>bob</b>"
            assert got["user"] == "ada" and got["cid"] == "c1"
            (mine,) = await next_event(ada2, "message")  # the sender's other tab
            assert mine["id"] == ack["id"]
            # a retry (same cid) gets the first ack and is not shown again
            assert await call(ada1, "message", sent) == {**ack, "duplicate": True}
            ack2 = await call(ada1, "message", {**sent, "cid": "c2", "text": "again"})
            (got,) = await next_event(bob, "message")
            assert got["id"] == ack2["id"]
            # bad input answers clearly
            for bad in ({"room": "lab", "cid": "c3"}, {"room": "lab", "text": "x"}, "text"):
                assert "error" in await call(bob, "message", bad)
            assert "error" in await call(bob, "join", "no spaces")
            assert "error" in await call(bob, "join")

            # a late joiner gets the history
            carol = await user(clients, url, "carol")
            late = await call(carol, "join", "lab")
            assert [m["text"] for m in late["history"]] == ["hello <b>bob</b>", "again"]
            assert late["users"] == ["ada", "bob", "carol"]

            # typing goes to the others in the room, not to the sender
            carol.emit("typing", {"room": "lab", "typing": True})
            (typing,) = await next_event(bob, "typing")
            assert typing == {"room": "lab", "user": "carol", "typing": True}

            # ada stays online until her last tab leaves
            ada1.disconnect()
            await presence(bob, "lab", ["ada", "bob", "carol"])
            ada2.disconnect()
            await presence(bob, "lab", ["bob", "carol"])
            # leaving for another room
            await call(carol, "join", "random")
            await presence(bob, "lab", ["bob"])
            bob.disconnect()
            carol.disconnect()


async def test_images() -> None:
    with trio.fail_after(20):
        async with serving(chat_server()) as url, AsyncExitStack() as clients:
            ada, bob = await user(clients, url, "ada"), await user(clients, url, "bob")
            await call(ada, "join", "pics")
            await call(bob, "join", "pics")
            ack = await call(ada, "image", {"room": "pics", "cid": "i1", "data": PNG})
            assert ack["ok"]
            (got,) = await next_event(bob, "message")
            assert got["image"] == PNG and got["mime"] == "image/png" and got["user"] == "ada"
            big = PNG + b"\x00" * chat.IMAGE_LIMIT
            answer = await call(ada, "image", {"room": "pics", "cid": "i2", "data": big})
            assert answer == {"error": "image too large (max 512 KiB)"}
            answer = await call(ada, "image", {"room": "pics", "cid": "i3", "data": b"<svg/>"})
            assert answer == {"error": "not a PNG, JPEG, GIF or WebP image"}
            answer = await call(ada, "image", {"room": "pics", "cid": "i4", "data": "text"})
            assert answer == {"error": "image data must be binary"}
            carol = await user(clients, url, "carol")
            late = await call(carol, "join", "pics")
            assert [m.get("image") for m in late["history"]] == [PNG]


async def test_rate_limited_per_socket() -> None:
    with trio.fail_after(20):
        async with serving(chat_server(rate_limit=(5, 60.0))) as url, AsyncExitStack() as clients:
            ada, ada2 = await user(clients, url, "ada"), await user(clients, url, "ada")
            assert (await call(ada, "join", "lab"))["ok"]
            for n in range(4):
                message = {"room": "lab", "cid": f"c{n}", "text": "hi"}
                assert (await call(ada, "message", message))["ok"]
            message = {"room": "lab", "cid": "c9", "text": "one too many"}
            assert await call(ada, "message", message) == {"error": "rate limited"}
            # the limit is per socket: the same user's other tab still talks
            assert (await call(ada2, "join", "lab"))["ok"]
            assert (await call(ada2, "message", message))["ok"]
            ada.disconnect()
            ada2.disconnect()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A real redis-server of this test's own."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.interop
async def test_presence_and_messages_across_two_nodes(redis: RedisProcess) -> None:
    """Two chat servers sharing a real redis-server: presence is computed with
    ``fetch_sockets`` over both nodes (one user with a tab on each node is listed once),
    and messages and presence updates cross from one node to the other."""
    from pyserver import RedisAdapter

    key = f"chat-{uuid.uuid4().hex[:8]}"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            urls = []
            for _ in range(2):
                sio = Server(adapter=RedisAdapter(redis.url, key=key, heartbeat_interval=0.2))
                chat.register(sio, jwt_secret=SECRET, rate_limit=(1000, 1.0))
                listeners = await nursery.start(sio.serve, "127.0.0.1", 0)
                urls.append(f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}")
            async with AsyncExitStack() as clients:
                ada = await user(clients, urls[0], "ada")
                bob, ada2 = await user(clients, urls[1], "bob"), await user(clients, urls[1], "ada")
                assert (await call(ada, "join", "lab"))["users"] == ["ada"]
                # until the nodes have found each other through redis (another process's
                # state: nothing here to wait on but the answer)
                while (await call(bob, "join", "lab"))["users"] != ["ada", "bob"]:  # noqa: ASYNC110
                    await trio.sleep(0.05)
                assert (await call(ada2, "join", "lab"))["users"] == ["ada", "bob"]
                await presence(ada, "lab", ["ada", "bob"])  # announced from the other node

                ack = await call(ada, "message", {"room": "lab", "cid": "x1", "text": "hi"})
                (got,) = await next_event(bob, "message")  # skips the presence events
                assert got["id"] == ack["id"] and got["user"] == "ada"
                (mine,) = await next_event(ada2, "message")
                assert mine["id"] == ack["id"]

                ada.disconnect()  # her tab on the other node keeps her online
                (info,) = await next_event(bob, "presence")
                assert info == {"room": "lab", "users": ["ada", "bob"]}
                ada2.disconnect()
                (info,) = await next_event(bob, "presence")
                assert info == {"room": "lab", "users": ["bob"]}
                bob.disconnect()
            nursery.cancel_scope.cancel()
