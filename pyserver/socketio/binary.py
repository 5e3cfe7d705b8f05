"""Binary attachments of Socket.IO v5 packets (sans-IO).

Rules (socket.io-protocol, "Packet encoding"):

* A ``bytes``-like value anywhere in an EVENT's or ACK's data is sent as a separate binary
  Engine.IO message (an *attachment*). In its place the JSON carries the placeholder
  ``{"_placeholder":true,"num":N}``, where ``N`` counts the attachments from 0 in the order
  they follow the text packet.
* On receipt every placeholder is replaced by attachment ``N``. A placeholder whose ``num`` is
  not an integer in ``0 .. count-1`` is a protocol error, and so (our rule, stricter than the
  reference parser) is an attachment no placeholder refers to.

Nothing here knows about packet types or errors of the codec: failures are ``ValueError``
with a short message, which :mod:`pyserver.socketio.packets` turns into its ``PacketError``.
Both walks are iterative, so a deeply nested payload cannot exhaust the Python stack.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = [
    "BINARY_TYPES",
    "dumps_with_attachments",
    "is_placeholder",
    "replace_placeholders",
]

BINARY_TYPES: Final = (bytes, bytearray, memoryview)
"""The Python types sent as attachments."""

_PLACEHOLDER_KEY: Final = "_placeholder"


def dumps_with_attachments(data: Any) -> tuple[str, list[bytes]]:
    """Serialise ``data`` to compact JSON, moving every bytes-like value out as an attachment.

    Attachments are numbered in serialisation order (lists in order, dicts in insertion
    order), which is the order they must follow the text packet on the wire.
    ``bytearray`` and ``memoryview`` are copied to ``bytes``. Raises ``TypeError`` or
    ``ValueError`` for what JSON cannot carry (sets, NaN, circular data).
    """
    attachments: list[bytes] = []

    def placeholder(value: object) -> dict[str, object]:
        if isinstance(value, BINARY_TYPES):
            attachments.append(value if type(value) is bytes else bytes(value))
            return {_PLACEHOLDER_KEY: True, "num": len(attachments) - 1}
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    text = json.dumps(
        data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=placeholder
    )
    return text, attachments


def is_placeholder(value: object) -> bool:
    """Whether ``value`` is a placeholder object (``"_placeholder"`` is exactly ``true``)."""
    return isinstance(value, dict) and value.get(_PLACEHOLDER_KEY) is True


def replace_placeholders(data: list[Any], attachments: list[bytes]) -> None:
    """Replace, in place, every placeholder in the decoded JSON ``data`` by its attachment.

    Raises ``ValueError`` for a placeholder with a bad ``num`` or an attachment that no
    placeholder refers to. ``data`` is the top-level array of an EVENT or ACK payload.
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
                    used.add(num)
                    container[key] = attachments[num]  # type: ignore[index]
                else:
                    stack.append(value)
            elif isinstance(value, list):
                stack.append(value)
    if len(used) != count:
        raise ValueError("attachment without a placeholder")
