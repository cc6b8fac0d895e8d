"""Histograms kept in Redis (helpdesk/metrics/shared.py): observations of several processes
(here: clients) add up, async and sync alike; wrong labels are a programming error; Redis
failing never fails the measured work."""
import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from helpdesk.metrics import SharedHistogram

HISTOGRAM = SharedHistogram("test_seconds", "a test histogram", (0.1, 1.0), ("process",))


def test_observations_of_several_processes_add_up(redis_url, redis_client):
    other = redis.Redis.from_url(redis_url)
    HISTOGRAM.observe(redis_client, 0.05, process="a")
    HISTOGRAM.observe(other, 0.5, process="a")
    HISTOGRAM.observe(other, 5.0, process="b")

    async def observe_async() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await HISTOGRAM.observe_async(client, 0.1, process="a")  # the bound is inclusive
        await client.close()

    asyncio.run(observe_async())
    family = HISTOGRAM.read(redis_client)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    assert samples[("test_seconds_bucket", (("le", "0.1"), ("process", "a")))] == 2
    assert samples[("test_seconds_bucket", (("le", "1.0"), ("process", "a")))] == 3
    assert samples[("test_seconds_bucket", (("le", "+Inf"), ("process", "a")))] == 3
    assert samples[("test_seconds_count", (("process", "a"),))] == 3
    assert samples[("test_seconds_sum", (("process", "a"),))] == pytest.approx(0.65)
    assert samples[("test_seconds_bucket", (("le", "1.0"), ("process", "b")))] == 0
    assert samples[("test_seconds_bucket", (("le", "+Inf"), ("process", "b")))] == 1
    other.close()


def test_wrong_labels_are_refused(redis_client):
    with pytest.raises(ValueError):
        HISTOGRAM.observe(redis_client, 1.0, server="a")


def test_redis_away_does_not_raise():
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    HISTOGRAM.observe(gone, 1.0, process="a")  # logged at debug, dropped
