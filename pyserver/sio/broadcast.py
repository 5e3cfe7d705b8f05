"""The broadcast operator: ``sio.to(room).except_(other).volatile.emit(...)`` and friends.

Every chaining method returns a new operator (nothing is shared or mutated, so an operator
can be kept and reused). ``emit`` never blocks: it encodes the packet once (text and binary
attachments) and the adapter hands the same encoded messages to every recipient.
``await op.emit_with_ack(...)`` asks each recipient for an answer (one ack id per recipient,
so each is encoded for its recipient) and returns the list of replies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from pyserver.sio.adapter import BroadcastOptions
from pyserver.socketio.packets import Sid, encode_event

if TYPE_CHECKING:
    from pyserver.sio.namespace import Namespace
    from pyserver.sio.socket import Socket

__all__ = ["BroadcastOperator"]


def _names(rooms: str | Iterable[str]) -> frozenset[str]:
    return frozenset((rooms,)) if isinstance(rooms, str) else frozenset(rooms)


class BroadcastOperator:
    """Who a broadcast goes to (rooms, exceptions) and how (volatile, local, compress,
    timeout). Made by ``Namespace.to/in_/except_/...`` and ``Socket.to/broadcast/...``."""

    __slots__ = ("nsp", "opts")

    def __init__(self, nsp: Namespace, opts: BroadcastOptions | None = None) -> None:
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
        local sockets it was queued for (volatile drops not counted)."""
        parts = encode_event(self.nsp.name, event, args)
        return self.nsp.adapter.broadcast(parts, self.opts)

    def send(self, *args: Any) -> int:
        """``emit("message", *args)``."""
        return self.emit("message", *args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send ``event(*args)`` asking every selected socket for an answer; return the
        replies (in arrival order; each as :meth:`Socket.emit_with_ack` returns it). Raises
        ``TimeoutError`` if a socket did not answer within ``timeout(...)`` (or left before
        answering); without a timeout it waits until each has answered or left."""
        replies: list[Any] = []
        state = _AckCollector()
        done = trio.Event()

        def on_count(count: int) -> None:
            state.expected = count
            if count == 0:
                done.set()

        def on_reply(sid: Sid, reply: Any) -> None:
            replies.append(reply)
            state.answered += 1
            if state.answered >= state.expected:
                done.set()

        def on_gone(sid: Sid) -> None:
            state.missing += 1
            state.answered += 1
            if state.answered >= state.expected:
                done.set()

        self.nsp.adapter.broadcast_with_ack(event, args, self.opts, on_count, on_reply, on_gone)
        timeout = self.opts.timeout
        with trio.move_on_after(timeout + 1.0 if timeout is not None else float("inf")):
            await done.wait()
        if state.missing or state.answered < state.expected:
            raise TimeoutError(
                f"{state.expected - len(replies)} of {state.expected} sockets did not answer "
                f"{event!r} in time"
            )
        return replies

    async def fetch_sockets(self) -> list[Socket]:
        """The selected sockets."""
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

    def __repr__(self) -> str:
        return f"<BroadcastOperator {self.nsp.name} {self.opts}>"


class _AckCollector:
    __slots__ = ("answered", "expected", "missing")

    def __init__(self) -> None:
        self.expected = 0
        self.answered = 0
        self.missing = 0
