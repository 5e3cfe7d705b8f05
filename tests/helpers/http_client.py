"""A tiny h11 client over a Trio stream, for the HTTP server tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import h11
import trio

from pyserver.trio.http.app import App


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    async def _event(self) -> h11.Event | type[h11.NEED_DATA]:
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                data = await self.stream.receive_some(65536)
                self.http.receive_data(data)
                continue
            return event  # type: ignore[return-value]

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Reply:
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
        all_headers = [("Host", "127.0.0.1"), *headers]
        if body:
            all_headers.append(("Content-Length", str(len(body))))
        out = self.http.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            out = (out or b"") + (self.http.send(h11.Data(data=body)) or b"")
        out = (out or b"") + (self.http.send(h11.EndOfMessage()) or b"")
        await self.stream.send_all(out)
        return await self.response()

    async def response(self) -> Reply:
        event = await self._event()
        assert isinstance(event, h11.Response), event
        data = b""
        while True:
            part = await self._event()
            if isinstance(part, h11.Data):
                data += part.data
            else:
                assert isinstance(part, h11.EndOfMessage), part
                break
        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        return Reply(event.status_code, headers, data)


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(app.serve, "127.0.0.1", 0)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def fetch(
    port: int,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> Reply:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        return await Client(stream).request(method, target, headers, body)


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
        return out
