"""``socket.handshake``: what the client sent when it connected."""

from __future__ import annotations

import time as _time
from typing import Any

from pyserver.http import Request

__all__ = ["Handshake", "make_handshake"]


class Handshake:
    """What the client sent when it connected (the Node server's ``socket.handshake``):
    ``headers``, ``query``, ``auth``, ``address``, ``time``, ``issued`` (milliseconds since
    the epoch), ``url``, ``xdomain``, ``secure`` and ``extra`` (free for user state).

    Read from the opening request when first asked for: ``headers`` and ``query`` are built
    on first use and kept from then on (change them in place), the others are computed, so a
    socket whose handlers only read ``auth`` holds no copy of the request's headers."""

    __slots__ = ("_extra", "_headers", "_query", "_request", "auth", "issued", "secure")

    def __init__(self, request: Request, auth: dict[str, Any], issued: int) -> None:
        self._request = request
        self.auth = auth
        self.issued = issued
        self.secure = request.secure
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None
        self._extra: dict[str, Any] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = dict(self._request.headers.items())
        return self._headers

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = self._request.query
        return self._query

    @property
    def extra(self) -> dict[str, Any]:
        if self._extra is None:
            self._extra = {}
        return self._extra

    @property
    def address(self) -> str:
        return self._request.remote_address[0]

    @property
    def time(self) -> str:
        return _time.strftime("%a %b %d %Y %H:%M:%S GMT%z", _time.localtime(self.issued / 1000))

    @property
    def url(self) -> str:
        query_string = self._request.query_string
        return self._request.path + ("?" + query_string if query_string else "")

    @property
    def xdomain(self) -> bool:
        return "origin" in self._request.headers

    def __repr__(self) -> str:
        return f"<Handshake {self.url} from {self.address or '?'} at {self.time}>"


def make_handshake(request: Request, auth: dict[str, Any] | None, when: float) -> Handshake:
    """The handshake of a socket from the Engine.IO session's opening request (``when``:
    seconds since the epoch)."""
    return Handshake(request, auth if auth is not None else {}, int(when * 1000))
