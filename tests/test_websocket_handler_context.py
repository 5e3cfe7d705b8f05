"""Handlers behave the same whoever runs them: the run's reactor, or a reader task per
connection (``PYSERVER_REACTOR=0``, and every platform but Linux).

What is checked, through real clients, with the reactor on and off: a ``ContextVar`` set by
the code that calls ``serve`` is seen by handlers; one a handler sets, also after it blocked,
is seen by the later handlers of its connection and never by another connection's (the
README, "Where handlers run"); a handler that blocks and then raises is logged with its
traceback.

Peers: python-socketio's client (``tests/helpers/sio_client.py``'s ``PyClient``) and raw Engine.IO
over ``websockets`` (its ``RawClient``)."""

from __future__ import annotations

import contextvars
import logging

import pytest
import trio
from helpers.sio_client import PyClient, RawClient, eventually, serving

from pyserver import Server
from pyserver.trio.socketio import Socket
from pyserver.trio.websocket import reactor

TIMEOUT = 20

VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("test_handler_context_value")


@pytest.fixture(autouse=True, params=["reactor", "reader-tasks"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the run's reactor reading the sockets and with a reader task
    per connection (the reactor turned off, as on other platforms)."""
    monkeypatch.setattr(reactor, "ENABLED", request.param == "reactor" and reactor.ENABLED)
    return str(request.param)


def context_server() -> tuple[Server, dict[str, list[str]]]:
    """A server whose "set" event sets ``VALUE`` before or after blocking, and whose "get"
    answers what it sees; the connection and disconnect handlers record what they saw."""
    sio = Server()
    seen: dict[str, list[str]] = {"connection": [], "disconnect": []}

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        seen["connection"].append(VALUE.get("unset"))

    @sio.on("disconnect")
    async def disconnected(socket: Socket, reason: str) -> None:
        seen["disconnect"].append(VALUE.get("unset"))

    @sio.on("set")
    async def set_value(socket: Socket, when: str, value: str) -> str:
        if when == "before":
            VALUE.set(value)
        await trio.lowlevel.checkpoint()  # blocks: the reading goes on in another task
        if when == "after":
            VALUE.set(value)
        return VALUE.get("unset")

    @sio.on("get")
    async def get_value(socket: Socket) -> str:
        return VALUE.get("unset")

    return sio, seen


async def test_a_handlers_context_var_is_seen_by_its_connection_only() -> None:
    sio, seen = context_server()
    VALUE.set("set by the caller")  # (the test's own context: gone when it ends)
    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            a, b = PyClient(), PyClient()
            await a.connect(url)
            await b.connect(url)
            try:
                assert await a.call("get") == "set by the caller"
                assert await a.call("set", ("before", "a1")) == "a1"
                assert await a.call("get") == "a1"
                assert await a.call("set", ("after", "a2")) == "a2"
                assert await a.call("get") == "a2"  # set after the handler blocked
                assert await b.call("get") == "set by the caller"  # nothing of a's
                assert await b.call("set", ("after", "b1")) == "b1"
                assert await b.call("get") == "b1"
                assert await a.call("get") == "a2"  # nothing of b's
            finally:
                await a.disconnect()
                await b.disconnect()
            await eventually(lambda: len(seen["disconnect"]) == 2)
    assert seen["connection"] == ["set by the caller", "set by the caller"]
    assert seen["disconnect"] == ["a2", "b1"]


async def test_a_blocked_handler_that_fails_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sio = Server()
    failures: list[str] = []

    @sio.on("fail")
    async def fail_after_blocking(socket: Socket) -> None:
        await trio.lowlevel.checkpoint()  # blocks: the reading goes on in another task
        failures.append("raised")
        raise RuntimeError("handler failed after blocking")

    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            client = await RawClient.open(url)
            await client.join("/")
            await client.send_sio('21["fail"]')
            assert await client.recv_sio() == '31[{"error":"internal server error"}]'
            await eventually(lambda: failures == ["raised"])
            await client.close()
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "RuntimeError: handler failed after blocking" in (logged[0].exc_text or "")
    assert "fail_after_blocking" in (logged[0].exc_text or "")


def descends_from(task: trio.lowlevel.Task, ancestor: trio.lowlevel.Task) -> bool:
    """``task`` is ``ancestor`` or runs in a nursery under it."""
    current: trio.lowlevel.Task | None = task
    while current is not None:
        if current is ancestor:
            return True
        nursery = current.parent_nursery
        current = None if nursery is None else nursery.parent_task
    return False


async def test_user_code_runs_in_tasks_of_the_serving_call_never_in_system_tasks() -> None:
    """Middleware, connection handlers and event handlers, before and after they block:
    each runs in a task under the one that called ``serve`` and is not shielded from
    KeyboardInterrupt (system tasks are), so Trio's rules hold for it."""
    sio = Server()
    caller = trio.lowlevel.current_task()
    where: list[tuple[str, bool, bool]] = []

    def note(what: str) -> None:
        where.append(
            (
                what,
                descends_from(trio.lowlevel.current_task(), caller),
                trio.lowlevel.currently_ki_protected(),
            )
        )

    @sio.use
    async def middleware(socket: Socket) -> None:
        note("middleware")

    @sio.on("connection")
    async def connected(socket: Socket) -> None:
        note("connection")

    @sio.on("work")
    async def work(socket: Socket, n: int) -> int:
        note("handler")
        await trio.lowlevel.checkpoint()  # blocks: with the reactor, a driver keeps it
        note("handler after blocking")
        return n

    with trio.fail_after(TIMEOUT):
        async with serving(sio) as url:
            client = await RawClient.open(url)
            await client.join("/")
            for n in range(3):
                await client.send_sio(f'2{n}["work",{n}]')
            assert {await client.recv_sio() for _ in range(3)} == {"30[0]", "31[1]", "32[2]"}
            await client.close()
    assert {what for what, _, _ in where} == {
        "middleware",
        "connection",
        "handler",
        "handler after blocking",
    }
    assert [entry for entry in where if not entry[1] or entry[2]] == []


async def test_keyboard_interrupt_in_a_handler_unwinds_the_serving_call() -> None:
    """A BaseException from a handler is not swallowed by whoever runs it (a reader task,
    the reactor's driver): it ends the serving call, as in any Trio program."""
    sio = Server()

    @sio.on("stop")
    async def stop(socket: Socket) -> None:
        raise KeyboardInterrupt

    with trio.fail_after(TIMEOUT), pytest.raises(BaseException) as raised:
        async with serving(sio) as url:
            client = await RawClient.open(url)
            await client.join("/")
            await client.send_sio('2["stop"]')
            await trio.sleep_forever()
    leaves: list[BaseException] = []
    pending: list[BaseException] = [raised.value]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    assert any(isinstance(error, KeyboardInterrupt) for error in leaves), leaves
