"""One Engine.IO session as the layer above sees it, and the broadcast path.

An :class:`EngineSession` (``session.sid`` is an :data:`EioSid`; ``session.request`` is the
opening request; ``session.data`` is a dict free for the next layer) has:

* ``send(data)``: queue one message, ``str`` (text) or ``bytes`` (binary). Never blocks. On
  WebSocket it goes straight to the connection's bounded outbox; on polling to the session's
  bounded queue (past ``max_queued_packets``/``max_queued_bytes`` the session closes with
  "transport error": a slow consumer never grows memory without limit).
* ``send_encoded(OutgoingMessage(data))``: the broadcast path. Build one
  :class:`OutgoingMessage` per broadcast; every WebSocket recipient gets the same frame bytes
  (``_frames.encode_message`` called once), every polling recipient the same packet.
  ``eio.broadcast(data, sessions)`` does exactly that.
* ``close(reason=CloseReason.FORCED_CLOSE)``: end the session from the server side;
  ``on_disconnect`` gets ``reason``. "forced close" (the default, the reference server's
  ``socket.close()``) flushes queued packets first (on polling they leave with the next GET,
  then the session ends); another reason, such as "parse error" for a client that broke the
  protocol of the layer above, ends it at once (what is queued and a ``1`` still go to the
  WebSocket writer or a waiting GET). A no-op once closed.
* ``outbox_depth``: how many messages are queued and not yet on their way (packets waiting
  for a GET on polling, frames waiting for the writer on WebSocket); read-only, for
  monitoring. ``writable``: open and nothing queued, so a message sent now is the next one
  out (a volatile send checks it and drops the message otherwise).
* ``closed``; ``await wait_closed()``; ``transport`` ("polling" or "websocket").

``eio.sessions`` maps each open sid to its session.

A session reaches its server through :class:`SessionOwner` (what it needs of the session
table: ``_process``, the ``on_message`` callback, the payload limit), so this module imports
nothing else of the package: the server builds sessions, sessions never build the server.
``EngineSession._receive_ws`` is the WebSocket hot path (one call per message, no task
switch); it stays a plain method here, calling the server's ``on_message`` directly.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import trio

from pyserver import _frames
from pyserver.engineio.packets import Packet, PacketType, encode_packet
from pyserver.engineio.session import (
    CloseReason,
    EioSid,
    Event,
    Session,
    SessionConfig,
    SessionState,
    Transport,
)
from pyserver.errors import ConnectionClosed
from pyserver.http import Request, WebSocket
from pyserver.metrics import EngineCounters
from pyserver.trio.websocket.connection import DeflateWebSocket, send_frames_to_many
from pyserver.trio.websocket.connection import WebSocket as TrioWebSocket
from pyserver.trio.websocket.inline import Work

__all__ = [
    "ConnectHandler",
    "DisconnectHandler",
    "EngineSession",
    "MessageHandler",
    "OutgoingMessage",
    "PlainMessage",
    "PlainPacket",
    "SessionOwner",
    "send_encoded_many",
]

ConnectHandler = Callable[["EngineSession"], None]
MessageHandler = Callable[["EngineSession", str | bytes], Work | None]
"""``on_message(session, data)``: may return work to run for that message (an async function
without arguments, :mod:`pyserver.trio.websocket.inline`), which Engine.IO runs: over
WebSocket, in the task that read the message right after its batch; over long-polling, in a
task of its own (the server's nursery)."""
DisconnectHandler = Callable[["EngineSession", CloseReason], None]


class SessionOwner(Protocol):
    """What a session needs of its server (:class:`~pyserver.trio.engineio.table.SessionTable`):
    to hand it the core's events, the message callback, and the payload limit."""

    config: SessionConfig
    counters: EngineCounters
    on_message: MessageHandler | None
    _ws_char_limit: int

    def _process(self, session: EngineSession, events: Sequence[Event]) -> None: ...

    def _callback_failed(self, session: EngineSession, name: str) -> None: ...


class PlainPacket(Packet):
    """A message packet sent with ``compress=False`` (Socket.IO's ``compress(False)``): a
    long-polling answer made of such packets only is not gzipped, as Node's polling
    transport compresses an answer when any of its packets wants it."""

    __slots__ = ()


class OutgoingMessage:
    """One message encoded once for many sessions (the broadcast path).

    ``packet`` serves polling sessions; :meth:`frame` is the whole WebSocket frame, built on
    first use and shared by every WebSocket session; :meth:`deflated` the compressed frame
    for the permessage-deflate peers of one setting, built at most once per setting (and
    never for a :class:`PlainMessage`: those peers get :meth:`frame`)."""

    __slots__ = ("_deflated", "_frame", "packet", "wire")

    #: False for a :class:`PlainMessage` (sent with ``compress=False``).
    compress = True
    _deflated: dict[tuple[int, int, int], bytes]  # by deflate_key, made on first use

    def __init__(self, data: str | bytes) -> None:
        self.packet = Packet(PacketType.MESSAGE, data)
        self.wire: str | bytes = encode_packet(self.packet)
        self._frame: bytes | None = None
        # (_deflated is set on first use: a broadcast nobody compresses never touches it)

    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = _frames.encode_message(self.wire)
        return self._frame

    def frame_for(self, ws: WebSocket) -> bytes:
        """The frame for ``ws``: :meth:`deflated` for a permessage-deflate peer."""
        if isinstance(ws, DeflateWebSocket) and ws.deflate_key is not None:
            return self.deflated(ws.deflate_key)
        return self.frame()

    def deflated(self, key: tuple[int, int, int]) -> bytes:
        """The frame for peers whose ``DeflateWebSocket.deflate_key`` is ``key`` (window
        bits, level, threshold): compressed from the threshold on, else :meth:`frame`."""
        wire = self.wire
        if not self.compress or (len(wire) < key[2] and _under(wire, key[2])):
            return self.frame()
        try:
            made = self._deflated
        except AttributeError:
            made = self._deflated = {}
        frame = made.get(key)
        if frame is None:
            frame = made[key] = _frames.encode_message(
                self.wire, deflate_window_bits=key[0], compression_level=key[1]
            )
        return frame


def _under(wire: str | bytes, threshold: int) -> bool:
    """``wire`` is under ``threshold`` in bytes (its text as UTF-8, as the encoder of a
    socket's own messages counts it); called only when its length is under it, so the text
    is encoded only when it is short and not ASCII."""
    return isinstance(wire, bytes) or wire.isascii() or len(wire.encode()) < threshold


class PlainMessage(OutgoingMessage):
    """A message sent with ``compress=False``: never compressed on WebSocket, and a
    :class:`PlainPacket` over long-polling."""

    __slots__ = ()
    compress = False

    def __init__(self, data: str | bytes) -> None:
        self.packet = PlainPacket(PacketType.MESSAGE, data)
        self.wire = encode_packet(self.packet)
        self._frame = None


def send_encoded_many(
    messages: Sequence[OutgoingMessage], sessions: Iterable[EngineSession]
) -> None:
    """Queue ``messages`` (in order: a packet and its attachments) for every session: the
    broadcast path, the same as ``session.send_encoded(m)`` for each session and message,
    with the frames built once and the WebSocket recipients' direct writes made in one
    call (``send_frames_to_many``)."""
    sockets: list[TrioWebSocket] = []
    others: list[WebSocket] = []
    for session in sessions:
        ws = session._ws
        if ws is None:
            counters = session._counters
            for message in messages:
                counters.packets_out += 1
                counters.bytes_out += len(message.packet.data)
                session._server._process(session, session.core.send_packet(message.packet))
        elif ws.__class__ is TrioWebSocket:
            sockets.append(ws)
        else:
            others.append(ws)
    if sockets or others:
        # counted once for every WebSocket recipient (all of one server: the last session's)
        counters = session._counters
        count = len(sockets) + len(others)
        counters.packets_out += count * len(messages)
        counters.bytes_out += count * sum([len(message.packet.data) for message in messages])
        if sockets:
            send_frames_to_many(sockets, [message.frame() for message in messages])
        if others:
            _send_to_others(messages, others)


def _send_to_others(messages: Sequence[OutgoingMessage], others: list[WebSocket]) -> None:
    """The broadcast to the WebSockets that are not plain Trio ones: those that agreed on
    permessage-deflate (:class:`DeflateWebSocket`, grouped by setting: one compressed
    encoding and one fan-out per group) and any other kind (the plain frames)."""
    plain: list[bytes] | None = None
    groups: dict[tuple[int, int, int], tuple[list[bytes], list[DeflateWebSocket]]] = {}
    for ws in others:
        if isinstance(ws, DeflateWebSocket) and (key := ws.deflate_key) is not None:
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([message.deflated(key) for message in messages], [])
            group[1].append(ws)
            continue
        if plain is None:
            plain = [message.frame() for message in messages]
        ws.send_frames_nowait(plain)
    for frames, sockets in groups.values():
        send_frames_to_many(sockets, frames)


class EngineSession:
    """One Engine.IO session as the next layer sees it. Methods never block."""

    __slots__ = (
        "__weakref__",
        "_closed_event",
        "_counters",
        "_poll_wakeup",
        "_probe_scope",
        "_server",
        "_upgrade_waiter",
        "_ws",
        "_ws_close_code",
        "context",
        "core",
        "data",
        "request",
        "sid",
    )

    def __init__(self, server: SessionOwner, core: Session, request: Request) -> None:
        self._server = server
        self._counters = server.counters  # (the server's; bumped per message)
        self.core = core
        self.sid: EioSid = core.sid
        #: The request that opened the session (headers, query, remote address).
        self.request = request
        #: Free for the next layer (Socket.IO keeps its per-connection state here).
        self.data: dict[str, Any] = {}
        #: The session's ``contextvars`` context, a copy of the opening request's: every
        #: message callback and the work it returns run in it, over either transport and
        #: across the upgrade, so a ``ContextVar`` that a handler sets is seen by the later
        #: handlers of this session only (and one the serving code set, by all of them).
        self.context = contextvars.copy_context()
        self._ws: WebSocket | None = None  # set while the session runs on WebSocket
        self._ws_close_code = 1000  # what the WebSocket closes with when the session ends
        self._poll_wakeup: trio.Event | None = None
        self._upgrade_waiter: trio.Event | None = None
        self._probe_scope: trio.CancelScope | None = None
        self._closed_event: trio.Event | None = None

    @property
    def transport(self) -> Transport:
        return self.core.transport

    def _use_ws(self, ws: WebSocket) -> None:
        """The session runs on ``ws`` from now on (opened on it, or upgraded to it)."""
        self._ws = ws

    @property
    def closed(self) -> bool:
        return self.core.state is not SessionState.OPEN

    def send(self, data: str | bytes) -> None:
        """Queue one message (text or binary). Never blocks; dropped once closed."""
        counters = self._counters
        counters.packets_out += 1
        counters.bytes_out += len(data)
        ws = self._ws
        if ws is not None:
            try:
                ws.send_nowait("4" + data if data.__class__ is str else data)
            except ConnectionClosed:
                pass
            return
        self._server._process(self, self.core.send_message(data))

    def send_encoded(self, message: OutgoingMessage) -> None:
        """Queue a message encoded once for many recipients (see :class:`OutgoingMessage`)."""
        counters = self._counters
        counters.packets_out += 1
        counters.bytes_out += len(message.packet.data)
        ws = self._ws
        if ws is not None:
            try:
                ws.send_frame_nowait(message.frame_for(ws))
            except ConnectionClosed:
                pass
            return
        self._server._process(self, self.core.send_packet(message.packet))

    @property
    def outbox_depth(self) -> int:
        """Messages queued for this session and not yet on their way: packets waiting for a
        GET (polling) or frames waiting for the WebSocket writer. Read-only; never blocks."""
        ws = self._ws
        return self.core.queued + (ws.outbox_depth if ws is not None else 0)

    @property
    def writable(self) -> bool:
        """True while the session is open and nothing is queued for it, so a message sent
        now is the next one out (what a volatile emit checks before sending)."""
        return self.core.state is SessionState.OPEN and self.outbox_depth == 0

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE) -> None:
        """Close the session from this side; ``on_disconnect`` gets ``reason``.

        "forced close" (the default, what the reference server's ``socket.close()`` gives)
        flushes queued packets first: on polling they and a ``1`` leave with the next GET,
        and the session ends then. Any other reason (the next layer uses "parse error" for
        a client that broke its protocol) ends the session at once, after handing what is
        queued and a ``1`` to the WebSocket writer or to a waiting GET. A no-op once closed.
        """
        self._server._process(self, self.core.close(reason, trio.current_time()))

    async def wait_closed(self) -> None:
        if self.core.state is SessionState.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    def _receive_ws(self, message: str | bytes) -> Work | None:
        """One WebSocket message (one packet), called by the WebSocket's reader. Message
        packets (the hot path) go straight to ``on_message``: they change no session state,
        so the core only sees the others."""
        core = self.core
        if core.state is not SessionState.OPEN:
            return None  # closing: what the client still sends is dropped
        server = self._server
        size = len(message)
        if size > server._ws_char_limit and too_big(message, server.config.max_payload):
            self._ws_close_code = 1009
            server._process(
                self, core.transport_closed(CloseReason.TRANSPORT_ERROR, "message too big")
            )
            return None
        if message.__class__ is str:
            if message[:1] != "4":  # not a message packet: the state machine decides
                server._process(self, core.receive_data(message, trio.current_time()))
                return None
            message = message[1:]
            size -= 1
        counters = self._counters
        counters.packets_in += 1
        counters.bytes_in += size
        on_message = server.on_message
        if on_message is not None:
            try:
                return on_message(self, message)  # (its work: the reader runs it)
            except Exception:
                server._callback_failed(self, "on_message")
        return None

    def __repr__(self) -> str:
        return f"<EngineSession {self.sid} {self.core.transport} {self.core.state.value}>"


def send_quietly(ws: WebSocket, message: str | bytes) -> bool:
    try:
        ws.send_nowait(message)
    except ConnectionClosed:
        return False
    return True


def too_big(message: str | bytes, limit: int) -> bool:
    if isinstance(message, str):
        return len(message) > limit or len(message.encode("utf-8", "surrogatepass")) > limit
    return len(message) > limit
