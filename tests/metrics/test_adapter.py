"""The cross-node adapter's families fill in when nodes share Redis, with bounded labels only."""

from __future__ import annotations

import asyncio

from .conftest import PREFIX, connect, scrape


async def test_adapter_families_count_redis_operations(start_server, redis_server) -> None:
    server = start_server(env={"REDIS_URL": redis_server.url})
    before = scrape(server)
    client = await connect(server)
    await client.send("pusher:subscribe", {"channel": "adapter-news-1234"})
    await client.expect("pusher_internal:subscription_succeeded")
    await asyncio.to_thread(server.pusher().trigger, "adapter-news-1234", "hello", {"n": 1})
    await client.expect("hello")
    after = scrape(server)
    await client.ws.close()

    def moved(name: str) -> float:
        return after.total(PREFIX + name) - before.total(PREFIX + name)

    assert moved("adapter_operations_total") > 0
    assert moved("adapter_latency_seconds_count") > 0
    assert moved("adapter_message_size_bytes_count") >= 1  # the published event went over Redis
    assert moved("adapter_errors_total") == 0
    operations = {
        dict(labels)["operation"]
        for name, labels in after.series()
        if name == PREFIX + "adapter_operations_total"
    }
    assert operations
    assert not any("adapter-news" in operation or ":" in operation for operation in operations)
