"""The Admin UI's session stores (:mod:`pyserver.trio.socketio.admin_store`): the in-memory
store's bound and expiry, on a clock of the test's; and a store that fails (a Redis nobody
listens on) refusing only the session-id logins, while the password still logs in."""

from __future__ import annotations

import pytest
import trio
from helpers.redis_process import free_port

from pyserver import ConnectionRefused, RedisStore, Server, testing
from pyserver.trio.socketio.admin_store import InMemoryStore

CREDENTIALS = {"username": "admin", "password": "s3cret"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_in_memory_sessions_expire_after_their_duration() -> None:
    clock = Clock()
    store = InMemoryStore(duration=60, clock=clock)
    await store.save("a")
    assert await store.exists("a") and not await store.exists("b")
    clock.now += 59.5
    assert await store.exists("a")
    clock.now += 1
    assert not await store.exists("a")
    await store.save("b")  # the expired one is dropped on the way
    assert len(store) == 1 and await store.exists("b")


async def test_in_memory_store_keeps_at_most_max_sessions_the_oldest_going_first() -> None:
    clock = Clock()
    store = InMemoryStore(max_sessions=3, clock=clock)
    for n in range(5):
        await store.save(f"s{n}")
        clock.now += 1
    assert len(store) == 3
    assert [await store.exists(f"s{n}") for n in range(5)] == [False, False, True, True, True]


async def test_a_failing_store_refuses_session_ids_but_not_the_password() -> None:
    sio = Server()
    store = RedisStore(f"redis://127.0.0.1:{free_port()}", timeout=2)  # nobody listens
    sio.instrument(auth=CREDENTIALS, store=store)
    with trio.fail_after(20):
        async with testing.serve(sio) as url:
            async with testing.connect(url + "/admin", auth=CREDENTIALS) as admin:
                await testing.wait_for_event(admin, "config")
                with pytest.raises(TimeoutError):  # ("session" comes before "config")
                    await testing.wait_for_event(admin, "session", timeout=0.01)
            with pytest.raises(ConnectionRefused, match="invalid credentials"):
                async with testing.connect(url + "/admin", auth={"sessionId": "0" * 16}):
                    pass
            # a session id with the password: the password logs in
            async with testing.connect(
                url + "/admin", auth={"sessionId": "0" * 16, **CREDENTIALS}
            ) as admin:
                await testing.wait_for_event(admin, "config")
