"""The broadcast fan-out: one encoded message to many connections, and the reactor's steps.

``send_frames_to_many(sockets, frames)`` is ``ws.send_frames_nowait(frames)`` for every
recipient (the Socket.IO broadcast path: encode once, send many), with every direct write
(the ``DIRECT`` route of :mod:`.sending`) made by one Rust call, ``_frames.write_many``: one
``write(2)`` per recipient and no interpreter work per write. A recipient whose socket did
not take everything gets the rest queued; one that is not open is skipped.

**Steps of the reactor** (:mod:`.reactor`): during a step, what is sent to a connection
other than the one whose read is being handled (a broadcast's recipients) is not written at
once but queued (the ``STEP`` route), and the step's end writes every such connection's
queue in one write, all of them in one Rust call (``_frames.write_each``). A step's only
broadcast is kept whole and written at its end as outside steps; anything more sent in the
step queues it on each recipient first (``unfold``), so each connection is written once, in
order. A step that handles several broadcasts (a server that fell behind reads several per
step) then costs each recipient one write for all of them. ``step_started`` and
``step_ended`` are the reactor's hooks.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyserver import _frames
from pyserver.trio.websocket.outbox import FD_IO
from pyserver.trio.websocket.runtime import Ticker
from pyserver.trio.websocket.sending import (
    Sender,
    queue_for_step,
    ticker_of_run,
    unfold,
    write_queued,
)
from pyserver.trio.websocket.writer import WriterState
from pyserver.ws.connection import ConnectionState

__all__ = ["send_frames_to_many", "step_ended", "step_started"]

_OPEN = ConnectionState.OPEN
_W_NONE = WriterState.NONE
_W_RETIRING = WriterState.RETIRING
_write_many = getattr(_frames, "write_many", None) if FD_IO else None  # (Unix only)


def send_frames_to_many(sockets: Iterable[Sender], frames: list[bytes]) -> None:
    """``ws.send_frames_nowait(frames)`` for every one of ``sockets`` (the broadcast path),
    with all the direct writes (try-write-first, same rules) made by one Rust call,
    ``_frames.write_many``: one ``write(2)`` per recipient and no interpreter work per
    write. A recipient whose socket did not take everything gets the rest queued, as after
    ``_write_first``; one that is not open is skipped. In a reactor step, nothing is written
    before the step's end: a step's only broadcast is kept whole and then written so, and
    anything more sent in the step queues it on each recipient (``unfold``), so that the
    end writes each connection once, in order (``write_queued``)."""
    ticker = ticker_of_run()
    step = ticker.step
    if step is not None:  # in a reactor step: written at its end
        if ticker.first is None and not step:
            # the step's first send: kept whole, and written as a whole at its end unless
            # anything else is sent in the step (unfold)
            ticker.first = (sockets if isinstance(sockets, list) else list(sockets), frames)
            return
        unfold(ticker)
        queue_for_step(sockets, frames, step)
        return
    _write_to_many(sockets, frames, ticker)


def _write_to_many(sockets: Iterable[Sender], frames: list[bytes], ticker: Ticker[Sender]) -> None:
    """``send_frames_to_many`` outside reactor steps."""
    if _write_many is None:
        for ws in sockets:
            ws.send_frames_nowait(frames)
        return
    direct: list[Sender] = []
    fds: list[int] = []
    generation = ticker.generation
    for ws in sockets:
        if ws._conn.state is not _OPEN:
            continue
        sock = ws._sock
        state = ws._writer_state
        if (  # ws._route() is DIRECT, inline (never in a step here; one ticker per run)
            sock is not None
            and not ws._outbox
            and not ws._corked
            and ws._direct_gen != generation
            and (
                ws._writer is not None
                or (
                    (state is _W_NONE or state is _W_RETIRING)
                    and ws._nursery is not None
                    and not ws._done
                )
            )
        ):
            fd = sock.fileno()
            if fd >= 0:
                direct.append(ws)
                fds.append(fd)
                continue
        for frame in frames:
            ws._enqueue(frame)
    if not direct:
        return
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    short = _write_many(fds, data)
    generation = ticker.touch()
    if not short:
        for ws in direct:
            ws._direct_gen = generation
            ws._ticker = ticker
        return
    incomplete = dict(short)
    for index, ws in enumerate(direct):
        written = incomplete.get(index)
        if written is None:
            ws._direct_gen = generation
            ws._ticker = ticker
        elif not ws._written(data, written):
            for frame in frames:  # nothing went out: the writer meets the problem
                ws._enqueue(frame)


def step_started() -> None:
    """The reactor starts a step, so the scheduler has gone round since its previous one:
    the connections it wrote to then may be written to directly again (see
    ``Sender._wrote_this_batch``), whether or not the ticker has run yet in this batch. What the
    step sends to other connections waits for its end (``step_ended``)."""
    ticker = ticker_of_run()
    ticker.generation += 1
    ticker.step = []


def step_ended() -> None:
    """The reactor's step has ended: write what it queued (one write per connection), or
    its one broadcast as ``send_frames_to_many`` does outside steps."""
    ticker = ticker_of_run()
    step = ticker.step
    first = ticker.first
    ticker.step = ticker.first = None
    if first is not None:  # (then nothing else was sent in the step: that unfolds it)
        _write_to_many(first[0], first[1], ticker)
    elif step:
        for ws in step:
            ws._stepped = False
        write_queued(step)
