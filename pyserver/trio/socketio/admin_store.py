"""Where the Admin UI's login sessions are kept (``sio.instrument(..., store=...)``), as Node's
``@socket.io/admin-ui`` has it: a password login gets a session id (the ``session`` event)
that logs the UI in again without the password, here or, with a shared store, on any node.

* :class:`InMemoryStore` (the default): this process only, a day each, at most
  ``max_sessions`` at once (the oldest go first). Behind a load balancer, the UI's
  reconnection to another node asks for the password again.
* :class:`RedisStore`: ``SET <prefix>#<sessionId> "1" EX <duration>`` and ``EXISTS``, Node's
  key format (prefix ``socket.io-admin``, 86400 s), so every node of a cluster (Node's
  instrumented servers on the same Redis too) accepts a session any of them gave.

A store is anything with ``async save(session_id)`` and ``async exists(session_id) -> bool``
(and, if it holds a connection, ``async run()``: the admin's stats task runs it for the
server's lifetime). An error of the store is the admin's business (``AdminUI._login``): a
password login still works, a session-id-only login is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    import coredis

__all__ = ["InMemoryStore", "RedisStore", "SessionStore"]

SESSION_SECONDS = 86400
"""How long a session id logs the UI in again (Node's stores keep it a day)."""
MAX_SESSIONS = 1000
"""Session ids the in-memory store keeps at once (the oldest go first)."""


class SessionStore(Protocol):
    """What :class:`pyserver.trio.socketio.admin.AdminUI` needs of a session store."""

    async def save(self, session_id: str) -> None: ...

    async def exists(self, session_id: str) -> bool: ...


class InMemoryStore:
    """Session ids in this process's memory, ``duration`` seconds each, at most
    ``max_sessions`` (saving one more forgets the oldest). ``clock`` is Trio's by default."""

    def __init__(
        self,
        duration: float = SESSION_SECONDS,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.duration = duration
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, float] = {}  # session id -> expiry, oldest first

    def __len__(self) -> int:
        return len(self._sessions)

    async def save(self, session_id: str) -> None:
        now = self._clock()
        for old, expiry in list(self._sessions.items()):
            if expiry <= now or len(self._sessions) >= self.max_sessions:
                del self._sessions[old]
        self._sessions.pop(session_id, None)  # (kept in order: a re-save is the newest)
        self._sessions[session_id] = now + self.duration

    async def exists(self, session_id: str) -> bool:
        return self._sessions.get(session_id, float("-inf")) > self._clock()


class RedisStore:
    """Session ids in Redis under ``<prefix>#<sessionId>`` (value ``"1"``, expiring after
    ``duration`` seconds): Node's ``RedisStore``. ``redis`` is a URL (the store makes its
    client, opened while the admin's stats task runs) or a coredis client you opened
    (``async with client``) and keep open. A Redis that does not answer within ``timeout``
    seconds is an error (see the module docstring). Needs ``pip install 'pyserver[redis]'``."""

    def __init__(
        self,
        redis: str | coredis.Redis[Any],
        *,
        prefix: str = "socket.io-admin",
        duration: int = SESSION_SECONDS,
        timeout: float = 5.0,
    ) -> None:
        if duration <= 0:
            raise ValueError("duration must be > 0 (seconds)")
        self.prefix = prefix
        self.duration = int(duration)
        self.timeout = timeout
        self._ready = trio.Event()
        if isinstance(redis, str):
            import coredis  # (the redis extra: only a RedisStore needs it)

            self.url: str | None = redis
            self.client: coredis.Redis[Any] = coredis.Redis.from_url(
                redis, decode_responses=False, stream_timeout=timeout, connect_timeout=timeout
            )
        else:
            self.url = None
            self.client = redis
            self._ready.set()

    def key(self, session_id: str) -> str:
        return f"{self.prefix}#{session_id}"

    async def run(self) -> None:
        """Hold the store's own client open until cancelled (nothing to do for a client
        given: its owner opened it)."""
        if self.url is None:
            await trio.sleep_forever()
        else:
            async with self.client:
                self._ready.set()
                await trio.sleep_forever()

    async def save(self, session_id: str) -> None:
        with trio.fail_after(self.timeout):
            await self._ready.wait()
            await self.client.set(self.key(session_id), "1", ex=self.duration)

    async def exists(self, session_id: str) -> bool:
        with trio.fail_after(self.timeout):
            await self._ready.wait()
            return await self.client.exists([self.key(session_id)]) == 1
