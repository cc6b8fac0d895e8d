"""helpdesk/clock.py: the one clock is the Redis server's, not the caller's."""
import time

from helpdesk.clock import redis_now


def test_redis_now_is_the_servers_time_whatever_the_callers_clock_says(redis_client, monkeypatch):
    before = redis_now(redis_client)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # this process's clock an hour ahead
    now = redis_now(redis_client)
    assert 0 <= now - before < 60
    seconds, microseconds = redis_client.time()
    assert abs((seconds + microseconds / 1e6) - now) < 60
    assert abs(now - real()) < 60  # the session's Redis runs on this machine's clock


def test_redis_datetime_is_an_aware_utc_time_delay_seconds_after_the_servers_now(redis_client):
    from datetime import timezone

    from helpdesk.clock import redis_datetime

    before = redis_now(redis_client)
    due = redis_datetime(redis_client, 8)
    assert due.tzinfo is timezone.utc
    assert 8 <= due.timestamp() - before < 8 + 60
