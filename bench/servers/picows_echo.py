"""Echo peer: picows (Cython, callback API on the default asyncio loop)."""

from __future__ import annotations

import argparse
import asyncio

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            # Frame by frame, keeping opcode and FIN, so fragmented messages echo as sent.
            transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)


def listener_factory(request: WSUpgradeRequest) -> Echo:
    return Echo()


async def main(port: int) -> None:
    server = await ws_create_server(
        listener_factory, "127.0.0.1", port, max_frame_size=16 * 1024 * 1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
