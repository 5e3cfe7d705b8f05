"""The HTTP answers of the Engine.IO polling transport (sans-IO: plain functions and data).

* Errors as the reference server writes them: status 400 (403 for Forbidden) and the JSON
  ``{"code": N, "message": "..."}``; codes 0 Transport unknown, 1 Session ID unknown, 2 Bad
  handshake method, 3 Bad request, 4 Forbidden, 5 Unsupported protocol version.
* CORS as the Node ``cors`` package answers (the reference server's middleware).
* Response compression: gzip or deflate (zlib format, as Node's ``createDeflate``) chosen from
  ``Accept-Encoding``, above a threshold the caller applies (the reference's 1024 bytes).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence

from pyserver.http import Request, Response

__all__ = [
    "BAD_HANDSHAKE_METHOD",
    "BAD_REQUEST",
    "ERROR_MESSAGES",
    "FORBIDDEN",
    "UNKNOWN_SID",
    "UNKNOWN_TRANSPORT",
    "UNSUPPORTED",
    "Cors",
    "OriginSpec",
    "compress",
    "error_response",
    "pick_encoding",
]

# Error codes and messages of the reference server (engine.io Server.errors).
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_HANDSHAKE_METHOD, BAD_REQUEST, FORBIDDEN, UNSUPPORTED = range(6)
ERROR_MESSAGES = (
    "Transport unknown",
    "Session ID unknown",
    "Bad handshake method",
    "Bad request",
    "Forbidden",
    "Unsupported protocol version",
)

OriginSpec = str | Sequence[str] | Callable[[str], bool] | None
"""``"*"`` (any origin), one origin, a list of origins, a predicate, or None (no CORS)."""


class Cors:
    """CORS answers as the Node ``cors`` package gives them (the reference server's choice).

    Simple requests get ``Access-Control-Allow-Origin`` (``*``, or the request's origin when
    it is allowed, with ``Vary: Origin``) and ``Access-Control-Allow-Credentials: true`` when
    enabled. A preflight (any OPTIONS) is answered 204 with ``Access-Control-Allow-Methods``
    and ``Access-Control-Allow-Headers`` reflecting ``Access-Control-Request-Headers``.

    ``"*"`` with credentials is refused (``ValueError``): reflecting every Origin with
    ``Access-Control-Allow-Credentials: true`` would let any site read a user's session;
    Node's ``cors`` answers ``*`` there, which browsers refuse with credentials. Name the
    origins (a list or a predicate) instead."""

    METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"

    def __init__(self, origins: OriginSpec, *, credentials: bool = False) -> None:
        if credentials and origins == "*":
            raise ValueError(
                'cors_allowed_origins="*" cannot be combined with cors_credentials=True: it '
                "would let every site make credentialed requests; list the allowed origins "
                "(or give a predicate) instead"
            )
        self.origins = origins
        self.credentials = credentials

    def _allow_origin(self, origin: str | None) -> tuple[str | None, bool]:
        """(the Access-Control-Allow-Origin value or None, whether it varies by Origin)."""
        origins = self.origins
        if origins == "*":
            return "*", False
        if isinstance(origins, str):
            return origins, True
        if callable(origins):
            return (origin if origin and origins(origin) else None), True
        if origins is None:
            return None, False
        return (origin if origin in origins else None), True

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` is one of the allowed origins (for WebSocket upgrades, which
        CORS headers do not govern)."""
        origins = self.origins
        if origins is None:
            return False
        if isinstance(origins, str):
            return origins == "*" or origin.rstrip("/").lower() == origins.rstrip("/").lower()
        if callable(origins):
            return bool(origins(origin))
        return origin in origins

    def headers(self, request: Request, *, preflight: bool = False) -> list[tuple[str, str]]:
        allowed, vary_origin = self._allow_origin(request.headers.get("origin"))
        headers: list[tuple[str, str]] = []
        vary: list[str] = ["Origin"] if vary_origin else []
        if allowed is not None:
            headers.append(("Access-Control-Allow-Origin", allowed))
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if preflight:
            headers.append(("Access-Control-Allow-Methods", self.METHODS))
            requested = request.headers.get("access-control-request-headers")
            if requested:
                headers.append(("Access-Control-Allow-Headers", requested))
                vary.append("Access-Control-Request-Headers")
            headers.append(("Content-Length", "0"))
        if vary:
            headers.append(("Vary", ", ".join(vary)))
        return headers


def error_response(code: int, cors: list[tuple[str, str]]) -> Response:
    body = json.dumps({"code": code, "message": ERROR_MESSAGES[code]}, separators=(",", ":"))
    status = 403 if code == FORBIDDEN else 400
    return Response(status, [*cors, ("Content-Type", "application/json")], body.encode())


def pick_encoding(accept_encoding: str) -> str | None:
    """gzip or deflate from an Accept-Encoding header (highest q wins, gzip on ties)."""
    best: tuple[float, int, str] | None = None
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        candidates = ("gzip", "deflate") if name == "*" else (name,)
        for rank, candidate in enumerate(("gzip", "deflate")):
            if candidate in candidates and q > 0:
                key = (q, -rank, candidate)
                if best is None or key > best:
                    best = key
    return best[2] if best else None


def compress(body: bytes, accept_encoding: str, level: int = -1) -> tuple[bytes, str | None]:
    """``body`` compressed at zlib ``level`` (0-9, -1 zlib's default) with the client's
    preferred of gzip/deflate, and that name (or the body unchanged and None)."""
    encoding = pick_encoding(accept_encoding)
    if encoding == "gzip":
        compressor = zlib.compressobj(level, wbits=31)
        return compressor.compress(body) + compressor.flush(), encoding
    if encoding == "deflate":
        return zlib.compress(body, level), encoding
    return body, None
