"""Fixtures the WhatsApp conversation tests share (follow-ups, hand-back, the mark-lost drill):
a fresh number per test, a client of the session stack's Redis, and the fake WAHA cleared
around each test. A module uses them by importing them by name."""
import time
from typing import Iterator

import pytest
import redis


@pytest.fixture
def number() -> str:
    return "54911" + str(time.time_ns())[-8:]


@pytest.fixture
def client(stack) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(stack.redis_url)
    yield connection
    connection.close()


@pytest.fixture(autouse=True)
def _fresh_waha(fake_waha):
    fake_waha.clear()
    yield
    fake_waha.clear()
