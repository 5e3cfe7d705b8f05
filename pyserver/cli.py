"""The ``pyserver`` command line: ``pyserver demo`` and ``pyserver run module:app``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio


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
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="serve the example apps in web/")
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

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "demo":
        from pyserver.demo import build_server

        app: Any = build_server(args.web_dir, redis_url=args.redis_url)
    else:
        app = _load(args.target)
    logging.getLogger("pyserver").info("serving on http://%s:%d/", args.host, args.port)
    try:
        trio.run(partial(app.serve, args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
