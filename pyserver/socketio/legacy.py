"""Socket.IO protocol v4, the one socket.io-client 2.x speaks (sans-IO): what differs from v5.

A connection over Engine.IO v3 (``Server(allow_eio3=True)``) gets a :class:`LegacySession`
(or :class:`LegacyParserSession` with ``Server(json=...)``) instead of a
:class:`~pyserver.socketio.session.Session`, chosen once when it opens: the v5 path has no
per-message branch for it. Events, acks, binary attachments and DISCONNECT are written the
same in v4 and v5, so what broadcasts encode once goes to both kinds of clients; only the
namespace handshake differs (socket.io-protocol v4, and the reference server's handling of
``conn.protocol === 3``):

* The client does not ask for the main namespace: the server joins it to ``"/"`` as soon
  as the connection opens (:meth:`LegacySession.join_main`, which the shell answers as any
  CONNECT: middleware, then accept or refuse), with an empty ``auth``.
* Another namespace is asked for with ``0/nsp?query,``: no payload; the query string is the
  ``auth`` the server's middleware sees (as the reference server does), ``{"token": "x"}``
  for ``0/admin?token=x,``.
* Accepting answers ``0`` (``"/"``) or ``0/nsp,``: no sid in the payload. The client makes
  its socket's id itself (the Engine.IO sid, ``/nsp#<sid>`` on another namespace), so the
  server gives the socket that id (:func:`legacy_socket_id`).
* Refusing answers an ERROR packet ``4`` with the refusal's ``data`` when it has one, else
  its message, as a JSON value: ``4/admin,"not authorized"``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from pyserver.socketio.packets import PacketType, Sid, encode_header
from pyserver.socketio.parser_session import ParserSession
from pyserver.socketio.parsers import JSONParser, Parser
from pyserver.socketio.session import (
    NamespaceConnectRequested,
    ProtocolViolation,
    Session,
    SessionConfig,
    SessionEvent,
    SessionState,
)

__all__ = [
    "LegacyParserSession",
    "LegacyProtocol",
    "LegacySession",
    "connect_query",
    "encode_legacy_connect",
    "encode_legacy_error",
    "legacy_allowed",
    "legacy_session",
    "legacy_socket_id",
]


def connect_query(text: str) -> tuple[str, dict[str, Any]] | None:
    """A v4 CONNECT (``0``, ``0/nsp,``, ``0/nsp?a=1&b=2,``) as ``(namespace, query)``, a
    key given twice as a list of its values (as Node's ``url.parse``); None when it is not
    one."""
    if text[:1] != "0":
        return None
    rest = text[1:]
    if not rest:
        return "/", {}
    if rest[0] != "/":
        return None
    head, _, tail = rest.partition(",")
    if tail:
        return None  # (v4 CONNECT has no payload)
    namespace, _, query = head.partition("?")
    values: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in values:
            old = values[key]
            values[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            values[key] = value
    return namespace, values


def legacy_socket_id(namespace: str, eio_sid: str) -> Sid:
    """The id of a v4 client's socket: the one the client computes itself (socket.io-client
    2.x's ``socket.id``, which it never hears from the server), as the reference server
    gives it: the Engine.IO sid on ``"/"``, ``<namespace>#<sid>`` elsewhere. So an id the
    client tells others (for ``to(id)``) names it on the server too."""
    return Sid(eio_sid if namespace == "/" else f"{namespace}#{eio_sid}")


def encode_legacy_connect(namespace: str) -> str:
    """The v4 CONNECT that admits the client to ``namespace``."""
    return encode_header(PacketType.CONNECT, namespace, None, 0)


def encode_legacy_error(namespace: str, message: str, data: Any = None) -> str:
    """The v4 ERROR refusing ``namespace``: ``data`` if given (and JSON), else ``message``."""
    payload = message if data is None else data
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = json.dumps(message, ensure_ascii=False)
    return encode_header(PacketType.CONNECT_ERROR, namespace, None, 0) + text


class LegacyProtocol(Session):
    """The v4 namespace handshake over a session's rules (module docstring)."""

    __slots__ = ()

    def join_main(self) -> NamespaceConnectRequested:
        """The server's own CONNECT to ``"/"`` when the connection opens: answer it with
        ``accept_namespace`` or ``refuse_namespace`` as any other."""
        self._requested.add("/")
        return NamespaceConnectRequested("/", None)

    def receive_message(self, data: str | bytes) -> SessionEvent | None:
        if data.__class__ is not str or data[:1] != "0" or self.state is SessionState.CLOSED:
            return super().receive_message(data)
        assert isinstance(data, str)
        found = connect_query(data)
        if found is None:
            self._close()
            return ProtocolViolation("malformed CONNECT packet")
        namespace, query = found
        if namespace in self._sockets or namespace in self._requested:
            return None
        self._requested.add(namespace)
        return NamespaceConnectRequested(namespace, query)

    def accept_namespace(self, namespace: str, sid: Sid, pid: str | None = None) -> Any:
        super().accept_namespace(namespace, sid, None)  # (the state; its v5 answer unused)
        return encode_legacy_connect(namespace)

    def refuse_namespace(self, namespace: str, message: str, data: Any = None) -> Any:
        self._take_request(namespace)
        return encode_legacy_error(namespace, message, data)


def legacy_allowed(allow_eio3: bool, parser: Parser | None) -> bool:
    """``Server(allow_eio3=...)`` checked against the server's parser: v4 clients are served
    with the JSON parsers only (the built-in one, or ``json=``'s); ValueError otherwise."""
    if allow_eio3 and parser is not None and not isinstance(parser, JSONParser):
        raise ValueError(
            "allow_eio3 serves socket.io-client 2.x with the JSON parser (the default or "
            f"json=), not with parser={parser.name!r}"
        )
    return allow_eio3


def legacy_session(config: SessionConfig, now: float, parser: Parser | None) -> LegacyProtocol:
    """The v4 session of a connection, for the server's ``parser`` (None: built-in JSON)."""
    if parser is None:
        return LegacySession(config, now)
    return LegacyParserSession(config, now, parser)


class LegacySession(LegacyProtocol):
    """The Socket.IO v4 state of one connection with the built-in JSON parser."""

    __slots__ = ()


class LegacyParserSession(LegacyProtocol, ParserSession):
    """The Socket.IO v4 state of one connection with ``Server(json=...)``'s parser (events
    and acks encoded with it; the namespace handshake as v4 writes it)."""

    __slots__ = ()
