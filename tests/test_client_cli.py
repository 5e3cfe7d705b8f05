"""``pyserver client URL`` (a real subprocess) against pyserver's Server in the test's Trio
run: one JSON line per thing that happens, typed lines emitted with their acks shown."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import trio

from pyserver import ConnectionRefused, Server, testing
from pyserver.trio.client.cli import parse_line


def app() -> Server:
    sio = Server()

    @sio.use
    async def authenticate(socket: Any) -> None:
        if (socket.handshake.auth or {}).get("token") == "bad":
            raise ConnectionRefused("Authentication error", data={"reason": "bad token"})

    @sio.on("connection")
    async def connection(socket: Any) -> None:
        socket.emit("welcome", {"auth": socket.handshake.auth}, b"\x01\x02")

    @sio.on("echo")
    async def echo(socket: Any, *args: Any) -> tuple[Any, ...]:
        return args

    @sio.on("shout")
    async def shout(socket: Any, text: str) -> None:
        socket.emit("shouted", text.upper())

    return sio


async def pyserver_client(*argv: str, stdin: bytes = b"") -> tuple[int, list[Any], str]:
    with trio.fail_after(20):
        proc = await trio.run_process(
            [sys.executable, "-m", "pyserver", "--log-level", "WARNING", "client", *argv],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    return proc.returncode, lines, proc.stderr.decode()


def test_parse_line() -> None:
    assert parse_line("chat") == ("chat", [])
    assert parse_line('chat "hi" {"to": "ada"}  3') == ("chat", ["hi", {"to": "ada"}, 3])
    with pytest.raises(ValueError):
        parse_line("chat {bad")


async def test_one_shot_emit() -> None:
    async with testing.serve(app()) as url:
        code, lines, err = await pyserver_client(
            url,
            "--transport",
            "websocket",
            "--auth",
            '{"token": "t"}',
            "--emit",
            'echo "hi" [1, 2]',
            "--emit",
            'shout "hey"',
            "--wait",
            "0.5",
        )
    assert code == 0, err
    assert lines[0]["connected"]["namespace"] == "/"
    assert lines[0]["connected"]["transport"] == "websocket"
    assert {"event": "welcome", "args": [{"auth": {"token": "t"}}, {"$binary": "0102"}]} in lines
    assert {"ack": "echo", "args": ["hi", [1, 2]]} in lines
    assert {"event": "shouted", "args": ["HEY"]} in lines


async def test_typed_lines_over_polling() -> None:
    async with testing.serve(app()) as url:
        code, lines, err = await pyserver_client(
            url, "--transport", "polling", "--wait", "0.5", stdin=b'echo 1 2\nshout "a"\n\n'
        )
    assert code == 0, err
    assert {"ack": "echo", "args": [1, 2]} in lines
    assert {"event": "shouted", "args": ["A"]} in lines


async def test_refused_connection() -> None:
    async with testing.serve(app()) as url:
        code, lines, err = await pyserver_client(url, "--auth", '{"token": "bad"}', "--emit", "x")
    assert code == 1 and not lines
    assert json.loads(err.strip().splitlines()[-1]) == {
        "error": "connect_error",
        "message": "Authentication error",
        "data": {"reason": "bad token"},
    }
