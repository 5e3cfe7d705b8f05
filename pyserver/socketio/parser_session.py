"""A :class:`~pyserver.socketio.session.Session` that speaks a chosen parser (sans-IO).

The session's rules are :class:`~pyserver.socketio.session.Session`'s, unchanged: this
subclass only decodes with the parser's decoder and encodes what it returns with the
parser's encoders (:mod:`pyserver.socketio.parsers`). The built-in JSON parser keeps using
``Session`` itself, so its path has no indirection at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyserver.socketio.packets import MAX_ACK_ID, Sid
from pyserver.socketio.parsers import JSONParser, Parser
from pyserver.socketio.session import NamespaceLeft, Session, SessionConfig

__all__ = ["ParserSession", "make_parser"]


def make_parser(parser: str | Parser = "json", json: Any = None) -> Parser | None:
    """The parser ``Server(parser=..., json=...)`` asks for; None for the built-in JSON one
    (the default, and the fast path)."""
    if json is not None:
        if parser != "json":
            raise ValueError(
                "json= is the codec of the JSON parser: not with parser=" + repr(parser)
            )
        return JSONParser(json)
    if parser == "json":
        return None
    if parser == "msgpack":
        try:
            from pyserver.socketio.msgpack_parser import MsgpackParser
        except ImportError as exc:
            raise ImportError(
                "parser='msgpack' needs the msgpack package: pip install 'pyserver[msgpack]'"
            ) from exc
        return MsgpackParser()
    if isinstance(parser, str):
        raise ValueError(f"unknown parser {parser!r}: 'json', 'msgpack' or a Parser object")
    return parser


class ParserSession(Session):
    """The Socket.IO state of one connection whose client speaks ``parser``."""

    __slots__ = ("parser",)

    def __init__(self, config: SessionConfig, now: float, parser: Parser) -> None:
        super().__init__(config, now)
        self.parser = parser
        self._decoder = parser.decoder(  # type: ignore[assignment]
            config.max_attachments, config.max_attachment_bytes
        )

    def accept_namespace(self, namespace: str, sid: Sid, pid: str | None = None) -> Any:
        super().accept_namespace(namespace, sid, pid)  # (the state; its JSON text unused)
        return self.parser.encode_connect(namespace, sid, pid)

    def refuse_namespace(self, namespace: str, message: str, data: Any = None) -> Any:
        self._take_request(namespace)
        return self.parser.encode_connect_error(namespace, message, data)

    def disconnect_namespace(self, namespace: str) -> tuple[Any, NamespaceLeft]:
        _, left = super().disconnect_namespace(namespace)
        return self.parser.encode_disconnect(namespace), left

    def send_event(self, namespace: str, event: str, args: Sequence[Any] = ()) -> list[str | bytes]:
        self._sid_in(namespace)
        return self.parser.encode_event(
            namespace, event, args, max_bytes=self.config.max_emit_bytes
        )

    def send_event_with_ack(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any] = (),
        *,
        now: float,
        timeout: float | None = None,
    ) -> tuple[int, list[str | bytes]]:
        self._sid_in(namespace)
        ack_id = self._next_ack_id  # the id the session gives next (encoded first: a packet
        # that cannot be encoded leaves no pending ack behind)
        assert 0 <= ack_id <= MAX_ACK_ID
        messages = self.parser.encode_event(
            namespace, event, args, ack_id, max_bytes=self.config.max_emit_bytes
        )
        given, _ = super().send_event_with_ack(namespace, event, (), now=now, timeout=timeout)
        assert given == ack_id
        return ack_id, messages

    def send_ack(self, namespace: str, ack_id: int, args: Sequence[Any] = ()) -> list[str | bytes]:
        self._sid_in(namespace)
        return self.parser.encode_ack(namespace, ack_id, args, max_bytes=self.config.max_emit_bytes)
