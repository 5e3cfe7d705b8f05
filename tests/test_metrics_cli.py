"""``pyserver run module:sio --metrics-port N`` (a real subprocess): /metrics on a listener of
its own, not on the server's port; ``--metrics`` with an App (no Socket.IO server) is refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

WAIT = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def _run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "metrics_app.py").write_text(
        "from pyserver import App, Server\nsio = Server()\napp = App()\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-m", "pyserver", "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def test_metrics_port(tmp_path: Path) -> None:
    port, metrics_port = _free_port(), _free_port()
    proc = _run(
        tmp_path, "metrics_app:sio", "--port", str(port), "--metrics-port", str(metrics_port)
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert status == 200
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"pyserver_build_info", "pyserver_engine_connections", "pyserver_events"} <= names
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 404  # (not asked: --metrics)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=WAIT)


def test_metrics_need_a_server(tmp_path: Path) -> None:
    proc = _run(tmp_path, "metrics_app:app", "--port", str(_free_port()), "--metrics")
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode != 0
    assert "--metrics, --metrics-port and --log-events need a Server" in err
