"""``sio.instrument()``: the Admin UI's event contract, spoken with a real client on /admin
(pyserver's Trio client, a second one as the app's user): the login and its refusal, the
``config``, ``all_sockets`` and ``server_stats`` shapes, the events of development mode (none in
production), the commands and their refusal when read-only, and the UI's page served."""

from __future__ import annotations

from typing import Any

import bcrypt
import pytest
import trio

from pyserver import ConnectionRefused, Server, SocketDisconnected, testing

CREDENTIALS = {"username": "admin", "password": "s3cret"}


def build(**options: Any) -> Server:
    sio = Server()

    @sio.on("hello")
    async def hello(socket: Any, name: str) -> str:
        socket.emit("greeting", f"hi {name}")
        return "ok"

    @sio.on("connection")
    async def joined(socket: Any) -> None:
        socket.join("lobby")

    @sio.on("nick")
    async def nick(socket: Any, name: str) -> None:
        socket.data["nick"] = name

    sio.instrument(**{"auth": CREDENTIALS, "server_stats_interval": 0.2, **options})
    return sio


async def next_event(socket: Any, event: str, where: Any = None) -> list[Any]:
    """The next ``event`` whose arguments satisfy ``where`` (others are skipped)."""
    while True:
        args = await testing.wait_for_event(socket, event)
        if where is None or where(args):
            return args


@pytest.mark.parametrize(
    "auth",
    [
        CREDENTIALS,
        [{"username": "other", "password": "x"}, CREDENTIALS],
        {
            "type": "basic",
            "username": "admin",
            "password": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode(),
        },
        lambda given: given.get("password") == "s3cret",
    ],
    ids=["dict", "list", "bcrypt", "callable"],
)
async def test_login_and_invalid_credentials(auth: Any) -> None:
    with trio.fail_after(20):
        async with testing.serve(build(auth=auth)) as url:
            with pytest.raises(ConnectionRefused) as refused:
                async with testing.connect(
                    url + "/admin", auth={"username": "admin", "password": "nope"}
                ):
                    pass
            assert refused.value.message == "invalid credentials"
            async with testing.connect(url + "/admin", auth=CREDENTIALS) as admin:
                [session] = await testing.wait_for_event(admin, "session")
                assert isinstance(session, str) and len(session) == 16
            # the session id logs in again without the password
            async with testing.connect(url + "/admin", auth={"sessionId": session}) as admin:
                await testing.wait_for_event(admin, "config")
            with pytest.raises(ConnectionRefused, match="invalid credentials"):
                async with testing.connect(url + "/admin", auth={"sessionId": "0" * 16}):
                    pass


async def test_config_all_sockets_and_server_stats_shapes() -> None:
    with trio.fail_after(20):
        async with (
            testing.serve(build()) as url,
            testing.connect(url, transports=["websocket"]) as user,
        ):
            async with testing.connect(url + "/admin", auth=CREDENTIALS) as admin:
                [config] = await testing.wait_for_event(admin, "config")
                assert config == {
                    "supportedFeatures": [
                        "EMIT",
                        "JOIN",
                        "LEAVE",
                        "DISCONNECT",
                        "MJOIN",
                        "MLEAVE",
                        "MDISCONNECT",
                        "AGGREGATED_EVENTS",
                        "ALL_EVENTS",
                    ]
                }
                [sockets] = await testing.wait_for_event(admin, "all_sockets")
                mine = [s for s in sockets if s["id"] == user.id]
                assert len(mine) == 1, sockets
                serialized = mine[0]
                assert serialized["nsp"] == "/"
                assert serialized["transport"] == "websocket"
                assert len(serialized["clientId"]) == 12
                assert sorted(serialized["rooms"]) == sorted([user.id, "lobby"])
                assert serialized["data"] == {}  # without _admin
                assert set(serialized["handshake"]) == {
                    "address",
                    "headers",
                    "query",
                    "issued",
                    "secure",
                    "time",
                    "url",
                    "xdomain",
                }
                assert serialized["handshake"]["address"] == "127.0.0.1"
                assert any(s["nsp"] == "/admin" for s in sockets)  # the admin socket too
                user.emit("hello", "bob")
                await testing.wait_for_event(user, "greeting")
                [stats] = await next_event(
                    admin, "server_stats", lambda a: a[0]["aggregatedEvents"]
                )
                assert set(stats) == {
                    "serverId",
                    "hostname",
                    "pid",
                    "uptime",
                    "clientsCount",
                    "pollingClientsCount",
                    "aggregatedEvents",
                    "namespaces",
                }
                assert stats["clientsCount"] == 2
                assert {"name": "/", "socketsCount": 1} in stats["namespaces"]
                kinds = {e["type"] for e in stats["aggregatedEvents"]}
                assert {"packetsIn", "packetsOut", "bytesIn", "bytesOut"} <= kinds
                for entry in stats["aggregatedEvents"]:
                    assert entry["timestamp"] % 1000 == 0 and entry["count"] > 0


async def test_development_mode_events() -> None:
    with trio.fail_after(20):
        async with (
            testing.serve(build()) as url,
            testing.connect(url + "/admin", auth=CREDENTIALS) as admin,
        ):
            await testing.wait_for_event(admin, "all_sockets")
            async with testing.connect(url, transports=["websocket"]) as user:
                [serialized, date] = await next_event(
                    admin, "socket_connected", lambda a: a[0]["nsp"] == "/"
                )
                assert serialized["id"] == user.id and date.endswith("Z")
                assert await next_event(admin, "room_joined", lambda a: a[1] == "lobby") == [
                    "/",
                    "lobby",
                    user.id,
                    AnyDate(),
                ]
                assert await user.emit_with_ack("hello", "ann") == "ok"
                received = await testing.wait_for_event(admin, "event_received")
                assert received[:3] == ["/", user.id, ["hello", "ann"]]
                sent = await next_event(admin, "event_sent", lambda a: a[2][0] == "greeting")
                assert sent[:3] == ["/", user.id, ["greeting", "hi ann"]]
                gone = user.id
            left = await next_event(admin, "socket_disconnected", lambda a: a[1] == gone)
            assert left[:3] == ["/", gone, "client namespace disconnect"]
            assert (await next_event(admin, "room_left", lambda a: a[2] == gone))[1] == "lobby"


async def test_event_listeners_only_while_an_admin_is_connected() -> None:
    """With the in-memory adapter, a socket has the admin's event listeners only while an
    admin socket is connected: one that joined before the admin is reported too, and none
    is called per event or per broadcast delivery once the last admin left."""
    sio = build()
    nsp = sio.of("/")
    with trio.fail_after(20):
        async with (
            testing.serve(sio) as url,
            testing.connect(url, transports=["websocket"]) as user,
        ):
            [socket] = nsp.sockets.values()
            assert socket.listeners_any() == [] and nsp.adapter.outgoing_watchers == 0
            async with testing.connect(url + "/admin", auth=CREDENTIALS) as admin:
                await testing.wait_for_event(admin, "all_sockets")
                assert len(socket.listeners_any()) == 1
                assert nsp.adapter.outgoing_watchers == 1
                assert await user.emit_with_ack("hello", "bob") == "ok"
                received = await testing.wait_for_event(admin, "event_received")
                assert received[:3] == ["/", user.id, ["hello", "bob"]]
            while sio.of("/admin").sockets:  # noqa: ASYNC110 (the server's side of the leave)
                await trio.sleep(0.01)
            assert socket.listeners_any() == [] and socket.listeners_any_outgoing() == []
            assert nsp.adapter.outgoing_watchers == 0


class AnyDate:
    """Equal to any date string (for list comparisons)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith("Z") and "T" in other


async def test_socket_updated_on_upgrade() -> None:
    with trio.fail_after(20):
        async with (
            testing.serve(build()) as url,
            testing.connect(url + "/admin", auth=CREDENTIALS, transports=["websocket"]) as admin,
        ):
            await testing.wait_for_event(admin, "all_sockets")
            async with testing.connect(url) as user:  # polling, then the upgrade
                update = await next_event(
                    admin, "socket_updated", lambda a: a[0].get("id") == user.id
                )
                assert update == [{"id": user.id, "nsp": "/", "transport": "websocket"}]


async def test_socket_updated_when_data_changes() -> None:
    with trio.fail_after(20):
        async with (
            testing.serve(build()) as url,
            testing.connect(url + "/admin", auth=CREDENTIALS, transports=["websocket"]) as admin,
            testing.connect(url, transports=["websocket"]) as user,
        ):
            await testing.wait_for_event(admin, "all_sockets")
            user.emit("nick", "ann")
            update = await next_event(admin, "socket_updated", lambda a: a[0].get("id") == user.id)
            assert update == [{"id": user.id, "nsp": "/", "data": {"nick": "ann"}}]


async def test_production_mode_sends_stats_and_no_events() -> None:
    with trio.fail_after(20):
        async with (
            testing.serve(build(mode="production")) as url,
            testing.connect(url + "/admin", auth=CREDENTIALS) as admin,
        ):
            [config] = await testing.wait_for_event(admin, "config")
            assert "ALL_EVENTS" not in config["supportedFeatures"]
            seen: list[str] = []
            for name in DEVELOPMENT_EVENTS:
                admin.on(name, lambda *args, name=name: seen.append(name))
            async with testing.connect(url) as user:
                assert await user.emit_with_ack("hello", "x") == "ok"
            await next_event(admin, "server_stats", lambda a: a[0]["aggregatedEvents"])
            await next_event(admin, "server_stats")
            assert seen == []


DEVELOPMENT_EVENTS = (
    "all_sockets",
    "socket_connected",
    "socket_updated",
    "socket_disconnected",
    "room_joined",
    "room_left",
    "event_received",
    "event_sent",
)


async def test_commands_have_effect() -> None:
    with trio.fail_after(20):
        async with (
            testing.serve(build()) as url,
            testing.connect(url + "/admin", auth=CREDENTIALS) as admin,
            testing.connect(url) as user,
        ):
            await testing.wait_for_event(admin, "all_sockets")
            admin.emit("emit", "/", user.id, "notice", {"n": 1})
            assert await testing.wait_for_event(user, "notice") == [{"n": 1}]
            admin.emit("join", "/", "vip", user.id)
            assert await next_event(admin, "room_joined", lambda a: a[1] == "vip")
            admin.emit("leave", "/", "vip", user.id)
            assert await next_event(admin, "room_left", lambda a: a[1] == "vip")
            admin.emit("emit", "/", None, "everyone", 2)  # no filter: the namespace
            assert await testing.wait_for_event(user, "everyone") == [2]
            admin.emit("_disconnect", "/", False, user.id)
            with pytest.raises(SocketDisconnected, match="io server disconnect"):
                await testing.wait_for_event(user, "never sent")


async def test_read_only_refuses_commands() -> None:
    sio = build(read_only=True)
    with trio.fail_after(20):
        async with (
            testing.serve(sio) as url,
            testing.connect(url + "/admin", auth=CREDENTIALS) as admin,
            testing.connect(url) as user,
        ):
            [config] = await testing.wait_for_event(admin, "config")
            assert config["supportedFeatures"] == ["AGGREGATED_EVENTS", "ALL_EVENTS"]
            admin.emit("join", "/", "vip", user.id)
            admin.emit("_disconnect", "/", True, user.id)
            admin.emit("emit", "/", user.id, "notice", 1)
            # a round trip on the same connection: the commands were read before it
            assert await user.emit_with_ack("hello", "z") == "ok"
            await next_event(admin, "event_received", lambda a: a[2][0] == "hello")
            assert user.connected
            assert sio.main.sockets[user.id].rooms == {user.id, "lobby"}


async def test_no_admin_namespace_without_instrument() -> None:
    sio = Server()
    with trio.fail_after(10):
        async with testing.serve(sio) as url:
            with pytest.raises(ConnectionRefused, match="Invalid namespace"):
                async with testing.connect(url + "/admin", auth=CREDENTIALS):
                    pass


def test_auth_is_required_and_checked() -> None:
    with pytest.raises(ValueError, match="auth"):
        Server().instrument()
    with pytest.raises(ValueError, match="bcrypt hash"):
        Server().instrument(auth={"type": "basic", "username": "a", "password": "plain"})
    with pytest.raises(ValueError, match="mode"):
        Server().instrument(auth=False, mode="debug")  # type: ignore[arg-type]
