"""Connection state recovery: the sans-IO store (plain functions), then the server with a raw
Engine.IO client for the exact packets. (socket.io-client's own recovery against ours is in
tests/interop/test_socketio_node_client.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from helpers.sio_client import RawClient, eventually, serving

from pyserver import ConnectionRefused, Server, StateRecovery
from pyserver.socketio.packets import Sid, encode_event
from pyserver.socketio.recovery import RecoveryStore

CONFIG = StateRecovery(max_disconnection_duration=10.0, max_packets=100, max_sessions=100)
A = Sid("sid-a")
EVERYONE: frozenset[str] = frozenset()


def store(config: StateRecovery = CONFIG) -> RecoveryStore:
    return RecoveryStore(config, "p")


def send(
    s: RecoveryStore,
    event: str,
    *args: Any,
    rooms: frozenset[str] = EVERYONE,
    except_rooms: frozenset[str] = EVERYONE,
    now: float = 0.0,
    size: int | None = None,
) -> str:
    """Keep one packet the way the shell does (stamp, encode, keep); its offset. ``size``
    pads the text part to that many characters (for the byte bound)."""
    sent = s.stamp(args)
    parts = encode_event("/", event, sent)
    if size is not None:
        assert isinstance(parts[0], str) and len(parts[0]) <= size
        parts[0] = parts[0].ljust(size)
    s.keep(parts, rooms, except_rooms, now)
    offset: str = sent[-1]
    return offset


def args_of(parts: list[str | bytes]) -> list[Any]:
    """``[event, *args, offset]`` of a kept packet, from its text part."""
    text = parts[0]
    assert isinstance(text, str)
    decoded: list[Any] = json.loads(text[text.index("[") :])
    return decoded


# -- the store ------------------------------------------------------------------------------


def test_offsets_are_strings_added_at_the_end_and_unique() -> None:
    s = store()
    assert s.stamp((1, "x")) == [1, "x", "p0"]
    assert s.stamp(()) == ["p0"]  # nothing kept before keep()
    offsets = [send(s, "e", i) for i in range(20)]
    assert len(set(offsets)) == 20 and all(type(o) is str for o in offsets)
    assert s.packets_kept == 20


def test_restore_gives_what_the_rooms_of_the_session_missed_in_order() -> None:
    s = store()
    seen = send(s, "e", "seen")
    send(s, "e", "all")
    send(s, "e", "room", rooms=frozenset({"r1"}))
    send(s, "e", "other room", rooms=frozenset({"r2"}))
    send(s, "e", "mine", rooms=frozenset({A}))
    send(s, "e", "not me", rooms=frozenset({"r1"}), except_rooms=frozenset({A}))
    send(s, "e", "not r1", except_rooms=frozenset({"r1"}))
    send(s, "e", "bin", b"\x01", rooms=frozenset({"r1", "r9"}))
    s.persist(A, "pid-a", frozenset({A, "r1"}), {"k": 1}, now=1.0)
    restored = s.restore("pid-a", seen, now=2.0)
    assert restored is not None
    assert (restored.sid, restored.pid, restored.rooms, restored.data) == (
        A,
        "pid-a",
        frozenset({A, "r1"}),
        {"k": 1},
    )
    assert [args_of(m)[:-1] for m in restored.missed] == [
        ["e", "all"],
        ["e", "room"],
        ["e", "mine"],
        ["e", "bin", {"_placeholder": True, "num": 0}],
    ]
    assert restored.missed[-1][1:] == [b"\x01"]  # the attachment, as it was sent
    assert all(type(args_of(m)[-1]) is str for m in restored.missed)


def test_a_session_is_given_out_once_and_can_be_put_back() -> None:
    s = store()
    offset = send(s, "e", 1)
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    restored = s.restore("pid-a", offset, now=1.0)
    assert restored is not None and restored.missed == []
    assert s.restore("pid-a", offset, now=1.0) is None  # no second socket with that id
    s.put_back(restored)
    again = s.restore("pid-a", offset, now=2.0)
    assert again is not None and again.sid == A


@pytest.mark.parametrize(
    "offset",
    ["", "p", "q0", "pz", "p-1", "p 1", "P0", "p" + "f" * 40, "p5"],  # p5: not given yet
)
def test_offsets_that_are_not_ours_are_refused(offset: str) -> None:
    s = store()
    send(s, "e", 1)
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    assert s.restore("pid-a", offset, now=1.0) is None


def test_unknown_and_expired_sessions() -> None:
    s = store()
    offset = send(s, "e", 1)
    assert s.restore("nobody", offset, now=0.0) is None
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    assert s.restore("pid-a", offset, now=10.5) is None
    assert s.sessions_kept == 0


def test_packets_expire_and_a_client_whose_offset_went_is_not_recovered() -> None:
    s = store()
    oldest = send(s, "e", "oldest", now=0.0)
    old = send(s, "e", "old", now=1.0)
    send(s, "e", "newer", now=5.0)
    send(s, "e", "now", now=12.0)  # "oldest" and "old" expire (sent more than 10 s before)
    assert s.packets_kept == 2
    s.persist(A, "pid-a", frozenset({A}), {}, now=6.0)
    assert s.restore("pid-a", oldest, now=12.0) is None  # it missed "old", which is gone
    s.persist(A, "pid-a", frozenset({A}), {}, now=6.0)
    restored = s.restore("pid-a", old, now=12.0)  # what came after "old" is all kept
    assert restored is not None and [args_of(m)[1] for m in restored.missed] == ["newer", "now"]


def test_nothing_missed_is_recovered_even_when_every_packet_expired() -> None:
    s = store()
    last = send(s, "e", "last", now=0.0)
    s.persist(A, "pid-a", frozenset({A}), {}, now=5.0)
    restored = s.restore("pid-a", last, now=12.0)  # "last" itself expired at 10 s
    assert restored is not None and restored.missed == []


def test_bounded_packets_and_sessions() -> None:
    s = store(StateRecovery(max_packets=3, max_sessions=2))
    first = send(s, "e", 0)
    for i in range(1, 10):
        send(s, "e", i)
    assert s.packets_kept == 3
    for n in range(5):
        s.persist(Sid(f"s{n}"), f"pid{n}", frozenset(), {}, now=float(n))
    assert s.sessions_kept == 2
    assert s.restore("pid0", first, now=5.0) is None  # the oldest sessions went first
    s.persist(Sid("s9"), "pid9", frozenset(), {}, now=5.0)
    assert s.restore("pid9", first, now=5.0) is None  # its packets after "first" are gone


def test_bounded_bytes_and_a_packet_larger_than_the_budget() -> None:
    s = store(StateRecovery(max_packet_bytes=100))
    first = send(s, "e", 0, size=40)
    second = send(s, "e", 1, size=40)
    send(s, "e", 2, size=40)  # 120 > 100: the first goes
    send(s, "e", 3, size=40)  # and the second
    assert (s.packets_kept, s.bytes_kept) == (2, 80)
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    assert s.restore("pid-a", first, now=0.0) is None  # it missed the second, gone
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    restored = s.restore("pid-a", second, now=0.0)
    assert restored is not None and [args_of(m)[1] for m in restored.missed] == [2, 3]
    # too large to keep: not kept, and nothing before it either (nobody can recover past it)
    huge = send(s, "e", "huge", size=101)
    assert (s.packets_kept, s.bytes_kept) == (0, 0)
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    assert s.restore("pid-a", second, now=0.0) is None
    s.persist(A, "pid-a", frozenset({A}), {}, now=0.0)
    restored = s.restore("pid-a", huge, now=0.0)  # it got the huge one: nothing missed
    assert restored is not None and restored.missed == []
    # expiry gives the bytes back
    send(s, "e", 3, size=50, now=1.0)
    send(s, "e", 4, size=20, now=200.0)  # 120 s (the default duration) later
    assert (s.packets_kept, s.bytes_kept) == (1, 20)


def test_the_store_is_sans_io() -> None:
    import subprocess
    import sys

    import pyserver.socketio.recovery as module

    code = (
        "import sys, pyserver.socketio.recovery\n"
        "assert 'trio' not in sys.modules and 'asyncio' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    source = open(module.__file__ or "").read()
    for banned in ("trio", "socket", "time", "asyncio", "random", "secrets"):
        assert f"import {banned}" not in source, banned


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        StateRecovery(max_disconnection_duration=0)
    with pytest.raises(ValueError):
        StateRecovery(max_packets=0)


# -- the server -----------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    async def wait(self, kind: str, count: int = 1) -> list[Any]:
        await eventually(lambda: len(self.of(kind)) >= count)
        return self.of(kind)

    def of(self, kind: str) -> list[Any]:
        return [item for k, item in self.items if k == kind]


def recovering_server(**options: Any) -> tuple[Server, Seen]:
    options.setdefault("connection_state_recovery", True)
    sio = Server(**options)
    seen = Seen()

    @sio.on("connection")
    async def connection(socket: Any) -> None:
        seen.items.append(("connection", (socket.id, socket.recovered, dict(socket.data))))
        socket.data["n"] = socket.data.get("n", 0) + 1

    @sio.on("disconnect")
    async def disconnect(socket: Any, reason: str) -> None:
        seen.items.append(("disconnect", (socket.id, reason)))

    @sio.on("join")
    async def join(socket: Any, room: str) -> str:
        socket.join(room)
        return "ok"

    @sio.on("ask")
    async def ask(socket: Any) -> Any:
        return await socket.emit_with_ack("question")

    return sio, seen


async def connect_raw(url: str, auth: dict[str, Any] | None = None) -> tuple[RawClient, str, str]:
    """A raw client joined to "/": it, its sid and pid (and nothing read after the CONNECT)."""
    raw = await RawClient.open(url)
    await raw.send_sio("0" + (json.dumps(auth) if auth is not None else ""))
    reply = json.loads((await raw.recv_sio())[1:])
    assert set(reply) == {"sid", "pid"}, reply
    return raw, reply["sid"], reply["pid"]


async def dropped_client(
    url: str, sio: Server, seen: Seen, room: str | None = None
) -> tuple[str, str, str]:
    """A raw client that joins (``room`` too), gets one event, then loses its transport (no
    DISCONNECT): its sid, pid and last offset, once the server saw it go."""
    raw, sid, pid = await connect_raw(url)
    if room is not None:
        await raw.send_sio(f'21["join","{room}"]')
        assert await raw.recv_sio() == '31["ok"]'
    sio.emit("hello", 0)
    offset: str = event_of(await raw.recv_sio())[-1]
    await raw.close()
    await eventually(lambda: (sid, "transport close") in seen.of("disconnect"))
    return sid, pid, offset


def event_of(packet: str) -> list[Any]:
    assert packet.startswith("2"), packet
    data: list[Any] = json.loads(packet[1:])
    return data


async def test_offsets_on_events_not_on_acks_nor_volatile() -> None:
    sio, seen = recovering_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw, sid, pid = await connect_raw(url)
            assert sid != pid
            [(_, socket)] = [(s.id, s) for s in await sio.fetch_sockets()]
            socket.emit("direct", 1)
            sio.emit("all", 2)
            direct, everyone = [event_of(await raw.recv_sio()) for _ in range(2)]
            await eventually(lambda: socket.client.ready_for_volatile())
            sio.volatile.emit("volatile", 3)
            volatile = event_of(await raw.recv_sio())
            assert direct[:2] == ["direct", 1] and type(direct[2]) is str
            assert everyone[:2] == ["all", 2] and type(everyone[2]) is str
            assert direct[2] != everyone[2]
            assert volatile == ["volatile", 3]  # no offset: never kept
            # an ack answer carries no offset; a server -> client ask neither
            await raw.send_sio('27["join","r"]')
            assert await raw.recv_sio() == '37["ok"]'
            await raw.send_sio('28["ask"]')
            question = await raw.recv_sio()
            ack_id = question[1 : question.index("[")]
            assert question == f'2{ack_id}["question"]' and ack_id.isdigit()
            await raw.send_sio(f'3{ack_id}["answer"]')
            assert await raw.recv_sio() == '38["answer"]'
            await raw.close()
            await seen.wait("disconnect")


async def test_a_dropped_client_gets_its_socket_and_what_it_missed() -> None:
    sio, seen = recovering_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            sid, pid, offset = await dropped_client(url, sio, seen, room="r1")
            sio.to("r1").emit("news", "room", b"\x07")
            sio.to("r2").emit("news", "not for it")
            sio.to(sid).emit("news", "direct")
            raw = await connect_raw_expecting_missed(url, pid, offset)
            await seen.wait("connection", 2)
            # same id, recovered, data kept (the handler counted two connections)
            assert seen.of("connection") == [(sid, False, {}), (sid, True, {"n": 1})]
            assert "r1" in next(s for s in await sio.fetch_sockets() if s.id == sid).rooms
            sio.to("r1").emit("news", "after")
            assert event_of(await raw.recv_sio())[:2] == ["news", "after"]
            await raw.close()


async def connect_raw_expecting_missed(url: str, pid: str, offset: str) -> RawClient:
    """Reconnect with ``pid`` and ``offset``: the missed packets come before the CONNECT
    reply (checked here: the binary one with its attachment, then the direct one)."""
    raw = await RawClient.open(url)
    await raw.send_sio("0" + json.dumps({"pid": pid, "offset": offset}))
    first = await raw.recv_sio()
    assert first.startswith('51-["news","room",{"_placeholder":true,"num":0},"'), first
    assert await raw.recv() == b"\x07"
    assert event_of(await raw.recv_sio())[:2] == ["news", "direct"]
    reply = json.loads((await raw.recv_sio())[1:])
    assert reply["pid"] == pid
    return raw


async def test_a_replay_is_what_was_sent_then() -> None:
    """The missed packets are replayed as they were encoded and sent to the others, not
    encoded again from arguments the application changed since."""
    sio, seen = recovering_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            _, pid, offset = await dropped_client(url, sio, seen)
            payload = {"n": 1}
            sio.emit("news", payload)
            payload["n"] = 2  # changed after the emit
            raw = await RawClient.open(url)
            await raw.send_sio("0" + json.dumps({"pid": pid, "offset": offset}))
            assert event_of(await raw.recv_sio())[:2] == ["news", {"n": 1}]
            assert json.loads((await raw.recv_sio())[1:])["pid"] == pid
            await raw.close()


async def test_a_client_that_left_on_purpose_is_not_recovered() -> None:
    sio, seen = recovering_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw, sid, pid = await connect_raw(url)
            sio.emit("hello", 0)
            offset = event_of(await raw.recv_sio())[-1]
            await raw.send_sio("1")  # client namespace disconnect: final
            await seen.wait("disconnect")
            again, sid2, pid2 = await connect_raw(url, {"pid": pid, "offset": offset})
            assert sid2 != sid and pid2 != pid
            await seen.wait("connection", 2)
            assert seen.of("connection")[1] == (sid2, False, {})
            await again.close()
            await raw.close()


@pytest.mark.parametrize(
    "auth",
    [
        {"pid": 1, "offset": "x"},
        {"pid": "x", "offset": None},
        {"pid": "x" * 10_000, "offset": "y" * 10_000},
        {"pid": ["a"], "offset": {"b": 1}},
        {"offset": "p0"},
    ],
)
async def test_bad_recovery_auth_gets_a_new_socket(auth: dict[str, Any]) -> None:
    sio, seen = recovering_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw, sid, _ = await connect_raw(url, auth)
            await seen.wait("connection")
            assert seen.of("connection") == [(sid, False, {})]
            await raw.close()


@pytest.mark.parametrize("skip", [True, False])
async def test_connection_middleware_is_skipped_or_run_for_a_recovered_socket(skip: bool) -> None:
    sio, seen = recovering_server(connection_state_recovery=StateRecovery(skip_middlewares=skip))
    calls: list[bool] = []

    @sio.use
    async def refuse_second(socket: Any) -> None:
        calls.append(socket.recovered)
        if len(calls) == 2:
            raise ConnectionRefused("not now")

    with trio.fail_after(10):
        async with serving(sio) as url:
            sid, pid, offset = await dropped_client(url, sio, seen)
            auth = json.dumps({"pid": pid, "offset": offset})
            again = await RawClient.open(url)
            await again.send_sio("0" + auth)
            answer = await again.recv_sio()
            if skip:
                assert json.loads(answer[1:]) == {"sid": sid, "pid": pid}
                assert calls == [False]
            else:
                # run, and refused: the session is kept for another try
                assert answer == '4{"message":"not now"}'
                assert calls == [False, True]
                await again.send_sio("0" + auth)
                assert json.loads((await again.recv_sio())[1:]) == {"sid": sid, "pid": pid}
                assert calls == [False, True, True]
            await again.close()


async def test_the_same_session_cannot_be_recovered_twice() -> None:
    sio, seen = recovering_server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            sid, pid, offset = await dropped_client(url, sio, seen)
            auth = {"pid": pid, "offset": offset}
            first, sid1, _ = await connect_raw(url, auth)
            second, sid2, pid2 = await connect_raw(url, auth)
            assert sid1 == sid and sid2 != sid and pid2 != pid
            await first.close()
            await second.close()


def test_recovery_needs_the_in_memory_adapter() -> None:
    from pyserver import RedisAdapter

    with pytest.raises(ValueError, match="in-memory adapter"):
        Server(adapter=RedisAdapter("redis://127.0.0.1:9"), connection_state_recovery=True)


async def test_recovery_off_sends_no_pid_and_no_offsets() -> None:
    sio = Server()
    with trio.fail_after(10):
        async with serving(sio) as url:
            raw = await RawClient.open(url)
            await raw.send_sio("0")
            assert set(json.loads((await raw.recv_sio())[1:])) == {"sid"}
            sio.emit("hello", 1)
            assert await raw.recv_sio() == '2["hello",1]'
            await raw.close()
