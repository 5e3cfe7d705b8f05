"""permessage-deflate settings (RFC 7692): when a message is compressed and how hard.

``PerMessageDeflate(threshold=1024, level=-1)`` is what ``App(compression=...)`` and
``Server(per_message_deflate=...)`` take, the options of Node's ``perMessageDeflate``:

* ``threshold``: messages shorter than this many bytes (characters for text) go out
  uncompressed, RSV1 unset (Node's ``threshold``, default 1024: compressing a short message
  costs more CPU than the bytes it saves).
* ``level``: zlib's compression level, 0 (store) to 9 (smallest), -1 for zlib's default (6):
  Node's ``zlibDeflateOptions.level``.

``True`` means the defaults, ``False``/``None`` no permessage-deflate, and a mapping with
the keys ``threshold`` and/or ``level`` the same as the dataclass. The server always asks
for ``server_no_context_takeover``, so one compressed broadcast frame serves every peer.
A message sent with ``compress=False`` (Socket.IO's ``compress(False)``) is never
compressed, whatever its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DeflateSpec", "PerMessageDeflate", "deflate_options"]


@dataclass(frozen=True, slots=True)
class PerMessageDeflate:
    """The permessage-deflate options (module docstring)."""

    threshold: int = 1024
    level: int = -1

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, not {self.threshold}")
        if not -1 <= self.level <= 9:
            raise ValueError(f"level must be 0 to 9 (or -1, zlib's default), not {self.level}")


DeflateSpec = PerMessageDeflate | Mapping[str, Any] | bool | None
"""What the ``compression``/``per_message_deflate`` options accept (module docstring)."""


def deflate_options(spec: DeflateSpec) -> PerMessageDeflate | None:
    """``spec`` as :class:`PerMessageDeflate`, or None when permessage-deflate is off."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return PerMessageDeflate()
    if isinstance(spec, PerMessageDeflate):
        return spec
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"threshold", "level"}
        if unknown:
            raise TypeError(
                f"permessage-deflate options are threshold and level, not {sorted(unknown)}"
            )
        return PerMessageDeflate(**spec)
    raise TypeError(f"permessage-deflate: True, False, a dict or PerMessageDeflate, not {spec!r}")
