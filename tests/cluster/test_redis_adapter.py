"""The Redis adapter with three real nodes on a real redis-server: broadcasts with every
operator, fetch_sockets and RemoteSocket, sockets_join / sockets_leave / disconnect_sockets,
server-side emits with acks, broadcasts with acks across nodes, and a hung node (heartbeats
stopped, connection still open) that is not waited for.

Clients are nobody's here: the ``websockets`` client speaking Engine.IO packet by packet
(``RawClient``) and python-socketio's client (``PyClient``), one or more per node.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import coredis
import msgpack  # type: ignore[import-untyped]
import pytest
import trio
import trio.lowlevel
from helpers.redis_cluster import cluster, raw_clients, seen, wait_numsub
from helpers.redis_process import RedisProcess
from helpers.sio_client import PyClient, RawClient, eventually

from pyserver import Server
from pyserver.trio.socketio.adapter import RemoteSocket, RequestTimeout
from pyserver.trio.socketio.socket import Socket

EPOCH_DATE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def test_broadcast_from_any_node_reaches_every_node_once(
    redis_server: RedisProcess,
) -> None:
    with trio.fail_after(30):
        async with cluster(redis_server) as nodes:
            in_room, in_sids = await raw_clients(nodes)
            outside, _ = await raw_clients(nodes)
            for node, sid in zip(nodes, in_sids, strict=True):
                node.socket(sid).join("r")
            everyone = in_room + outside
            for i, node in enumerate(nodes):
                node.sio.to("r").emit("hello", i, {"from": i})
                got = await seen(node, everyone)
                expected = f'42["hello",{i},{{"from":{i}}}]'
                assert got == [[expected]] * 3 + [[]] * 3, (i, got)
            # every socket of the namespace, binary attachments included
            nodes[1].sio.emit("bin", b"\x01\x02")
            got = await seen(nodes[1], everyone)
            placeholder = '451-["bin",{"_placeholder":true,"num":0}]'
            assert got == [[placeholder, b"\x01\x02"]] * 6
            # a burst (published in pipelines): every message once, in order
            for i in range(100):
                nodes[2].sio.to("r").emit("burst", i)
            got = await seen(nodes[2], in_room)
            assert got == [[f'42["burst",{i}]' for i in range(100)]] * 3
            for raw in everyone:
                await raw.close()


async def test_except_volatile_local_and_namespaces(redis_server: RedisProcess) -> None:
    with trio.fail_after(30):
        async with cluster(redis_server) as nodes:
            clients, sids = await raw_clients(nodes)
            nodes[0].socket(sids[0]).join("a")
            nodes[2].socket(sids[2]).join("a")
            nodes[1].socket(sids[1]).join("b")
            # except_ a room (members on two nodes), from the third
            nodes[1].sio.except_("a").emit("not-a", 1)
            assert await seen(nodes[1], clients) == [[], ['42["not-a",1]'], []]
            # except_ a socket id of another node, two rooms (namespace channel)
            nodes[0].sio.to(["a", "b"]).except_(sids[2]).emit("ab", 2)
            assert await seen(nodes[0], clients) == [['42["ab",2]'], ['42["ab",2]'], []]
            # a socket's own room, on another node
            nodes[0].sio.to(sids[1]).emit("direct", 3)
            assert await seen(nodes[0], clients) == [[], ['42["direct",3]'], []]
            # local: this node only
            nodes[2].sio.local.emit("mine", 4)
            nodes[2].sio.local.to("a").emit("mine-a", 5)
            assert await seen(nodes[2], clients) == [
                [],
                [],
                ['42["mine",4]', '42["mine-a",5]'],
            ]
            # volatile: idle clients get it on every node
            nodes[1].sio.volatile.emit("v", 6)
            assert await seen(nodes[1], clients) == [['42["v",6]']] * 3
            # socket.broadcast from a node leaves its sender out, everywhere
            nodes[0].socket(sids[0]).broadcast.emit("others", 7)
            assert await seen(nodes[0], clients) == [[], ['42["others",7]'], ['42["others",7]']]
            # another namespace: its own channels, made after the start
            for node in nodes:
                node.sio.of("/chat")
            for node in nodes:
                await node.adapter.wait_subscribed()
            await wait_numsub(nodes[0].adapter.client, f"{nodes[0].adapter.key}-request#/chat#", 3)
            for raw in clients:
                await raw.join("/chat")
            nodes[2].sio.of("/chat").emit("chat", 8)
            got = await seen(nodes[2], clients)
            assert got == [['42/chat,["chat",8]']] * 3
            for raw in clients:
                await raw.close()


def rooms_server(sio: Server) -> None:
    @sio.on("connection")
    async def connection(socket: Socket) -> None:
        socket.data["port"] = socket.handshake.url

    @sio.on("disconnect")
    async def gone(socket: Socket, reason: str) -> None:
        sio.local.emit("gone", socket.id, reason)


async def test_fetch_sockets_and_remote_operations(redis_server: RedisProcess) -> None:
    with trio.fail_after(30):
        async with cluster(redis_server, setup=rooms_server) as nodes:
            clients, sids = await raw_clients(nodes)
            nodes[1].socket(sids[1]).join("red")
            nodes[2].socket(sids[2]).join("red")
            found = await nodes[0].sio.fetch_sockets()
            assert sorted(s.id for s in found) == sorted(sids)
            local = [s for s in found if isinstance(s, Socket)]
            assert [s.id for s in local] == [sids[0]]
            remote = {s.id: s for s in found if isinstance(s, RemoteSocket)}
            assert remote[sids[1]].rooms == {sids[1], "red"}
            handshake = remote[sids[1]].handshake
            assert handshake["address"] == "127.0.0.1"
            assert handshake["url"].startswith("/socket.io/?EIO=4")
            assert isinstance(handshake["issued"], int) and handshake["query"]["EIO"] == "4"
            assert remote[sids[1]].data == {"port": handshake["url"]}
            red = await nodes[0].sio.in_("red").fetch_sockets()
            assert sorted(s.id for s in red) == sorted(sids[1:])
            assert [s.id for s in await nodes[0].sio.local.fetch_sockets()] == [sids[0]]
            # a RemoteSocket's emit reaches its client on the other node
            remote[sids[2]].emit("to-you", "x")
            assert await seen(nodes[0], clients) == [[], [], ['42["to-you","x"]']]
            # sockets_join / sockets_leave on every node
            nodes[0].sio.in_("red").sockets_join("blue")
            await eventually(lambda: "blue" in nodes[2].socket(sids[2]).rooms)
            await eventually(lambda: "blue" in nodes[1].socket(sids[1]).rooms)
            nodes[0].sio.except_(sids[1]).sockets_leave("blue")
            await eventually(lambda: "blue" not in nodes[2].socket(sids[2]).rooms)
            blue = await nodes[0].sio.in_("blue").fetch_sockets()
            assert [s.id for s in blue] == [sids[1]]
            remote[sids[2]].join("green")
            await eventually(lambda: "green" in nodes[2].socket(sids[2]).rooms)
            # disconnect_sockets on every node ("1": namespace disconnect)
            nodes[0].sio.in_("red").disconnect_sockets()
            assert await clients[1].recv() == "41"
            assert await clients[2].recv() == "41"
            assert [s.id for s in await nodes[2].sio.fetch_sockets()] == [sids[0]]
            for raw in clients:
                await raw.close()


def server_events(sio: Server) -> None:
    got: list[Any] = []
    sio.got = got  # type: ignore[attr-defined]

    @sio.on_server_event("tell")
    def tell(*args: Any) -> None:
        got.append(args)

    @sio.on_server_event("ask")
    async def ask(x: int) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"port": sio.got_port, "x": x * 2}  # type: ignore[attr-defined]

    @sio.on_server_event("fail")
    def fail() -> None:
        raise RuntimeError("boom")


async def test_server_side_emit_with_and_without_acks(redis_server: RedisProcess) -> None:
    with trio.fail_after(30):
        async with cluster(redis_server, setup=server_events) as nodes:
            for i, node in enumerate(nodes):
                node.sio.got_port = i  # type: ignore[attr-defined]
            nodes[0].sio.server_side_emit("tell", 1, "two", b"\x03")
            await eventually(lambda: all(n.sio.got for n in nodes[1:]))  # type: ignore[attr-defined]
            assert [n.sio.got for n in nodes] == [  # type: ignore[attr-defined]
                [],
                [(1, "two", b"\x03")],
                [(1, "two", b"\x03")],
            ]
            replies = await nodes[1].sio.server_side_emit_with_ack("ask", 21)
            assert sorted(replies, key=lambda r: r["port"]) == [
                {"port": 0, "x": 42},
                {"port": 2, "x": 42},
            ]
            errors = await nodes[2].sio.server_side_emit_with_ack("fail", timeout=5)
            assert errors == [{"error": "internal server error"}] * 2
            # nobody handles it: a timeout with what came (nothing), never a hang
            with pytest.raises(RequestTimeout) as info:
                await nodes[0].sio.server_side_emit_with_ack("nobody", timeout=0.5)
            assert info.value.responses == []
            assert "0 responses received out of 2" in str(info.value)


async def test_broadcast_with_acks_across_nodes(redis_server: RedisProcess) -> None:
    with trio.fail_after(40):
        async with cluster(redis_server) as nodes:
            clients = [PyClient() for _ in nodes]
            for client, node in zip(clients, nodes, strict=True):
                await client.connect(node.url)
                node.socket(client.sid).join("game")
            replies = await nodes[0].sio.to("game").timeout(5).emit_with_ack("ask", "v")
            assert replies == ["v", "v", "v"]
            # without timeout(): bounded by requests_timeout; a client on node 2 only
            replies = await nodes[1].sio.to(clients[2].sid).emit_with_ack("ask", [1, 2])
            assert replies == [[1, 2]]
            # nobody in the room: every node reports 0 and it ends at once
            assert await nodes[2].sio.to("nobody").timeout(5).emit_with_ack("ask", 1) == []
            # local only
            assert await nodes[2].sio.local.timeout(5).emit_with_ack("ask", "l") == ["l"]
            # a client that never answers, on another node: a timeout with the replies
            raw = await RawClient.open(nodes[2].url)
            sid = await raw.join()
            nodes[2].socket(sid).join("game")
            with pytest.raises(RequestTimeout) as info:
                await nodes[0].sio.to("game").timeout(0.5).emit_with_ack("ask", "w")
            assert info.value.responses == ["w", "w", "w"]
            for client in clients:
                await client.disconnect()
            await raw.close()


async def test_a_hung_node_is_not_waited_for(redis_server: RedisProcess) -> None:
    """A fake Python node subscribes like one, sends heartbeats, then stops (its connection
    stays open, as a hung process's would): after two intervals it is not waited for. A
    silent subscriber that never sent heartbeats (a Node server, for all we know) is."""
    with trio.fail_after(30):
        async with cluster(redis_server, setup=server_events, requests_timeout=20) as nodes:
            for i, node in enumerate(nodes):
                node.sio.got_port = i  # type: ignore[attr-defined]
            key = nodes[0].adapter.key
            hung_uid = "hung01"
            client = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with (
                client,
                client.pubsub(channels=[f"{key}-request#/#", f"{key}-response#/#{hung_uid}#"]),
            ):
                await wait_numsub(client, f"{key}-request#/#", 4)
                beat = json.dumps({"uid": hung_uid, "type": "heartbeat", "interval": 0.1})
                await client.publish(f"{key}-heartbeat#", beat.encode())
                await eventually(lambda: hung_uid in nodes[0].adapter.nodes)
                # it stopped: stale after 2 x 0.1 s, and still subscribed
                await eventually(lambda: hung_uid in nodes[0].adapter.stale_nodes())
                replies = await nodes[0].sio.server_side_emit_with_ack("ask", 1)
                assert sorted(r["port"] for r in replies) == [1, 2]
                found = await nodes[0].sio.fetch_sockets()
                assert found == []
                # a silent subscriber without heartbeats is waited for (and times out)
            async with client, client.pubsub(channels=[f"{key}-request#/#"]):
                await wait_numsub(client, f"{key}-request#/#", 4)
                with pytest.raises(RequestTimeout) as info:
                    await nodes[0].sio.server_side_emit_with_ack("ask", 1, timeout=0.5)
                assert sorted(r["port"] for r in info.value.responses) == [1, 2]


async def test_node_format_messages_and_requests(redis_server: RedisProcess) -> None:
    """What a Node server or @socket.io/redis-emitter publishes, written here by hand in
    the formats of the notes (§1.3, §1.4), and the answers read back raw from Redis."""
    with trio.fail_after(30):
        async with cluster(redis_server, setup=server_events) as nodes:
            for i, node in enumerate(nodes):
                node.sio.got_port = i  # type: ignore[attr-defined]
            key = nodes[0].adapter.key
            clients, sids = await raw_clients(nodes)
            nodes[1].socket(sids[1]).join("123")
            asker = PyClient()
            await asker.connect(nodes[2].url)
            redis = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with redis, redis.pubsub(channels=[f"{key}-response#/#"]) as responses:
                # the emitter: a numeric room, a Date, undefined, on the room's channel
                emitted = msgpack.packb(
                    [
                        "emitter",
                        {"type": 2, "data": ["from-emitter", 1, EPOCH_DATE, None], "nsp": "/"},
                        {"rooms": [123], "except": [], "flags": {}},
                    ],
                    use_bin_type=True,
                    datetime=True,
                )
                await redis.publish(f"{key}#/#123#", emitted)
                got = await seen(nodes[0], clients)
                expected = '42["from-emitter",1,"1970-01-01T00:00:00.000Z",null]'
                assert got == [[], [expected], []]

                async def answers(rid: str, count: int) -> list[Any]:
                    found: list[Any] = []
                    while len(found) < count:
                        message = await responses.get_message(timeout=5)
                        assert message is not None
                        if message["type"] != "message":
                            continue
                        data = message["data"]
                        if data[:1] == b"{":
                            decoded = json.loads(data)
                        else:
                            decoded = msgpack.unpackb(data, raw=False)
                        if decoded.get("requestId") == rid:
                            found.append(decoded)
                    return found

                request = f"{key}-request#/#"
                # fetchSockets: every node answers, JSON
                fetch = {"uid": "nodejs", "requestId": "f1", "type": 5,
                         "opts": {"rooms": [], "except": []}}  # fmt: skip
                await redis.publish(request, json.dumps(fetch).encode())
                got_sockets = await answers("f1", 3)
                ids = sorted(s["id"] for a in got_sockets for s in a["sockets"])
                assert ids == sorted([*sids, asker.sid])
                # allRooms, with empty lists answered too
                await redis.publish(request, b'{"uid":"nodejs","requestId":"a1","type":1}')
                rooms = await answers("a1", 3)
                assert {r for a in rooms for r in a["rooms"]} >= {"123", *sids}
                # serverSideEmitWithAck: type 6 with the handler's reply
                await redis.publish(
                    request, b'{"uid":"nodejs","requestId":"s1","type":6,"data":["ask",5]}'
                )
                replies = await answers("s1", 3)
                assert sorted(r["data"]["port"] for r in replies) == [0, 1, 2]
                assert {r["type"] for r in replies} == {6}
                # a broadcast with acks (msgpack map): a count from every node (0 too), JSON,
                # then one msgpack BROADCAST_ACK per client with the first argument
                broadcast = {
                    "uid": "nodejs",
                    "requestId": "b1",
                    "type": 7,
                    "packet": {"type": 2, "data": ["ask", "v"], "nsp": "/"},
                    "opts": {"rooms": [], "except": sids, "flags": {"timeout": 3000}},
                }
                await redis.publish(request, msgpack.packb(broadcast, use_bin_type=True))
                got = await answers("b1", 4)
                counts = sorted(a["clientCount"] for a in got if a["type"] == 8)
                assert counts == [0, 0, 1]
                assert [a["packet"] for a in got if a["type"] == 9] == ["v"]
            await asker.disconnect()
            for raw in clients:
                await raw.close()


async def test_dynamic_namespace_children_join_the_cluster(redis_server: RedisProcess) -> None:
    def dynamic(sio: Server) -> None:
        sio.of(re.compile(r"/dyn-\w+"))

    with trio.fail_after(30):
        async with cluster(redis_server, count=2, setup=dynamic) as nodes:
            clients = [await RawClient.open(node.url) for node in nodes]
            for raw in clients:
                await raw.join("/dyn-a")  # the child is made by this connection
            key = nodes[0].adapter.key
            await wait_numsub(nodes[0].adapter.client, f"{key}-request#/dyn-a#", 2)
            for node in nodes:
                await node.adapter.wait_subscribed()
            nodes[0].sio.namespaces["/dyn-a"].emit("dyn", 1)
            assert await clients[1].recv() == '42/dyn-a,["dyn",1]'
            assert await clients[0].recv() == '42/dyn-a,["dyn",1]'
            found = await nodes[1].sio.namespaces["/dyn-a"].fetch_sockets()
            assert len(found) == 2
            for raw in clients:
                await raw.close()


async def test_what_is_published(redis_server: RedisProcess) -> None:
    """Read from Redis: emits to one local socket stay on the node, ``local`` is never
    published, a single room goes to the room's channel, and our msgpack is Node's."""
    with trio.fail_after(30):
        async with cluster(redis_server, count=1) as nodes:
            node = nodes[0]
            key = node.adapter.key
            clients, sids = await raw_clients(nodes)
            socket = node.socket(sids[0])
            redis = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with redis, redis.pubsub(patterns=[f"{key}#/#*"]) as ps:
                socket.volatile.emit("own", 1)
                node.sio.to(sids[0]).emit("own", 2)
                node.sio.local.emit("local", 3)
                node.sio.to("r1").except_("x").volatile.compress(False).emit("room-ev", 1.5)
                node.sio.emit("last", 4)
                published: list[tuple[bytes, Any]] = []
                while len(published) < 2:
                    message = await ps.get_message(timeout=5)
                    assert message is not None
                    if message["type"] == "pmessage":
                        data = msgpack.unpackb(message["data"], raw=False)
                        published.append((message["channel"], data))
            uid = node.adapter.uid
            assert published == [
                (
                    f"{key}#/#r1#".encode(),
                    [
                        uid,
                        {"type": 2, "data": ["room-ev", 1.5], "nsp": "/"},
                        {
                            "rooms": ["r1"],
                            "except": ["x"],
                            "flags": {"volatile": True, "compress": False},
                        },
                    ],
                ),
                (
                    f"{key}#/#".encode(),
                    [
                        uid,
                        {"type": 2, "data": ["last", 4], "nsp": "/"},
                        {"rooms": [], "except": [], "flags": {}},
                    ],
                ),
            ]
            for raw in clients:
                await raw.close()
