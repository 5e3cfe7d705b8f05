"""``/metrics`` of a Server on a real redis-server: the Redis adapter's publish queue (bytes
waiting while Redis is down) and its reconnects (Redis killed, then started again)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from helpers.redis_process import REDIS_SERVER, RedisProcess
from helpers.scrape import scrape, value
from helpers.sio_client import serving

from pyserver import RedisAdapter, Server


@pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(),
    reason="redis-server is not installed (apt-get install redis-server)",
)
async def test_publish_queue_and_reconnects(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    adapter = RedisAdapter(redis.url, key="metrics-test")
    sio = Server(adapter=adapter, metrics=True)
    try:
        with trio.fail_after(40):
            async with serving(sio) as url:
                await adapter.subscribed.wait()
                before = await scrape(url + "/metrics")
                redis.kill()
                while not adapter.redis_down:  # noqa: ASYNC110 (no event for it)
                    await trio.sleep(0.02)
                sio.emit("news", "x" * 100)  # for the other nodes: queued while Redis is down
                await trio.sleep(0.05)
                down = await scrape(url + "/metrics")
                redis.start()  # the same port
                while adapter.redis_down:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                while value(  # noqa: ASYNC110 (the publisher drains at its own pace)
                    await scrape(url + "/metrics"), "pyserver_adapter_publish_queue", unit="bytes"
                ):
                    await trio.sleep(0.05)
                after = await scrape(url + "/metrics")
    finally:
        redis.kill()
    assert value(before, "pyserver_adapter_reconnects_total") == 0
    assert value(before, "pyserver_adapter_publish_queue", unit="bytes") == 0
    assert value(down, "pyserver_adapter_publish_queue", unit="bytes") > 100
    assert value(after, "pyserver_adapter_reconnects_total") == 1
    assert value(after, "pyserver_adapter_publish_dropped_total") == 0
