"""Structured logs: ``pyserver.logjson``'s formatter, and ``pyserver demo --log-format json``
(a real subprocess) whose stderr parses as JSON line by line, with the per-event lines of
``--log-events`` only when asked; a real client (python-socketio) does the talking."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import socketio
from prometheus_client.parser import text_string_to_metric_families

from pyserver.logjson import JsonFormatter, configure_logging

WAIT = 20.0


def test_a_record_is_one_json_line_with_its_fields() -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", node="2", stream=stream)
    try:
        logger = logging.getLogger("pyserver.test")
        logger.info(
            "peer said %s",
            "line\r\nforged",
            extra={"sid": "s1", "namespace": "/chat", "event": "hi", "remote": "1.2.3.4:5"},
        )
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        configure_logging("text", "WARNING", stream=sys.stderr)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "peer said line\r\nforged"
    assert {k: first[k] for k in ("level", "logger", "sid", "namespace", "event", "remote")} == {
        "level": "INFO",
        "logger": "pyserver.test",
        "sid": "s1",
        "namespace": "/chat",
        "event": "hi",
        "remote": "1.2.3.4:5",
    }
    assert first["node"] == "2" and first["time"].endswith("Z")
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]
    assert "sid" not in second


def test_formatter_leaves_out_fields_not_given() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain", (), None)
    assert set(json.loads(JsonFormatter().format(record))) == {"time", "level", "logger", "message"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def demo(*options: str) -> Iterator[tuple[str, list[str]]]:
    """``pyserver demo`` on a free port with ``options``; yields its URL and the list its
    stderr lines go to (until it is stopped with SIGTERM at the end)."""
    port = _free_port()
    env = {**os.environ, "PYSERVER_JWT_SECRET": "test-secret"}
    env.pop("PYSERVER_LOG_FORMAT", None)
    env.pop("PYSERVER_LOG_EVENTS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyserver", "demo", "--port", str(port), *options],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    lines: list[str] = []
    serving = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "serving on" in line:
                serving.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert serving.wait(WAIT), lines
        _until(lambda: _listening(port))  # ("serving on" is logged before the listener binds)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
        reader.join(WAIT)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _talk(url: str) -> str:
    """A python-socketio client joins the drawing board, asks for a sync (an ack), leaves;
    returns its sid."""
    client = socketio.Client(reconnection=False)
    client.connect(url, namespaces=["/drawing"], transports=["websocket"], wait_timeout=WAIT)
    sid = client.get_sid("/drawing")
    assert sid is not None
    client.call("sync", None, namespace="/drawing", timeout=WAIT)
    client.disconnect()
    return str(sid)


def _until(check: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_demo_json_logs_with_events_and_metrics() -> None:
    with demo("--log-format", "json", "--log-events") as (url, lines):
        sid = _talk(url)
        _until(lambda: any("left" in line and sid in line for line in lines))
        with urllib.request.urlopen(url + "/metrics", timeout=WAIT) as answer:
            metrics = answer.read().decode()
        try:  # a request Engine.IO refuses: its line carries the peer's address
            urllib.request.urlopen(url + "/socket.io/?EIO=9&transport=polling", timeout=WAIT)
        except urllib.error.HTTPError as refused:
            assert refused.code == 400
        _until(lambda: any("refused GET" in line for line in lines))
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    connected = [r for r in records if r.get("sid") == sid and "connected" in r["message"]]
    assert len(connected) == 1
    assert connected[0]["namespace"] == "/drawing"
    assert connected[0]["remote"].startswith("127.0.0.1:")
    events = [r for r in records if r["logger"] == "pyserver.events"]
    received = [(r["direction"], r["event"]) for r in events if r.get("sid") == sid]
    assert ("in", "sync") in received and ("out", "init") in received
    assert all(r["namespace"] == "/drawing" for r in events if r.get("sid") == sid)
    refusals = [r for r in records if r["message"].startswith("refused GET")]
    assert len(refusals) == 1 and refusals[0]["remote"].startswith("127.0.0.1:")
    # the demo serves /metrics by default: the drawing socket's connect is counted
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    connects = {
        (s.labels["namespace"], s.labels["result"]): s.value
        for s in families["pyserver_socket_connects"].samples
    }
    assert connects[("/drawing", "ok")] == 1


def test_no_event_lines_without_log_events() -> None:
    with demo("--log-format", "json") as (url, lines):
        sid = _talk(url)
        _until(lambda: any("left" in line and sid in line for line in lines))
    records = [json.loads(line) for line in lines]
    assert any(r.get("sid") == sid for r in records)  # the connect and leave lines
    assert not [r for r in records if r["logger"] == "pyserver.events"]
