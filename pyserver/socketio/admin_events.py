"""The Socket.IO Admin UI's wire, sans-IO: what ``sio.instrument()`` sends and decides.

``@socket.io/admin-ui`` (0.5) is a page that connects to a server's admin namespace
(``/admin``) and draws what the server tells it there (Node's ``instrument(io)`` wrote the
contract; python-socketio's ``sio.instrument()`` speaks it too):

* ``session`` ``(sessionId)``: after a login with credentials; the UI logs in again with
  ``{"sessionId": ...}``.
* ``config`` ``({"supportedFeatures": [...]})``: :func:`supported_features`.
* ``all_sockets`` ``([SerializedSocket])`` once after connecting (development mode), then
  ``socket_connected`` ``(SerializedSocket, date)``, ``socket_updated`` ``({id, nsp,
  transport | data})``, ``socket_disconnected`` ``(nsp, id, reason, date)``, ``room_joined`` /
  ``room_left`` ``(nsp, room, id, date)``, ``event_received`` / ``event_sent`` ``(nsp, id,
  [event, *args], date)``; :func:`serialize_socket` is the SerializedSocket.
* ``server_stats`` every interval: :func:`server_stats`, with the aggregated events of
  :class:`EventBuffer`.

The UI sends the commands ``emit(nsp, filter, event, *args)``, ``join(nsp, room, filter)``,
``leave(nsp, room, filter)``, ``_disconnect(nsp, close, filter)`` (the filter a room or a
socket id, or nothing) unless the server is read-only.

Dates travel as JavaScript's ``Date.toJSON()`` writes them (``2026-11-26T13:30:54.255Z``):
:func:`iso_date` takes the caller's clock reading. Credentials are checked by
:func:`credentials_match` (plain ones in constant time, Node's ``{"type": "basic", ...}``
with bcrypt, which is slow on purpose: the Trio side runs it in a thread). A refusal's
message is ``"invalid credentials"`` (:data:`INVALID_CREDENTIALS`): the UI reopens its login
form on exactly that message.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "INVALID_CREDENTIALS",
    "EventBuffer",
    "check_auth_option",
    "credentials_match",
    "data_without_admin",
    "iso_date",
    "serialize_socket",
    "server_stats",
    "supported_features",
]

INVALID_CREDENTIALS = "invalid credentials"
"""The CONNECT_ERROR message of a refused login (Node's; the UI matches it)."""

ADMIN_KEY = "_admin"
"""Where a socket's ``data`` carries ``{clientId, transport}`` in development mode (Node's
place), so that another node's ``fetch_sockets`` sees them too."""


def supported_features(mode: str, read_only: bool) -> list[str]:
    """The ``config`` event's ``supportedFeatures``: the commands unless read-only, the
    aggregated stats always, every event in development mode (Node's order)."""
    features = [] if read_only else ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE"]
    if not read_only:
        features.append("MDISCONNECT")
    features.append("AGGREGATED_EVENTS")
    if mode == "development":
        features.append("ALL_EVENTS")
    return features


def iso_date(epoch: float) -> str:
    """``epoch`` (seconds) as JavaScript's ``Date.toJSON()``: UTC, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- credentials ----------------------------------------------------------------------------


def check_auth_option(auth: Any) -> None:
    """Refuse an ``auth`` option ``instrument`` cannot use (``ValueError``): it is False (no
    login), a dict of ``username`` and ``password``, Node's ``{"type": "basic",
    "username", "password": <bcrypt hash>}``, a list of those, or a callable."""
    if auth is False or callable(auth):
        return
    entries = auth if isinstance(auth, list) else [auth]
    if not entries:
        raise ValueError("instrument(auth=[]) lets nobody in: give credentials, or auth=False")
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("username"), str):
            raise ValueError(
                "instrument(auth=...) takes False, {'username': ..., 'password': ...}, "
                "{'type': 'basic', 'username': ..., 'password': <bcrypt hash>}, a list of "
                "them, or a function (auth is required: False lets anyone in)"
            )
        if entry.get("type") == "basic" and not str(entry.get("password", "")).startswith("$2"):
            raise ValueError("instrument(auth={'type': 'basic', ...}): password is a bcrypt hash")


def credentials_match(auth: Mapping[str, Any] | Sequence[Mapping[str, Any]], given: Any) -> bool:
    """Whether the client's ``given`` auth (``{"username", "password"}``) matches one entry
    of ``auth`` (see :func:`check_auth_option`; not False, not a callable). Blocks for a
    bcrypt check (about 0.1-0.3 s by design)."""
    if not isinstance(given, Mapping):
        return False
    username, password = given.get("username"), given.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return False
    entries = [auth] if isinstance(auth, Mapping) else list(auth)
    for entry in entries:
        if not hmac.compare_digest(username.encode(), str(entry["username"]).encode()):
            continue
        expected = str(entry.get("password", ""))
        if entry.get("type") == "basic":
            import bcrypt  # the "admin" extra; only Node's hashed form needs it

            try:
                return bool(bcrypt.checkpw(password.encode(), expected.encode()))
            except ValueError:  # a malformed hash
                return False
        return hmac.compare_digest(password.encode(), expected.encode())
    return False


# -- sockets --------------------------------------------------------------------------------


def data_without_admin(data: Any) -> Any:
    """``socket.data`` as the UI shows it: without the ``_admin`` entry, and ``None`` when
    JSON cannot carry it."""
    if isinstance(data, Mapping) and ADMIN_KEY in data:
        data = {key: value for key, value in data.items() if key != ADMIN_KEY}
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        return None
    return data


def client_address(headers: Mapping[str, str], address: str) -> str:
    """The client's address as the UI shows it: ``cf-connecting-ip``, else the first of
    ``x-forwarded-for``, else the peer's."""
    forwarded = headers.get("cf-connecting-ip") or headers.get("x-forwarded-for")
    return forwarded.split(",")[0].strip() if forwarded else address


def serialize_socket(
    sid: str,
    nsp: str,
    handshake: Mapping[str, Any],
    rooms: Iterable[str],
    data: Any,
    client_id: str | None = None,
    transport: str | None = None,
) -> dict[str, Any]:
    """The UI's SerializedSocket. ``handshake`` is Node's (headers, query, address, time,
    issued, secure, url, xdomain; ``auth`` is left out: it may hold a password).
    ``client_id``/``transport`` default to what ``data["_admin"]`` says (another node's
    socket)."""
    admin = data.get(ADMIN_KEY) if isinstance(data, Mapping) else None
    if isinstance(admin, Mapping):
        client_id = client_id or admin.get("clientId")
        transport = transport or admin.get("transport")
    headers = handshake.get("headers") or {}
    return {
        "id": sid,
        "clientId": client_id or "",
        "transport": transport or "",
        "nsp": nsp,
        "data": data_without_admin(data),
        "handshake": {
            "address": client_address(headers, str(handshake.get("address") or "")),
            "headers": headers,
            "query": handshake.get("query") or {},
            "issued": handshake.get("issued"),
            "secure": bool(handshake.get("secure")),
            "time": handshake.get("time"),
            "url": handshake.get("url"),
            "xdomain": bool(handshake.get("xdomain")),
        },
        "rooms": sorted(rooms),
    }


# -- server stats ---------------------------------------------------------------------------


class EventBuffer:
    """The aggregated events of one stats interval: counts per (second, type, subType), as
    Node's ``EventBuffer`` keeps them (``rawConnection``, ``rawDisconnection`` with the
    reason as subType, ``packetsIn``/``Out``, ``bytesIn``/``Out``)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str, str | None], int] = {}

    def push(self, kind: str, now: float, sub_type: str | None = None, count: int = 1) -> None:
        """Count ``count`` of ``kind`` at ``now`` (seconds since the epoch)."""
        if count <= 0:
            return
        key = (int(now) * 1000, kind, sub_type)
        self._counts[key] = self._counts.get(key, 0) + count

    def drain(self) -> list[dict[str, Any]]:
        """Every count since the last drain, as ``{timestamp (ms), type[, subType], count}``;
        the buffer starts empty again."""
        counts, self._counts = self._counts, {}
        out: list[dict[str, Any]] = []
        for (timestamp, kind, sub_type), count in counts.items():
            entry: dict[str, Any] = {"timestamp": timestamp, "type": kind, "count": count}
            if sub_type is not None:
                entry["subType"] = sub_type
            out.append(entry)
        return out


def server_stats(
    *,
    server_id: str,
    hostname: str,
    pid: int,
    uptime: float,
    clients: int,
    polling_clients: int,
    aggregated_events: list[dict[str, Any]],
    namespaces: Mapping[str, int],
) -> dict[str, Any]:
    """The ``server_stats`` event's payload (``namespaces``: name -> sockets)."""
    return {
        "serverId": server_id,
        "hostname": hostname,
        "pid": pid,
        "uptime": uptime,
        "clientsCount": clients,
        "pollingClientsCount": polling_clients,
        "aggregatedEvents": aggregated_events,
        "namespaces": [{"name": name, "socketsCount": n} for name, n in namespaces.items()],
    }
