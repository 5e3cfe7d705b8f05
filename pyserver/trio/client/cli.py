"""``pyserver client URL``: a command-line Socket.IO client in the spirit of ``wscat``.

It connects to the namespace in the URL's path and prints one JSON line per thing that
happens, on standard output::

    {"connected": {"id": "...", "namespace": "/chat", "transport": "websocket"}}
    {"event": "chat message", "args": ["hi"]}
    {"ack": "chat message", "args": [{"status": "ok"}]}
    {"disconnected": "io server disconnect"}

Lines typed on standard input are emitted: ``event [json args]``, the event name then zero
or more JSON values separated by spaces (``chat message "hi" {"to": "ada"}``). Each is sent
asking for an ack, and the ack is printed when it comes (``--ack-timeout`` bounds the wait;
a server that does not ack prints nothing). ``--emit 'event [json args]'`` (repeatable) is
the one-shot form for scripts: emit, print the acks, stay ``--wait`` seconds printing
events, exit (the end of standard input does the same). Binary arguments are printed as
``{"$binary": "<hex>"}`` (and msgpack's dates as ISO 8601 strings). ``--parser msgpack``
speaks socket.io-msgpack-parser (a server with ``parser="msgpack"``). Errors go to standard
error as one JSON line; a refused connection exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import ssl
import sys
from typing import Any

import trio

from pyserver.errors import ConnectionRefused
from pyserver.socketio.client import ConnectionLost
from pyserver.trio.client.manager import connect
from pyserver.trio.client.socket import ClientSocket

__all__ = ["add_parser", "parse_line", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``client`` subcommand on ``pyserver``'s argument parser."""
    client: argparse.ArgumentParser = sub.add_parser(
        "client",
        help="a command-line Socket.IO client: print events, emit typed lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    client.add_argument("url", help="http(s)://host:port/namespace")
    client.add_argument("--auth", type=json.loads, default=None, help="the auth payload (JSON)")
    client.add_argument(
        "--transport",
        choices=["polling", "websocket", "both"],
        default="both",
        help="polling, websocket, or both (polling then the upgrade; the default)",
    )
    client.add_argument("--path", default="/socket.io/", help="the server's Socket.IO path")
    client.add_argument(
        "--query", action="append", default=[], metavar="K=V", help="a query parameter"
    )
    client.add_argument(
        "--header", action="append", default=[], metavar="NAME:VALUE", help="an extra header"
    )
    client.add_argument(
        "--emit", action="append", default=[], metavar="'EVENT [JSON...]'", help="emit and exit"
    )
    client.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to go on printing events after the last ack (with --emit or at the end "
        "of standard input)",
    )
    client.add_argument("--ack-timeout", type=float, default=5.0, help="seconds to wait for acks")
    client.add_argument(
        "--parser",
        choices=["json", "msgpack"],
        default="json",
        help="the server's Socket.IO parser: json (the default) or msgpack "
        "(socket.io-msgpack-parser)",
    )
    client.add_argument("--no-reconnect", action="store_true", help="do not reconnect")
    client.add_argument(
        "--insecure", action="store_true", help="with https: do not check the certificate"
    )
    return client


def parse_line(line: str) -> tuple[str, list[Any]]:
    """``event [json args]`` -> ``(event, args)``; ``ValueError`` for bad JSON."""
    line = line.strip()
    if not line:
        raise ValueError("empty line")
    event, _, rest = line.partition(" ")
    decoder = json.JSONDecoder()
    args: list[Any] = []
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        value, pos = decoder.raw_decode(rest, pos)
        args.append(value)
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
    return event, args


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$binary": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def _print(obj: Any, stream: Any = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(_plain(obj), ensure_ascii=False) + "\n")
    out.flush()


def run(args: argparse.Namespace) -> int:
    """Run the client; the exit status."""
    try:
        return trio.run(_main, args)
    except KeyboardInterrupt:
        return 130


async def _main(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "path": args.path,
        "transports": ["polling", "websocket"] if args.transport == "both" else [args.transport],
        "query": dict(q.split("=", 1) for q in args.query),
        "headers": dict(
            (name.strip(), value.strip())
            for name, _, value in (h.partition(":") for h in args.header)
        ),
        "reconnection": not args.no_reconnect,
        "parser": getattr(args, "parser", "json"),
    }
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        options["ssl_context"] = context
    try:
        async with connect(args.url, auth=args.auth, **options) as socket:
            socket.on("connect", lambda: _print({"reconnected": {"id": socket.id}}))
            socket.on("disconnect", lambda reason: _print({"disconnected": reason}))
            _print(
                {
                    "connected": {
                        "id": socket.id,
                        "namespace": socket.namespace,
                        "transport": socket.transport,
                    }
                }
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_print_events, socket)
                async with trio.open_nursery() as emits:  # ends when every ack is in
                    if args.emit:
                        for line in args.emit:
                            await emits.start(_emit_line, socket, line, args.ack_timeout)
                    else:
                        await _read_stdin(socket, args.ack_timeout, emits)
                await trio.sleep(args.wait)
                nursery.cancel_scope.cancel()
    except ConnectionRefused as exc:
        _print({"error": "connect_error", "message": exc.message, "data": exc.data}, sys.stderr)
        return 1
    except ConnectionLost as exc:
        _print({"error": exc.reason, "detail": exc.detail}, sys.stderr)
        return 1
    return 0


async def _print_events(socket: ClientSocket) -> None:
    async for event in socket:
        line: dict[str, Any] = {"event": event.name, "args": event.args}
        if event.ack_id is not None:
            line["wants_ack"] = True
        _print(line)
    _print({"disconnected": socket.disconnect_reason})


async def _emit_line(
    socket: ClientSocket,
    line: str,
    timeout: float,  # noqa: ASYNC109
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Emit one typed line and print its ack. ``started`` is called before the emit, which
    runs without a checkpoint: by the time ``nursery.start`` returns the emit is queued, so
    lines go out in the order they were typed."""
    task_status.started()
    try:
        event, args = parse_line(line)
    except ValueError as exc:
        _print({"error": "bad line", "detail": str(exc)}, sys.stderr)
        return
    try:
        reply = await socket.emit_with_ack(event, *args, timeout=timeout)
    except TimeoutError:
        return  # the server did not ack: nothing to show
    except Exception as exc:
        _print({"error": type(exc).__name__, "detail": str(exc)}, sys.stderr)
        return
    values = [] if reply is None else list(reply) if isinstance(reply, tuple) else [reply]
    _print({"ack": event, "args": values})


async def _read_stdin(socket: ClientSocket, timeout: float, nursery: trio.Nursery) -> None:  # noqa: ASYNC109
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                text = raw.decode("utf-8", "replace")
                if text.strip():
                    await nursery.start(_emit_line, socket, text, timeout)
