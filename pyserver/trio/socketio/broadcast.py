"""The broadcast operator: ``sio.to(room).except_(other).volatile.emit(...)`` and friends.

Every chaining method returns a new operator (nothing is shared or mutated, so an operator
can be kept and reused). ``emit`` never blocks: it encodes the packet once (text and binary
attachments) and the adapter hands the same encoded messages to every recipient. A packet
over the server's ``max_emit_bytes`` raises
:class:`~pyserver.socketio.packets.PacketTooLarge` (a ``ValueError``) and goes to nobody.
``await op.emit_with_ack(...)`` asks each recipient for an answer (one ack id per recipient,
so each is encoded for its recipient) and returns the list of replies.

An operator reaches its namespace through :class:`BroadcastNamespace`, what a broadcast needs
of it (the :class:`~pyserver.trio.socketio.namespace.Namespace` satisfies it), so this module
imports neither the namespace nor the socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import trio

from pyserver.trio.socketio.adapter import (
    Adapter,
    AdapterServer,
    BroadcastOptions,
    LocalSocket,
    RemoteSocket,
    RequestTimeout,
)
from pyserver.trio.socketio.adapter_base import EncodeEvent

if TYPE_CHECKING:
    from pyserver.socketio.recovery import RecoveryStore

__all__ = ["BroadcastNamespace", "BroadcastOperator", "notify_outgoing"]


class BroadcastNamespace(Protocol):
    """What a broadcast needs of its namespace."""

    @property
    def name(self) -> str: ...

    @property
    def server(self) -> AdapterServer: ...

    @property
    def adapter(self) -> Adapter: ...

    @property
    def encode_event(self) -> EncodeEvent:
        """The server's parser's ``encode_event``."""
        ...

    @property
    def recovery(self) -> RecoveryStore | None:
        """Connection state recovery's store, None when it is off."""
        ...

    def encode_kept(
        self,
        event: str,
        args: Sequence[Any],
        rooms: frozenset[str],
        except_rooms: frozenset[str],
    ) -> tuple[list[str | bytes], list[Any]]:
        """With recovery on: encode ``event(*args)`` with its offset, and keep it."""
        ...


def _names(rooms: str | Iterable[str]) -> frozenset[str]:
    return frozenset((rooms,)) if isinstance(rooms, str) else frozenset(rooms)


class BroadcastOperator:
    """Who a broadcast goes to (rooms, exceptions) and how (volatile, local, compress,
    timeout). Made by ``Namespace.to/in_/except_/...`` and ``Socket.to/broadcast/...``."""

    __slots__ = ("nsp", "opts")

    def __init__(self, nsp: BroadcastNamespace, opts: BroadcastOptions | None = None) -> None:
        self.nsp = nsp
        self.opts = opts if opts is not None else BroadcastOptions()

    def _with(self, **changes: Any) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, replace(self.opts, **changes))

    # -- chaining --------------------------------------------------------------------------

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Also send to ``room`` (one name or several): recipients are the union of rooms."""
        return self._with(rooms=self.opts.rooms | _names(room))

    in_ = to

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Leave out the sockets in ``room`` (a socket id excludes that socket)."""
        return self._with(except_rooms=self.opts.except_rooms | _names(room))

    @property
    def volatile(self) -> BroadcastOperator:
        """Drop the packet for a recipient whose outbox is not empty, instead of queueing."""
        return self._with(volatile=True)

    @property
    def local(self) -> BroadcastOperator:
        """Only the sockets of this node (multi-node adapters)."""
        return self._with(local=True)

    def compress(self, compress: bool) -> BroadcastOperator:
        return self._with(compress=compress)

    def timeout(self, seconds: float) -> BroadcastOperator:
        """The deadline for :meth:`emit_with_ack` replies."""
        return self._with(timeout=seconds)

    # -- acting ----------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> int:
        """Send ``event(*args)`` to every selected socket. Never blocks. Returns how many
        local sockets it was queued for (volatile drops not counted). With connection state
        recovery on, a packet that is not volatile is kept, its offset added at its end.
        Raises :class:`~pyserver.socketio.packets.PacketTooLarge` (nothing sent, nothing
        kept) for a packet over the server's ``max_emit_bytes``."""
        nsp = self.nsp
        opts = self.opts
        adapter = nsp.adapter
        if nsp.recovery is not None and not opts.volatile:
            parts, sent = nsp.encode_kept(event, args, opts.rooms, opts.except_rooms)
            count = adapter.broadcast(parts, opts, (event, *sent))
            if adapter.outgoing_watchers:
                notify_outgoing(adapter, opts, event, sent)
            if adapter.counters.watch is not None:
                adapter.counters.watch("out", nsp.name, None, event, count)
            return count
        parts = nsp.encode_event(
            nsp.name, event, args, max_bytes=nsp.server.session_config.max_emit_bytes
        )
        count = adapter.broadcast(parts, opts, (event, *args))
        if adapter.outgoing_watchers:  # (one attribute test while no socket listens)
            notify_outgoing(adapter, opts, event, args)
        watch = adapter.counters.watch
        if watch is not None:
            watch("out", nsp.name, None, event, count)
        return count

    def send(self, *args: Any) -> int:
        """``emit("message", *args)``."""
        return self.emit("message", *args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send ``event(*args)`` asking every selected socket (on every node) for an answer;
        return the replies (in arrival order; each as :meth:`Socket.emit_with_ack` returns
        it). Raises :class:`~pyserver.trio.socketio.adapter.RequestTimeout` (a ``TimeoutError``,
        with the replies that did arrive) if a socket did not answer within ``timeout(...)`` (or
        left before answering), or a node did not report how many sockets it asked.
        Without a timeout a single node waits until each socket has answered or left; a
        cluster adapter bounds the wait (its ``default_ack_timeout``)."""
        adapter = self.nsp.adapter
        opts = self.opts
        if opts.timeout is None and adapter.default_ack_timeout is not None:
            opts = replace(opts, timeout=adapter.default_ack_timeout)
        acks = _AckCollector()
        await adapter.broadcast_with_ack(event, args, opts, acks)
        acks.check()
        timeout = opts.timeout
        with trio.move_on_after(timeout + 1.0 if timeout is not None else float("inf")):
            await acks.done.wait()
        if not acks.complete():
            raise RequestTimeout(
                f"operation has timed out: {len(acks.replies)} replies of "
                f"{acks.expected} from {acks.nodes_counted} of {acks.nodes} nodes "
                f"for {event!r}",
                acks.replies,
            )
        return acks.replies

    async def fetch_sockets(self) -> list[LocalSocket | RemoteSocket]:
        """The selected sockets, on every node (other nodes' as
        :class:`~pyserver.trio.socketio.adapter.RemoteSocket`)."""
        return await self.nsp.adapter.fetch_sockets(self.opts)

    def sockets_join(self, room: str | Iterable[str]) -> None:
        """Make the selected sockets join ``room`` (one or several)."""
        self.nsp.adapter.add_sockets(self.opts, _names(room))

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``room`` (one or several)."""
        self.nsp.adapter.del_sockets(self.opts, _names(room))

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets ("server namespace disconnect"); ``close`` closes
        their whole connection (every namespace)."""
        self.nsp.adapter.disconnect_sockets(self.opts, close)

    async def server_side_emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Ask the other nodes' server-side handlers (``timeout(...)`` bounds the wait)."""
        return await self.nsp.adapter.server_side_emit_with_ack(event, args, self.opts.timeout)

    def __repr__(self) -> str:
        return f"<BroadcastOperator {self.nsp.name} {self.opts}>"


def notify_outgoing(
    adapter: Adapter, opts: BroadcastOptions, event: str, args: Sequence[Any]
) -> None:
    """Tell the outgoing listeners of this node's recipients of a broadcast (made here, or
    another node's as the cluster adapters deliver it: call it only while
    ``adapter.outgoing_watchers``)."""
    sockets = adapter.sockets
    for sid in adapter.sids(opts):
        socket = sockets.get(sid)
        if socket is not None:
            socket.notify_outgoing(event, args)


class _AckCollector:
    """Counts a broadcast with acks to completion: every node has reported how many
    sockets it asked, and that many answers arrived (replies, or sockets gone: those
    make it fail)."""

    __slots__ = ("answered", "done", "expected", "missing", "nodes", "nodes_counted", "replies")

    def __init__(self) -> None:
        self.nodes = 1
        self.nodes_counted = 0
        self.expected = 0
        self.answered = 0
        self.missing = 0
        self.replies: list[Any] = []
        self.done = trio.Event()

    def expect_nodes(self, nodes: int) -> None:
        self.nodes = nodes
        self.check()

    def client_count(self, count: int) -> None:
        self.nodes_counted += 1
        self.expected += count
        self.check()

    def reply(self, value: Any) -> None:
        self.replies.append(value)
        self.answered += 1
        self.check()

    def gone(self) -> None:
        self.missing += 1
        self.answered += 1
        self.check()

    def complete(self) -> bool:
        return (
            self.nodes_counted >= self.nodes and self.answered >= self.expected and not self.missing
        )

    def check(self) -> None:
        if self.missing or (self.nodes_counted >= self.nodes and self.answered >= self.expected):
            self.done.set()
