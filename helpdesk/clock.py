"""One clock for what several processes compare: Redis's `TIME`.

A create mark written by one worker and read by another, a circuit opened by one process
and checked by the next: each compares a time another process wrote. Every process's own
clock may be off by seconds (a container without NTP, a VM resumed); the Redis server's is
the same for all of them, so times that cross processes are read from it.

That includes every scheduled job: the time a job is due (a follow-up, a retry, a periodic
slot) is written by one process and compared with "now" by the worker running RQ's scheduler,
so both read this clock (workers/scheduler.py).
"""
from datetime import datetime, timezone

import redis


def redis_now(client: redis.Redis) -> float:
    """Epoch seconds by the Redis server's clock (`TIME`)."""
    seconds, microseconds = client.time()
    return int(seconds) + int(microseconds) / 1_000_000


def redis_datetime(client: redis.Redis, delay_seconds: float = 0.0) -> datetime:
    """`delay_seconds` from now by the Redis server's clock, as the aware UTC datetime RQ's
    `enqueue_at` takes."""
    return datetime.fromtimestamp(redis_now(client) + delay_seconds, timezone.utc)
