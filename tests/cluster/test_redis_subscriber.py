"""The subscriber's own Redis connection (:mod:`pyserver.trio.redis.subscriber`): the sans-IO
RESP reader on every split of its input and on bad input, the Trio shell on memory streams
(a burst is dispatched without another task running in between; acknowledgements; the
keepalive PING), and against a real redis-server (AUTH, a message over the limit)."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import coredis
import pytest
import trio
import trio.testing
from helpers.redis_cluster import cluster, raw_clients
from helpers.redis_process import REDIS_SERVER, RedisProcess, free_port
from helpers.sio_client import eventually

from pyserver.redis.resp import RespError, RespProtocolError, RespReader, command
from pyserver.trio.redis.subscriber import Subscriber, SubscriberError


def message(channel: bytes, data: bytes) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel), channel, len(data), data,
    )  # fmt: skip


def pmessage(pattern: bytes, channel: bytes, data: bytes) -> bytes:
    return b"*4\r\n$8\r\npmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(pattern), pattern, len(channel), channel, len(data), data,
    )  # fmt: skip


STREAM = (
    message(b"ch", b"\x00\r\nbinary")
    + pmessage(b"p#*", b"p#room#", b"")
    + b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    + b"+OK\r\n-ERR wrong\r\n:-42\r\n$-1\r\n*-1\r\n*0\r\n"
    + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
)
EXPECTED = [
    [b"message", b"ch", b"\x00\r\nbinary"],
    [b"pmessage", b"p#*", b"p#room#", b""],
    [b"subscribe", b"ch", 1],
    b"OK",
    RespError("ERR wrong"),
    -42,
    None,
    None,
    [],
    [b"pong", b""],
]


def test_reader_on_every_split_of_the_input() -> None:
    whole = RespReader(max_bulk=1024)
    whole.feed(STREAM)
    assert whole.replies() == EXPECTED
    assert whole.buffered == 0
    for cut in range(1, len(STREAM)):
        reader = RespReader(max_bulk=1024)
        reader.feed(STREAM[:cut])
        got = reader.replies()
        reader.feed(STREAM[cut:])
        got += reader.replies()
        assert got == EXPECTED, cut
    # byte by byte
    reader = RespReader(max_bulk=1024)
    got = []
    for i in range(len(STREAM)):
        reader.feed(STREAM[i : i + 1])
        got += reader.replies()
    assert got == EXPECTED


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"$2000\r\n", "over the limit"),  # refused from its header, before its bytes
        (b"*5000\r\n", "over the limit"),
        (b"$abc\r\n", "bad RESP bulk string length"),
        (b"$3\r\nabcde\r\n", "without its CRLF"),
        (b"!3\r\nabc\r\n", "not a RESP2 reply"),
        (b"*1\r\n*1\r\n*1\r\n:1\r\n", "nested too deep"),
        (b"+" + b"x" * (64 * 1024 + 10), "longer than 64 KiB"),
    ],
)
def test_reader_refuses_bad_input(data: bytes, error: str) -> None:
    reader = RespReader(max_bulk=1024)
    reader.feed(data)
    with pytest.raises(RespProtocolError, match=error):
        reader.replies()


def test_reader_returns_the_replies_before_a_bad_one_first() -> None:
    reader = RespReader(max_bulk=1024)
    reader.feed(message(b"c", b"ok") + pmessage(b"p", b"p1", b"ok too") + b"$2000\r\n")
    assert reader.replies() == [[b"message", b"c", b"ok"], [b"pmessage", b"p", b"p1", b"ok too"]]
    assert reader.error is not None and "over the limit" in str(reader.error)
    with pytest.raises(RespProtocolError, match="over the limit"):
        reader.replies()  # the stream is unusable from there on


async def test_messages_before_an_oversized_one_in_the_same_read_are_dispatched() -> None:
    """Redis sent two small messages and a too large one, which arrive in one read: the
    small ones are dispatched, then the connection fails (the adapter reconnects)."""
    ours, redis = trio.testing.memory_stream_pair()
    sub = Subscriber(ours, timeout=5, keepalive=5, max_bulk=100)
    got: list[tuple[bytes | None, bytes, bytes]] = []
    await redis.send_all(
        message(b"c", b"small") + pmessage(b"p#*", b"p#1", b"also") + message(b"c", b"x" * 101)
    )
    with pytest.raises(SubscriberError, match="over the limit"):
        await sub.run(lambda *m: got.append(m))
    assert got == [(None, b"c", b"small"), (b"p#*", b"p#1", b"also")]


def test_reader_keeps_at_most_the_unfinished_reply() -> None:
    reader = RespReader(max_bulk=1024)
    body = message(b"c", b"x" * 1000)
    reader.feed(body * 3 + body[:10])
    assert len(reader.replies()) == 3
    assert reader.buffered == 10
    reader.feed(body[10:])
    assert reader.replies() == [[b"message", b"c", b"x" * 1000]]
    assert reader.buffered == 0


def test_the_reader_is_sans_io() -> None:
    source = (Path(__file__).parents[2] / "pyserver" / "redis" / "resp.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(trio|socket|time|asyncio)\b", source, re.M)


def test_command_is_resp() -> None:
    reader = RespReader(max_bulk=1024)
    reader.feed(command(b"SUBSCRIBE", b"a#b", b""))
    assert reader.replies() == [[b"SUBSCRIBE", b"a#b", b""]]


async def test_a_burst_is_dispatched_before_any_other_task_runs() -> None:
    """Every message of one read is handled before the scheduler runs anything else, so
    the local deliveries of a burst are all queued before the writers run."""
    ours, redis = trio.testing.memory_stream_pair()
    sub = Subscriber(ours, timeout=5, keepalive=5, max_bulk=1024)
    ticks = 0
    seen: list[tuple[int, bytes | None, bytes, bytes]] = []

    def dispatch(pattern: bytes | None, channel: bytes, data: bytes) -> None:
        seen.append((ticks, pattern, channel, data))

    async def probe() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            nursery.start_soon(sub.run, dispatch)
            burst = b"".join(message(b"ch", b"%d" % i) for i in range(200))
            await redis.send_all(burst + pmessage(b"p*", b"p1", b"last"))
            await eventually(lambda: len(seen) == 201)
            nursery.cancel_scope.cancel()
    assert [d for _, _, _, d in seen] == [b"%d" % i for i in range(200)] + [b"last"]
    assert seen[-1][1:3] == (b"p*", b"p1")
    assert len({tick for tick, *_ in seen}) == 1  # no other task ran in between


async def test_subscribe_waits_for_every_acknowledgement() -> None:
    ours, redis = trio.testing.memory_stream_pair()
    sub = Subscriber(ours, timeout=5, keepalive=5, max_bulk=1024)
    done = trio.Event()

    async def subscribe() -> None:
        await sub.subscribe([b"a", b"b"], [b"p*"])
        done.set()

    def no_message(pattern: bytes | None, channel: bytes, data: bytes) -> None:
        raise AssertionError("no message expected")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, no_message)
            nursery.start_soon(subscribe)
            sent = RespReader(1024)
            while True:
                sent.feed(await redis.receive_some())
                got = sent.replies()
                if got:
                    break
            assert got == [[b"SUBSCRIBE", b"a", b"b"], [b"PSUBSCRIBE", b"p*"]]
            await redis.send_all(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
            await redis.send_all(b"*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:2\r\n")
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()  # "b" not acknowledged yet
            await redis.send_all(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:3\r\n")
            await done.wait()
            nursery.cancel_scope.cancel()


async def test_unexpected_reply_breaks_the_connection() -> None:
    ours, redis = trio.testing.memory_stream_pair()
    sub = Subscriber(ours, timeout=5, keepalive=5, max_bulk=1024)
    await redis.send_all(b"-ERR nope\r\n")
    with trio.fail_after(5), pytest.raises(SubscriberError, match="nope"):
        await sub.run(lambda *_: None)


async def test_keepalive_ping(autojump_clock: trio.testing.MockClock) -> None:
    """Idle for ``keepalive`` seconds: a PING. Answered: the connection lives on; not
    answered within ``timeout``: it fails."""
    ours, redis = trio.testing.memory_stream_pair()
    sub = Subscriber(ours, timeout=2, keepalive=10, max_bulk=1024)
    with pytest.RaisesGroup(pytest.RaisesExc(SubscriberError, match="did not answer a PING")):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sub.run, lambda *_: None)
            start = trio.current_time()
            assert await redis.receive_some() == command(b"PING")
            assert trio.current_time() - start == pytest.approx(10)
            await redis.send_all(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
            assert await redis.receive_some() == command(b"PING")  # 10 s later again
            assert trio.current_time() - start == pytest.approx(20, abs=0.1)
            await trio.sleep(5)  # no answer: fails after 2 s
            raise AssertionError("the subscriber should have failed")


# -- a real redis-server -----------------------------------------------------------------


def start_redis_with_password(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    return subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "s3cret",
         "--unixsocket", str(tmp_path / "r.sock")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def test_against_redis_with_a_password_and_a_size_limit(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis_with_password(tmp_path, port)
    try:
        good = f"redis://:s3cret@127.0.0.1:{port}/0"
        with trio.fail_after(20):
            while True:  # until it accepts connections
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
            with pytest.raises(SubscriberError, match="AUTH refused"):
                await Subscriber.connect(
                    f"redis://:wrong@127.0.0.1:{port}/0", timeout=5, keepalive=5, max_bulk=100
                )
            sub = await Subscriber.connect(good, timeout=5, keepalive=5, max_bulk=100)
            got: list[tuple[bytes | None, bytes, bytes]] = []
            publisher = coredis.Redis.from_url(good, decode_responses=False)
            with pytest.RaisesGroup(
                pytest.RaisesExc(SubscriberError, match="over the limit"), flatten_subgroups=True
            ):
                async with publisher, trio.open_nursery() as nursery:
                    nursery.start_soon(sub.run, lambda *m: got.append(m))
                    await sub.subscribe([b"c"], [b"p#*"])
                    await publisher.publish("c", b"small")
                    await publisher.publish("p#1", b"also small")
                    await publisher.publish("c", b"x" * 101)
                    await trio.sleep_forever()
            await sub.aclose()
            assert got == [(None, b"c", b"small"), (b"p#*", b"p#1", b"also small")]
            # the same over a Unix socket (unix://:password@/path)
            sub = await Subscriber.connect(
                f"unix://:s3cret@{tmp_path / 'r.sock'}", timeout=5, keepalive=5, max_bulk=100
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sub.run, lambda *m: got.append(m))
                await sub.subscribe([b"u"], [])
                async with coredis.Redis.from_url(good, decode_responses=False) as publisher:
                    await publisher.publish("u", b"over unix")
                await eventually(lambda: len(got) == 3)
                nursery.cancel_scope.cancel()
            await sub.aclose()
            assert got[2] == (None, b"u", b"over unix")
    finally:
        proc.kill()
        proc.wait(10)


async def test_redis_adapter_resubscribes_after_an_oversized_message(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A message over ``max_message_bytes`` drops the subscriber's connection (logged); the
    node reconnects, resubscribes and broadcasts flow again."""
    caplog.set_level(logging.INFO, logger="pyserver.redis")

    def lost() -> list[str]:
        return [m for r in caplog.records if "connection lost" in (m := r.getMessage())]

    with trio.fail_after(30):
        async with cluster(redis_server, count=2, max_message_bytes=1000) as nodes:
            clients, _ = await raw_clients(nodes)
            probe = coredis.Redis.from_url(redis_server.url, decode_responses=False)
            async with probe:
                await probe.publish(f"{nodes[0].adapter.key}-heartbeat#", b"x" * 2000)
            await eventually(lambda: len(lost()) == 2)
            assert all("over the limit (1000)" in m for m in lost())
            await eventually(lambda: not any(n.adapter.redis_down for n in nodes))
            for node in nodes:
                await node.adapter.wait_subscribed()
            nodes[0].sio.emit("after", 1)
            for raw in clients:
                assert await raw.recv() == '42["after",1]'
                await raw.close()
