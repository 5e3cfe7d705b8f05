"""``socket.handshake``: what the client sent when it connected."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Handshake", "make_handshake"]


@dataclass(slots=True)
class Handshake:
    """What the client sent when it connected (the Node server's ``socket.handshake``)."""

    headers: dict[str, str]
    query: dict[str, str]
    auth: dict[str, Any]
    address: str
    time: str
    issued: int
    """Milliseconds since the epoch."""
    url: str
    xdomain: bool = False
    secure: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def make_handshake(request: Any, auth: dict[str, Any] | None, when: float) -> Handshake:
    """The handshake of a socket from the Engine.IO session's opening request."""
    headers = {name: value for name, value in request.headers.items()}
    query_string = request.query_string
    issued = int(when * 1000)
    return Handshake(
        headers=headers,
        query=request.query,
        auth=auth if auth is not None else {},
        address=request.remote_address[0],
        time=time.strftime("%a %b %d %Y %H:%M:%S GMT%z", time.localtime(issued / 1000)),
        issued=issued,
        url=request.path + ("?" + query_string if query_string else ""),
        xdomain="origin" in headers,
        secure=False,
    )
