"""The ``pyserver`` command line: ``pyserver demo``, ``pyserver run module:app``,
``pyserver cluster`` (N nodes sharing one Redis, see :mod:`pyserver.supervisor`) and
``pyserver client URL`` (a command-line Socket.IO client, see :mod:`pyserver.trio.client.cli`)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio

from pyserver.logjson import configure_logging


def _load(target: str) -> Any:
    """``package.module:attribute`` -> the attribute (an App, or anything with ``serve``)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"pyserver: expected module:attribute, got {target!r}")
    sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"pyserver: {module_name} has no attribute {attribute!r}") from None
    if not hasattr(obj, "serve"):
        raise SystemExit(f"pyserver: {target} has no serve() method")
    return obj


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pyserver", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument(
        "--version",
        action=_Version,
        help="print the versions of pyserver and of the socket.io client it serves, and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="serve the example apps (their pages: web/)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=3000)
    demo.add_argument("--web-dir", type=Path, default=None)
    demo.add_argument(
        "--redis-url",
        default=None,
        help="share rooms and broadcasts with other nodes through Redis (redis://host:port/db)",
    )

    run = sub.add_parser("run", help="serve an application object: pyserver run module:app")
    run.add_argument("target", help="module:attribute of an App or Server")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=3000)
    for command in (demo, run):
        command.add_argument(
            "--certfile",
            type=Path,
            default=None,
            help="serve TLS (https, wss) with this PEM certificate chain",
        )
        command.add_argument(
            "--keyfile", type=Path, default=None, help="its private key (default: in --certfile)"
        )
        command.add_argument(
            "--max-connections",
            type=_cap,
            default=None,
            metavar="N",
            help="connections served at once, over it 503 (default: the app's, 'auto': the "
            "open-file limit less a reserve; 'none': no cap)",
        )
        command.add_argument(
            "--max-connections-per-ip",
            type=_cap,
            default=None,
            metavar="N",
            help="connections at once per client address (default: the app's, none; not "
            "behind a proxy, where every client has the proxy's address)",
        )
        command.add_argument(
            "--max-sessions-per-ip",
            type=_cap,
            default=None,
            metavar="N",
            help="Engine.IO sessions at once per client address, for a Server (default: "
            "the server's, none)",
        )
        command.add_argument(
            "--admin-password",
            default=os.environ.get("PYSERVER_ADMIN_PASSWORD") or None,
            metavar="P",
            help="instrument the Server for the Socket.IO Admin UI (user admin, this "
            "password, development mode) and serve the UI at /admin/ (default: "
            "$PYSERVER_ADMIN_PASSWORD; none: no admin namespace)",
        )

    for command in (demo, run):
        _metrics_options(command, on=command is demo)
    cluster = sub.add_parser(
        "cluster",
        help="N server processes on consecutive ports sharing one Redis",
        description="Start N server processes on ports BASE..BASE+N-1 sharing one Redis; "
        "Ctrl-C (or SIGTERM, SIGHUP) stops them all. Without a target each node runs the "
        "demo; a target module:attribute builds its own adapter from $PYSERVER_REDIS_URL.",
    )
    cluster.add_argument("target", nargs="?", help="module:attribute (default: the demo)")
    cluster.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    cluster.add_argument(
        "--base-port", type=int, default=3001, help="port of the first node (default 3001)"
    )
    cluster.add_argument("--host", default="127.0.0.1")
    redis = cluster.add_mutually_exclusive_group(required=True)
    redis.add_argument("--redis-url", help="the shared Redis (redis://host:port/db)")
    redis.add_argument(
        "--start-redis",
        action="store_true",
        help="start a redis-server here (no persistence), stopped with the nodes",
    )
    cluster.add_argument(
        "--redis-port", type=int, default=None, help="with --start-redis (default: a free port)"
    )
    cluster.add_argument("--web-dir", type=Path, default=None, help="the demo's web directory")
    cluster.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds a node gets to stop before it is killed (default 10)",
    )
    for command in (demo, run, cluster):
        _log_options(command)

    from pyserver.trio.client import cli as client_cli

    client_cli.add_parser(sub)

    args = parser.parse_args(argv)
    node = os.environ.get("PYSERVER_NODE")
    configure_logging(getattr(args, "log_format", "text"), args.log_level, node=node)
    if args.command == "client":
        raise SystemExit(client_cli.run(args))
    if args.command == "cluster":
        from pyserver.supervisor import Cluster, ClusterError, supervise

        try:
            nodes = Cluster(
                nodes=args.nodes,
                base_port=args.base_port,
                redis_url=args.redis_url,
                start_redis=args.start_redis,
                redis_port=args.redis_port,
                host=args.host,
                target=args.target,
                web_dir=args.web_dir,
                log_level=args.log_level,
                grace=args.grace,
                env=_log_env(args),
            )
        except ClusterError as exc:
            raise SystemExit(f"pyserver cluster: {exc}") from None
        raise SystemExit(supervise(nodes))
    if args.command == "demo":
        from pyserver.demo import build_server

        pages = _demo_pages(args.web_dir)
        app: Any = build_server(pages, redis_url=args.redis_url, host=args.host)
    else:
        app = _load(args.target)
    _apply_caps(app, args)
    extra = _observe(app, args)
    if args.admin_password:
        _instrument(app, args.admin_password)
    context = _ssl_context(args.certfile, args.keyfile)
    scheme = "https" if context is not None else "http"
    logging.getLogger("pyserver").info("serving on %s://%s:%d/", scheme, args.host, args.port)
    try:
        trio.run(_serve_until_signalled, app, args.host, args.port, context, extra)
    except* KeyboardInterrupt:  # a second Ctrl-C while shutting down
        pass


class _Version(argparse.Action):
    """``--version``: the package's version and the socket.io-client version it serves (the
    one the ETag of ``/socket.io/socket.io.js`` names), read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """``pyserver 0.1.0 (socket.io-client 4.8.1)``; ``none`` where no client bundle is found."""
    from importlib.metadata import PackageNotFoundError, version

    from pyserver.trio.http.static import client_version, find_client_dist

    try:
        own = version("pyserver")
    except PackageNotFoundError:  # a checkout on sys.path, never installed
        own = "unknown"
    dist = find_client_dist(None)
    client = client_version(dist) if dist is not None else None
    return f"pyserver {own} (socket.io-client {client or 'none'})"


def _demo_pages(option: Path | None) -> Path | None:
    """The demo's pages: ``--web-dir``, else the checkout's ``web/`` (edited in place), else
    the copy an installed package carries (``_static/web``); None leaves it to the demo."""
    from pyserver.demo import DEFAULT_WEB_DIR
    from pyserver.trio.http.static import PACKAGED_DIR

    if option is not None or (DEFAULT_WEB_DIR / "index.html").is_file():
        return option
    packaged = PACKAGED_DIR / "web"
    return packaged if (packaged / "index.html").is_file() else None


_NO_CAP = object()


def _cap(text: str) -> object:
    """A cap on the command line: a count, ``none`` (no cap) or ``auto`` (the default rule,
    for ``--max-connections``)."""
    lowered = text.strip().lower()
    if lowered == "none":
        return _NO_CAP
    if lowered == "auto":
        return "auto"
    try:
        value = int(lowered)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'none' or 'auto', not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("a cap must be at least 1 (or 'none')")
    return value


def _apply_caps(target: Any, args: argparse.Namespace) -> None:
    """Set the caps given on the command line on the served App (a Server's ``app``) and
    on a Server's Engine.IO server."""
    from pyserver.trio.http.app import App, default_max_connections

    app = target if isinstance(target, App) else getattr(target, "app", None)
    eio = getattr(target, "eio", None)
    options = (
        ("max_connections", app, args.max_connections),
        ("max_connections_per_ip", app, args.max_connections_per_ip),
        ("max_sessions_per_ip", eio, args.max_sessions_per_ip),
    )
    for name, owner, value in options:
        if value is None:
            continue
        if owner is None or not hasattr(owner, name):
            raise SystemExit(f"pyserver: --{name.replace('_', '-')} needs an App or a Server")
        if value == "auto":
            if name != "max_connections":
                raise SystemExit(f"pyserver: --{name.replace('_', '-')} takes a number or none")
            value = default_max_connections()
        setattr(owner, name, None if value is _NO_CAP else value)


def _instrument(app: Any, password: str) -> None:
    """``--admin-password``: the Admin UI's namespace (user ``admin``, the password hashed
    with bcrypt here, as Node's ``instrument`` takes it) and its page at ``/admin/``."""
    if not callable(getattr(app, "instrument", None)):
        raise SystemExit("pyserver: --admin-password needs a Server, not an App")
    try:
        from pyserver.trio.socketio.admin import basic_auth

        auth = basic_auth("admin", password)
    except ImportError:
        raise SystemExit(
            "pyserver: --admin-password needs bcrypt: pip install 'pyserver[admin]'"
        ) from None
    app.instrument(
        auth=auth,
        mode="development",
        serve_ui=True,
    )
    logging.getLogger("pyserver").info("Admin UI at /admin/ (user admin)")


def _metrics_options(command: argparse.ArgumentParser, *, on: bool) -> None:
    command.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=on,
        help="Prometheus metrics at /metrics on the server's port (a Server; default: "
        + ("on" if on else "off")
        + ")",
    )
    command.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve /metrics on a listener of its own, on this port (same host)",
    )


def _log_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("PYSERVER_LOG_FORMAT", "text"),
        help="log lines as text or as one JSON object per line (default: text)",
    )
    command.add_argument(
        "--log-events",
        action="store_true",
        default=os.environ.get("PYSERVER_LOG_EVENTS") == "1",
        help="log every event received and sent (sid, namespace, event; off by default)",
    )


def _log_env(args: argparse.Namespace) -> dict[str, str]:
    """The cluster's log options, for its nodes (read as their options' defaults)."""
    env = {"PYSERVER_LOG_FORMAT": args.log_format}
    if args.log_events:
        env["PYSERVER_LOG_EVENTS"] = "1"
    return env


def _observe(app: Any, args: argparse.Namespace) -> list[Callable[[], Awaitable[None]]]:
    """``--metrics``, ``--metrics-port`` and ``--log-events`` on the served Server; the
    tasks to run beside it (the metrics listener)."""
    from pyserver.trio.logevents import log_events
    from pyserver.trio.metrics import Metrics, enable_metrics, serve_metrics

    wanted = args.metrics_port is not None or args.log_events or args.metrics
    if not wanted:
        return []
    if not hasattr(app, "eio"):  # an App: no Socket.IO server to observe
        raise SystemExit("pyserver: --metrics, --metrics-port and --log-events need a Server")
    tasks: list[Callable[[], Awaitable[None]]] = []
    if args.metrics:
        enable_metrics(app)
    if args.metrics_port is not None:
        enable_metrics(app, Metrics(path=None))
        tasks.append(partial(serve_metrics, app, args.host, args.metrics_port))
    if args.log_events:
        log_events(app)
    return tasks


def _ssl_context(certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from ``--certfile``/``--keyfile`` (None without them)."""
    if certfile is None:
        if keyfile is not None:
            raise SystemExit("pyserver: --keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"pyserver: cannot load the certificate {certfile}: {exc}") from None
    return context


async def _serve_until_signalled(
    app: Any,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    extra: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully: cancelling ``serve`` closes
    every connection with "server shutting down" (what ``pyserver cluster`` relies on to stop
    its nodes). A second signal while shutting down interrupts at once."""
    log = logging.getLogger("pyserver")
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            for task in extra:  # (the metrics listener)
                nursery.start_soon(task)
            nursery.start_soon(
                _serve_then_cancel, app, host, port, ssl_context, nursery.cancel_scope
            )
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


async def _serve_then_cancel(
    app: Any, host: str, port: int, ssl_context: ssl.SSLContext | None, scope: trio.CancelScope
) -> None:
    await app.serve(host, port, ssl_context=ssl_context)
    scope.cancel()  # serve returned by itself: stop waiting for signals


if __name__ == "__main__":
    main()
