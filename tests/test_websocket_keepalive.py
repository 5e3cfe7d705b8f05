"""Keepalive pings on raw WebSocket routes cost no task per connection: the run's one
keepalive timer (``pyserver.trio.websocket.connection._Keepalive``, a ``DeadlineTimer``) watches
every open connection's deadline. Checked white-box by counting Trio tasks, with and without
the reactor, on Unix socket pairs under the autojump clock (no wall time asserted)."""

from __future__ import annotations

import contextvars

import h11
import pytest
import trio
import trio.testing
from helpers.ws_client import TEXT, RawClient, masked

from pyserver.http import WebSocket
from pyserver.trio.http.app import App
from pyserver.trio.websocket import reactor, timed

PONG = 10
CONNECTIONS = 50


@pytest.fixture(params=["reactor", "no reactor"])
def reactor_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    mode: str = request.param
    if mode == "reactor" and not reactor.ENABLED:
        pytest.skip("no reactor here")
    monkeypatch.setattr(reactor, "ENABLED", mode == "reactor")
    return mode


def echo_app(**options: float | None) -> App:
    app = App(serve_client=False, health_path=None, **options)  # type: ignore[arg-type]

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        # message callbacks, as Engine.IO takes them: the reactor reads these (when on)
        await ws.serve_messages(ws.send_nowait)

    return app


def task_count() -> int:
    """Every task of this run (system tasks included)."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    todo = [root]
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


async def connect(nursery: trio.Nursery, app: App) -> RawClient:
    """A client on one end of a socket pair whose other end ``app`` serves; upgraded, and
    with one message echoed (so the server side is running and has gone idle)."""
    ours, theirs = trio.socket.socketpair()
    nursery.start_soon(app.serve_stream, trio.SocketStream(theirs))
    stream = trio.SocketStream(ours)
    http = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target="/echo",
        headers=[
            ("Host", "test"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    await stream.send_all(http.send(request) or b"")
    while (event := http.next_event()) is h11.NEED_DATA:
        http.receive_data(await stream.receive_some(65536))
    assert isinstance(event, h11.InformationalResponse) and event.status_code == 101
    client = RawClient(stream, http.trailing_data[0])
    await client.send(masked(TEXT, b"hi"))
    assert await client.next() == "hi"
    return client


async def tasks_per_connection(nursery: trio.Nursery, app: App) -> tuple[float, list[RawClient]]:
    """Tasks added by ``CONNECTIONS`` idle connections to ``app``, per connection (after one
    first connection: what a run makes once is not counted)."""
    clients = [await connect(nursery, app)]
    await trio.sleep(2)  # idle writers retire (WRITER_IDLE_SECONDS); no Ping is due yet
    before = task_count()
    clients += [await connect(nursery, app) for _ in range(CONNECTIONS)]
    await trio.sleep(2)
    return (task_count() - before) / CONNECTIONS, clients


async def test_keepalive_adds_no_task_per_connection_and_still_pings_and_closes(
    autojump_clock: trio.testing.MockClock, reactor_mode: str
) -> None:
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            plain, plain_clients = await tasks_per_connection(
                nursery, echo_app(ws_ping_interval=None)
            )
            keepalive, clients = await tasks_per_connection(
                nursery, echo_app(ws_ping_interval=20, ws_ping_timeout=20)
            )
            # the same tasks with keepalive as without (before: one timer task more each)
            assert keepalive == plain, (keepalive, plain)

            # and every connection still gets its Pings: one that answers stays open, the
            # others (no Pong) are closed with 1011 after ws_ping_timeout
            start = trio.current_time()
            outcomes: dict[int, tuple[int, float]] = {}  # client -> (pings, closed at)

            async def watch(index: int, client: RawClient, answer: bool) -> None:
                pings = 0
                while True:
                    message = await client.next()
                    if isinstance(message, tuple) and message[0] == "ping":
                        pings += 1
                        if answer:
                            await client.send(masked(PONG, message[1]))
                    elif isinstance(message, tuple) and message[0] == "close":
                        assert message[1] == 1011, message
                        with pytest.raises(EOFError):  # then the server hangs up
                            await client.next()
                        outcomes[index] = (pings, trio.current_time() - start)
                        return

            async with trio.open_nursery() as watchers:
                for index, client in enumerate(clients[1:]):
                    watchers.start_soon(watch, index, client, False)
                answering = clients[0]
                answered = 0
                while trio.current_time() - start < 100:
                    message = await answering.next()
                    assert isinstance(message, tuple) and message[0] == "ping", message
                    answered += 1
                    await answering.send(masked(PONG, message[1]))
            assert answered >= 4  # every 20 s (the first after the 2 s idle above)
            assert len(outcomes) == CONNECTIONS
            for pings, closed_at in outcomes.values():
                assert pings == 1
                assert 20 <= closed_at <= 40  # the Ping within 20 s, then 20 s for a Pong
            # the connections without keepalive got none, and nothing was left behind:
            # only the answering connection still has a deadline
            for client in plain_clients:
                assert client.messages == []
            assert len(timed._keepalive().timer._due) == 1
            nursery.cancel_scope.cancel()


async def test_closed_connections_leave_the_keepalive_timer(
    autojump_clock: trio.testing.MockClock, reactor_mode: str
) -> None:
    """A connection that ends before its deadline is unscheduled at once, and the heap
    entries it leaves behind are dropped once they are most of it: many short connections
    in a row do not pile up in the timer (nor stay alive through it)."""
    app = echo_app(ws_ping_interval=20, ws_ping_timeout=20)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            keep = await connect(nursery, app)
            for _ in range(300):
                client = await connect(nursery, app)
                await client.stream.aclose()  # gone without a Close: the end of the stream
            await trio.testing.wait_all_tasks_blocked()
            timer = timed._keepalive().timer
            assert len(timer._due) == 1  # the one still open
            # stale entries (held connections) are dropped once there are more than 64
            assert len(timer._heap) <= 1 + 65, len(timer._heap)
            # the one left open is pinged as usual
            message = await keep.next()
            assert isinstance(message, tuple) and message[0] == "ping"
            nursery.cancel_scope.cancel()


async def test_a_keepalive_close_ends_in_the_connections_context(
    autojump_clock: trio.testing.MockClock, reactor_mode: str
) -> None:
    """The shared timer is a system task: what it starts for a connection (the writer of
    the 1011 Close, which may hand the reading to a new task that calls ``on_end``) runs in
    the connection's context (the one its reads run in), not the timer's. (Before the
    shared timer, the timer task's context was copied before the handler ran: ``on_end``
    did not see what the handler set either.)"""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []
    app = App(serve_client=False, health_path=None, ws_ping_interval=20, ws_ping_timeout=20)

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        var.set("handler")
        await ws.serve_messages(ws.send_nowait, lambda: seen.append(var.get()))

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            client = await connect(nursery, app)
            close = await client.until_close()  # a Ping, no Pong, then 1011
            assert close[1] == 1011
            await trio.sleep(30)  # the peer does not close its end: the server gives up
            assert seen == ["handler"]
            nursery.cancel_scope.cancel()
