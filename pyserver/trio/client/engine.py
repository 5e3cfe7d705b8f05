"""One Engine.IO v4 client connection on Trio: handshake, the upgrade from long-polling to
WebSocket, heartbeats, and one writer.

:meth:`EngineConnection.open` makes the handshake (over the first of ``transports``) and
returns once the server's OPEN packet is in; :meth:`EngineConnection.run` then runs, in a
nursery of its own, the reader (which hands every message packet to ``deliver``, the
Socket.IO layer, and answers pings), the writer (which sends what :meth:`send` queued, a
batch per write or per POST), the heartbeat watch and, from polling, the upgrade. It returns
nothing: it ends by raising :class:`~pyserver.socketio.client.ConnectionLost` with
Engine.IO's reason ("transport close", "transport error", "ping timeout", "parse error"),
or by being cancelled (the caller closes the connection with :meth:`close`).

Who writes: :meth:`EngineConnection.send` directly when nothing is queued or in flight (a
WebSocket over plain TCP), else the writer task, from the bounded outbox ``max_outbox``
messages deep (over it :meth:`send` raises
:class:`~pyserver.socketio.client.BufferFull`); the upgrade
holds the writer's lock while it switches transports, so no message goes out on the old
transport after ``5`` went out on the new one, and the reader's lock, so the last poll's
messages are delivered before anything read from the WebSocket.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

import trio

from pyserver import _frames
from pyserver.engineio.client import PROBE, PROBE_ANSWER, Heartbeat, OpenInfo, parse_open
from pyserver.engineio.packets import PacketError, decode_packet
from pyserver.errors import RemoteProtocolError
from pyserver.socketio.client import BufferFull, ConnectionLost
from pyserver.trio.client.http import HttpError, Origin
from pyserver.trio.client.transports import PollingTransport, TransportClosed, WebSocketTransport

__all__ = ["EngineConnection"]

logger = logging.getLogger("pyserver.client")

Transport = WebSocketTransport | PollingTransport


def lost(exc: BaseException) -> ConnectionLost:
    """The Engine.IO reason for a failure of the transport or of the peer."""
    if isinstance(exc, ConnectionLost):
        return exc
    if isinstance(exc, TransportClosed):
        reason = "transport close"
    elif isinstance(exc, _frames.FrameError | RemoteProtocolError):
        reason = "parse error"
    else:
        reason = "transport error"
    detail = str(exc) or type(exc).__name__
    error = ConnectionLost(reason, detail)
    error.__cause__ = exc
    return error


class EngineConnection:
    """One Engine.IO session as a client (module docstring)."""

    def __init__(
        self,
        origin: Origin,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        headers: Sequence[tuple[str, str]] = (),
        transports: Sequence[str] = ("polling", "websocket"),
        upgrade: bool = True,
        timeout: float = 20.0,
        max_message: int = 1_000_000,
        max_outbox: int = 10_000,
    ) -> None:
        if not transports or not set(transports) <= {"polling", "websocket"}:
            raise ValueError("transports must be 'polling' and/or 'websocket'")
        self.origin = origin
        self.path = path
        self.query = list(query)
        self.headers = list(headers)
        self.transports = tuple(transports)
        self.upgrade = upgrade
        self.timeout = timeout
        self.max_message = max_message
        self.max_outbox = max_outbox
        self.info: OpenInfo | None = None
        self.transport: Transport | None = None
        self.outbox: deque[str | bytes] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._send_lock = trio.Lock()
        self._recv_lock = trio.Lock()
        self._early: list[str | bytes] = []  # messages that came with the OPEN packet
        self._partial = b""  # what a direct write left, written by the writer first
        self._heartbeat: Heartbeat | None = None
        self.closed = False

    @property
    def transport_name(self) -> str | None:
        return None if self.transport is None else self.transport.name

    # -- opening -----------------------------------------------------------------------------

    async def open(self) -> OpenInfo:
        """The handshake; raises :class:`ConnectionLost` when it fails (bounded by
        ``timeout``)."""
        try:
            with trio.fail_after(self.timeout):
                return await self._handshake()
        except trio.TooSlowError:
            await self._abort()
            raise ConnectionLost("timeout", "no Engine.IO handshake answer") from None
        except (OSError, trio.BrokenResourceError, HttpError, RemoteProtocolError,
                TransportClosed, _frames.FrameError) as exc:  # fmt: skip
            await self._abort()
            raise lost(exc) from exc

    async def _handshake(self) -> OpenInfo:
        transport: Transport
        if self.transports[0] == "websocket":
            transport = await WebSocketTransport.open(
                self.origin, self.path, self.query, self.headers, None,
                max_message=self.max_message,
            )  # fmt: skip
        else:
            transport = PollingTransport(
                self.origin, self.path, self.query, self.headers, max_message=self.max_message
            )
        self.transport = transport
        messages = await transport.receive()
        first = messages[0]
        if type(first) is not str:
            raise PacketError("expected an OPEN packet, got binary data")
        info = parse_open(decode_packet(first))
        if isinstance(transport, PollingTransport):
            transport.sid = info.sid
        self._early = messages[1:]
        self.info = info
        self._heartbeat = Heartbeat(info, trio.current_time())
        return info

    async def _abort(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            await transport.aclose(graceful=False)

    # -- running -----------------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send one message (``"4..."`` text or a binary message); never blocks.

        Who writes (the one rule): when nothing is queued, no write is in flight and the
        transport is a WebSocket over plain TCP, the frame is written at once with one
        ``write(2)`` (no task switch); what the socket does not take, and everything else,
        goes to the outbox for the writer task, which writes it in order."""
        outbox = self.outbox
        if not outbox and not self._partial:
            transport = self.transport
            if type(transport) is WebSocketTransport and not self._send_lock.locked():
                data = transport.frames((message,))
                rest = transport.try_write(data)
                if rest is not data:
                    if rest:
                        self._partial = rest
                        self._lot.unpark_all()
                    return
        if len(outbox) >= self.max_outbox:
            raise BufferFull(f"{len(outbox)} messages wait to be written (max_outbox)")
        outbox.append(message)
        if len(outbox) == 1:
            self._lot.unpark_all()

    def send_many(self, messages: Sequence[str | bytes]) -> None:
        """:meth:`send` for a packet and its attachments, kept together."""
        outbox = self.outbox
        if not outbox and not self._partial:
            transport = self.transport
            if type(transport) is WebSocketTransport and not self._send_lock.locked():
                data = transport.frames(messages)
                rest = transport.try_write(data)
                if rest is not data:
                    if rest:
                        self._partial = rest
                        self._lot.unpark_all()
                    return
        if len(outbox) + len(messages) > self.max_outbox:
            raise BufferFull(f"{len(outbox)} messages wait to be written (max_outbox)")
        outbox.extend(messages)
        self._lot.unpark_all()

    async def run(self, deliver: Callable[[str | bytes], None]) -> None:
        """Run until the connection ends (raises :class:`ConnectionLost`) or is cancelled."""
        assert self.info is not None and self.transport is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, deliver)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._watch)
                if (
                    self.upgrade
                    and isinstance(self.transport, PollingTransport)
                    and "websocket" in self.transports
                    and "websocket" in self.info.upgrades
                ):
                    nursery.start_soon(self._upgrade)
        except BaseExceptionGroup as group:
            # the first task to fail decides; the others were cancelled by it
            failures = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
            if not failures:
                raise
            error = lost(failures[0])
            raise error from error.__cause__

    async def _reader(self, deliver: Callable[[str | bytes], None]) -> None:
        heartbeat = self._heartbeat
        assert heartbeat is not None
        messages, self._early = self._early, []
        lock = self._recv_lock
        while True:
            for message in messages:
                if type(message) is str:
                    head = message[:1]
                    if head == "4":
                        deliver(message[1:])
                    elif head == "2":
                        heartbeat.ping_received(trio.current_time())
                        self.send("3" + message[1:])
                    elif head == "1":
                        raise TransportClosed("the server closed the session")
                    elif head not in ("6", "3"):
                        raise PacketError(f"unexpected Engine.IO packet {message[:20]!r}")
                else:
                    deliver(message)
            transport = self.transport
            if type(transport) is WebSocketTransport:
                # no upgrade follows a WebSocket: no lock (its acquire is a schedule point)
                messages = await transport.receive()
                continue
            async with lock:  # polling: the upgrade takes this lock to switch transports
                transport = self.transport
                if transport is None:
                    raise TransportClosed("the connection was closed")
                messages = await transport.receive()

    async def _writer(self) -> None:
        outbox = self.outbox
        lot = self._lot
        lock = self._send_lock
        while True:
            if not outbox and not self._partial:
                await lot.park()
                continue
            async with lock:
                transport = self.transport
                assert transport is not None and self.info is not None
                if self._partial:  # the rest of a direct write goes first
                    assert isinstance(transport, WebSocketTransport)
                    partial, self._partial = self._partial, b""
                    await transport.write(partial)
                    if not outbox:
                        continue
                batch = list(outbox)
                outbox.clear()
                if isinstance(transport, PollingTransport):
                    for chunk in _chunks(batch, self.info.max_payload):
                        await transport.send(chunk)
                else:
                    await transport.send(batch)

    async def _watch(self) -> None:
        heartbeat = self._heartbeat
        assert heartbeat is not None
        while True:
            await trio.sleep_until(heartbeat.deadline)
            if heartbeat.expired(trio.current_time()):
                raise ConnectionLost("ping timeout", "no ping from the server in time")

    async def _upgrade(self) -> None:
        assert self.info is not None
        try:
            with trio.fail_after(self.timeout):
                ws = await WebSocketTransport.open(
                    self.origin, self.path, self.query, self.headers, self.info.sid,
                    max_message=self.max_message,
                )  # fmt: skip
                try:
                    await ws.send([PROBE])
                    answer = await ws.receive()
                    if answer != [PROBE_ANSWER]:
                        raise PacketError(f"unexpected answer to the probe: {answer[:1]!r}")
                except BaseException:
                    await ws.aclose(graceful=False)
                    raise
        except (trio.TooSlowError, OSError, trio.BrokenResourceError, HttpError,
                RemoteProtocolError, TransportClosed, _frames.FrameError) as exc:  # fmt: skip
            logger.info("upgrade to WebSocket failed, staying on polling: %s", exc)
            return
        async with self._send_lock, self._recv_lock:
            old = self.transport
            await ws.send(["5"])
            self.transport = ws
        if old is not None:
            await old.aclose()

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Say goodbye (a CLOSE packet after what is queued) and close the transport;
        bounded by one second, shielded."""
        if self.closed:
            return
        self.closed = True
        transport, self.transport = self.transport, None
        if transport is None:
            return
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1.0):
                try:
                    async with self._send_lock:
                        batch = [*self.outbox, "1"]
                        self.outbox.clear()
                        await transport.send(batch)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, HttpError,
                        TransportClosed):  # fmt: skip
                    pass
            await transport.aclose()


def _chunks(batch: list[str | bytes], max_payload: int) -> list[list[str | bytes]]:
    """Split a polling batch so that no POST is over the server's ``maxPayload`` (a rough
    size: characters plus 4/3 of binary bytes); one message alone is never split."""
    chunks: list[list[str | bytes]] = [[]]
    size = 0
    for message in batch:
        weight = len(message) * (4 if type(message) is bytes else 3) // 3 + 2
        if chunks[-1] and size + weight > max_payload:
            chunks.append([])
            size = 0
        chunks[-1].append(message)
        size += weight
    return chunks
