"""Binary attachments of Socket.IO v5 packets (sans-IO).

Rules (socket.io-protocol, "Packet encoding"):

* A ``bytes``-like value anywhere in an EVENT's or ACK's data is sent as a separate binary
  Engine.IO message (an *attachment*). In its place the JSON carries the placeholder
  ``{"_placeholder":true,"num":N}``, where ``N`` counts the attachments from 0 in the order
  they follow the text packet.
* On receipt every placeholder is replaced by attachment ``N``. A placeholder whose ``num`` is
  not an integer in ``0 .. count-1`` is a protocol error, and so (our rules, stricter than the
  reference parser) are an attachment no placeholder refers to and a ``num`` that two
  placeholders share: each attachment is referred to exactly once, as every official encoder
  writes them (one attachment per bytes value, numbered in order). The reference parser takes
  a repeated ``num``, so one small attachment could stand for any number of arguments; an
  application that re-emits them would send (and build frames for) each occurrence.
* On sending, each occurrence of a bytes-like value is its own attachment (as the reference
  encoder does), but never its own copy: a ``bytes`` object is sent as it is, and a
  ``bytearray`` or ``memoryview`` is copied once (so a later change by the application does
  not reach what was sent), however often it appears. ``max_bytes`` bounds the whole packet
  (text and attachments) and is checked while the attachments are collected, before any of
  them is sent.

Nothing here knows about packet types or errors of the codec: failures are ``ValueError``
with a short message, which :mod:`pyserver.socketio.packets` turns into its ``PacketError``.
Both walks are iterative, so a deeply nested payload cannot exhaust the Python stack.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pyserver.errors import LocalProtocolError

__all__ = [
    "BINARY_TYPES",
    "TooLarge",
    "dumps_with_attachments",
    "is_placeholder",
    "replace_placeholders",
]

BINARY_TYPES: Final = (bytes, bytearray, memoryview)
"""The Python types sent as attachments."""

_PLACEHOLDER_KEY: Final = "_placeholder"


class TooLarge(LocalProtocolError, ValueError):
    """The packet's text and attachments together are over ``max_bytes`` (the message says
    how far it got, never what it holds). The caller's data is too big for the bound it gave:
    a :class:`~pyserver.errors.LocalProtocolError` (and a ``ValueError``, as before)."""


def dumps_with_attachments(data: Any, max_bytes: int | None = None) -> tuple[str, list[bytes]]:
    """Serialise ``data`` to compact JSON, moving every bytes-like value out as an attachment.

    Attachments are numbered in serialisation order (lists in order, dicts in insertion
    order), which is the order they must follow the text packet on the wire. A ``bytes``
    value is kept as it is (the same object each time it appears); a ``bytearray`` or
    ``memoryview`` is copied to ``bytes`` once per object, however often it appears.
    Raises ``TypeError`` or ``ValueError`` for what JSON cannot carry (sets, NaN, circular
    data), and :class:`TooLarge` as soon as the attachments, or then the text and the
    attachments (its characters and their bytes), are over ``max_bytes``.
    """
    attachments: list[bytes] = []
    copies: dict[int, tuple[object, bytes]] = {}  # id -> (the object, kept alive; its copy)
    size = 0

    def placeholder(value: object) -> dict[str, object]:
        nonlocal size
        if isinstance(value, BINARY_TYPES):
            if type(value) is bytes:
                chunk = value
            else:
                copied = copies.get(id(value))
                if copied is None:
                    copied = copies[id(value)] = (value, bytes(value))
                chunk = copied[1]
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise TooLarge(f"attachments over {max_bytes} bytes")
            attachments.append(chunk)
            return {_PLACEHOLDER_KEY: True, "num": len(attachments) - 1}
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    text = json.dumps(
        data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=placeholder
    )
    if max_bytes is not None and size + len(text) > max_bytes:
        raise TooLarge(f"{size + len(text)} bytes, over {max_bytes}")
    return text, attachments


def is_placeholder(value: object) -> bool:
    """Whether ``value`` is a placeholder object (``"_placeholder"`` is exactly ``true``)."""
    return isinstance(value, dict) and value.get(_PLACEHOLDER_KEY) is True


def replace_placeholders(data: list[Any], attachments: list[bytes]) -> None:
    """Replace, in place, every placeholder in the decoded JSON ``data`` by its attachment.

    Raises ``ValueError`` for a placeholder with a bad ``num``, a ``num`` already used by
    another placeholder, or an attachment that no placeholder refers to. ``data`` is the
    top-level array of an EVENT or ACK payload.
    """
    count = len(attachments)
    used: set[int] = set()
    stack: list[list[Any] | dict[str, Any]] = [data]
    while stack:
        container = stack.pop()
        slots = enumerate(container) if isinstance(container, list) else container.items()
        for key, value in slots:
            if isinstance(value, dict):
                if value.get(_PLACEHOLDER_KEY) is True:
                    num = value.get("num")
                    if type(num) is not int or not 0 <= num < count:
                        raise ValueError("placeholder refers to no attachment")
                    if num in used:
                        raise ValueError("attachment referred to by two placeholders")
                    used.add(num)
                    container[key] = attachments[num]  # type: ignore[index]
                else:
                    stack.append(value)
            elif isinstance(value, list):
                stack.append(value)
    if len(used) != count:
        raise ValueError("attachment without a placeholder")
