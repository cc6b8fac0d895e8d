"""One clock for what several processes compare: Redis's `TIME`.

A create mark written by one worker and read by another, a circuit opened by one process
and checked by the next: each compares a time another process wrote. Every process's own
clock may be off by seconds (a container without NTP, a VM resumed); the Redis server's is
the same for all of them, so times that cross processes are read from it.
"""
import redis


def redis_now(client: redis.Redis) -> float:
    """Epoch seconds by the Redis server's clock (`TIME`)."""
    seconds, microseconds = client.time()
    return int(seconds) + int(microseconds) / 1_000_000
