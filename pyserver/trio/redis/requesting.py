"""What the cluster adapters' namespaces share to ask the other nodes and wait for their
answers: :class:`Pending` (one request waiting) and :class:`RequestingAdapter`, the base of
the Redis adapter's namespace (:mod:`pyserver.trio.redis.remote`) and of the streams and
sharded adapters' (:mod:`pyserver.trio.redis.streams_namespace`).

A request counts the nodes that will answer it, is published with a fresh ``requestId``, and
waits for that many answers, at most its timeout; requests in flight are bounded
(``max_pending_requests``). ``fetch_sockets``, ``server_side_emit``,
``server_side_emit_with_ack`` and ``broadcast_with_ack`` are written here once; each adapter
says how its protocol counts the nodes, draws ids, shapes each request and publishes it (the
``_count``, ``_new_id``, ``_*_request`` and ``_send_request`` hooks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

from pyserver.trio.socketio.adapter import (
    AckSink,
    AdapterNamespace,
    BroadcastOptions,
    InMemoryAdapter,
    LocalSocket,
    RemoteSocket,
    RequestTimeout,
)

__all__ = ["Pending", "Request", "RequestingAdapter", "RequestingNode"]

Request = tuple[int, dict[str, Any]]
"""A request to publish: its kind (the protocol's type number) and its data."""

PRUNE_FROM = 64
"""Requests in flight from which expired ones are dropped before a new one is registered
(broadcasts with acks are forgotten once expired, not when answered)."""


class RequestingNode(Protocol):
    """What asking needs of the node."""

    @property
    def uid(self) -> str: ...

    @property
    def requests_timeout(self) -> float: ...

    @property
    def max_pending_requests(self) -> int: ...


class Pending:
    """A request waiting for the other nodes' answers. ``hung``: nodes left out of
    ``expected`` as stale (the Redis adapter's); one that answers after all is counted."""

    __slots__ = ("answered", "done", "expected", "expires", "hung", "responses", "sink")

    def __init__(
        self,
        expected: int,
        expires: float,
        sink: AckSink | None = None,
        hung: frozenset[str] = frozenset(),
    ) -> None:
        self.expected = expected
        self.hung = hung
        self.expires = expires
        self.answered = 0
        self.responses: list[Any] = []
        self.done = trio.Event()
        self.sink = sink

    def answer(self, uid: Any = None) -> None:
        """One more node answered (``uid``: which, when the protocol says)."""
        if self.hung and isinstance(uid, str) and uid in self.hung:
            self.expected += 1  # a stale node answered after all
            self.hung = self.hung - {uid}
        self.answered += 1
        if self.answered >= self.expected:
            self.done.set()


class RequestingAdapter(InMemoryAdapter):
    """The requests of a cluster adapter's namespace, over the hooks below."""

    node: RequestingNode

    def __init__(self, node: RequestingNode, nsp: AdapterNamespace) -> None:
        super().__init__(nsp)
        self.node = node
        self.uid = node.uid
        self.default_ack_timeout = node.requests_timeout
        #: This namespace's requests waiting for answers, by ``requestId``.
        self.pending: dict[str, Pending] = {}

    # -- the hooks -------------------------------------------------------------------------

    async def _count(self) -> tuple[int, frozenset[str]]:
        """How many other nodes will answer, and the stale nodes left out."""
        raise NotImplementedError

    def _new_id(self) -> str:
        raise NotImplementedError

    def _send_request(self, rid: str | None, kind: int, data: dict[str, Any]) -> None:
        """Publish the request ``kind`` with ``data`` (and ``requestId`` unless None)."""
        raise NotImplementedError

    def _fetch_request(self, opts: BroadcastOptions) -> tuple[int, dict[str, Any], float]:
        """``fetch_sockets``' request: its kind, its data and its timeout."""
        raise NotImplementedError

    def _emit_request(self, packet: list[Any]) -> Request:
        """A server-side emit of ``packet`` (``[event, *args]``)."""
        raise NotImplementedError

    def _ack_request(self, packet: list[Any], opts: BroadcastOptions, ms: int) -> Request:
        """A broadcast of ``packet`` (``[event, *args]``) asking for acks within ``ms``."""
        raise NotImplementedError

    # -- asking ----------------------------------------------------------------------------

    def _register(
        self,
        expected: int,
        timeout: float,
        sink: AckSink | None = None,
        hung: frozenset[str] = frozenset(),
    ) -> tuple[str, Pending]:
        now = trio.current_time()
        if len(self.pending) >= PRUNE_FROM:
            for rid in [r for r, p in self.pending.items() if p.expires < now]:
                del self.pending[rid]
            if len(self.pending) >= self.node.max_pending_requests:
                raise RuntimeError(f"too many requests to other nodes in flight in {self.name}")
        rid = self._new_id()
        pending = self.pending[rid] = Pending(expected, now + timeout, sink, hung)
        return rid, pending

    async def _request(
        self,
        kind: int,
        data: dict[str, Any],
        timeout: float,  # noqa: ASYNC109
    ) -> tuple[Pending | None, bool]:
        """Publish a request and wait for the other nodes: ``(pending, complete)``;
        ``(None, True)`` when no other node will answer."""
        expected, hung = await self._count()
        if expected == 0:
            return None, True
        rid, pending = self._register(expected, timeout, hung=hung)
        try:
            self._send_request(rid, kind, data)
            with trio.move_on_after(timeout):
                await pending.done.wait()
            return pending, pending.done.is_set()
        finally:
            self.pending.pop(rid, None)

    # -- the Adapter API -------------------------------------------------------------------

    def server_side_emit(self, event: str, args: Sequence[Any]) -> None:
        self._send_request(None, *self._emit_request([event, *args]))

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[LocalSocket | RemoteSocket]:
        found = await super().fetch_sockets(opts)
        if opts.local:
            return found
        pending, complete = await self._request(*self._fetch_request(opts))
        if pending is not None:
            found.extend(pending.responses)
            if not complete:
                raise RequestTimeout(
                    "timeout reached while waiting for fetchSockets response", found
                )
        return found

    async def server_side_emit_with_ack(
        self,
        event: str,
        args: Sequence[Any],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[Any]:
        pending, complete = await self._request(
            *self._emit_request([event, *args]),
            timeout if timeout is not None else self.node.requests_timeout,
        )
        if pending is None:
            return []
        if not complete:
            raise RequestTimeout(
                f"timeout reached: only {pending.answered} responses received out of "
                f"{pending.expected}",
                pending.responses,
            )
        return pending.responses

    async def broadcast_with_ack(
        self, event: str, args: Sequence[Any], opts: BroadcastOptions, sink: AckSink
    ) -> None:
        if not opts.local:
            timeout = opts.timeout if opts.timeout is not None else self.node.requests_timeout
            expected, hung = await self._count()
            sink.expect_nodes(1 + expected)
            if expected:
                rid, _ = self._register(expected, timeout, sink, hung)
                request = self._ack_request([event, *args], opts, round(timeout * 1000))
                self._send_request(rid, *request)
        self.local_broadcast_with_ack(event, args, opts, sink.client_count, sink.reply, sink.gone)
