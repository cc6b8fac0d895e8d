"""helpdesk/settings.py: the Redis password of the project's own Redis, and the shared
secrets every process of one installation reads alike."""
import subprocess
import sys

import pytest
import redis

from helpdesk.local_secrets import local_secret
from helpdesk.settings import is_own_redis, load_settings, with_local_redis_password
from tests.conftest import PROJECT


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://localhost", "redis://127.0.0.2:7000/1",
    "redis://[::1]:6380/3", "redis://app@127.0.0.1:6379/0",
])
def test_a_loopback_redis_without_a_password_gets_the_generated_one(url, tmp_path):
    assert is_own_redis(url)
    resolved = redis.connection.parse_url(with_local_redis_password(url, tmp_path))
    assert resolved["password"] == local_secret("redis_password", tmp_path)
    original = redis.connection.parse_url(url)
    assert {k: v for k, v in resolved.items() if k != "password"} == original


@pytest.mark.parametrize("url", [
    "redis://:operator-pw@127.0.0.1:6379/0",  # the operator's own password wins
    "redis://user:pw@127.0.0.1:6379/0",
    "redis://redis.internal:6379/0",  # another machine's Redis: the operator's business
    "rediss://127.0.0.1:6380/0",
    "unix:///run/redis.sock",
])
def test_other_urls_are_kept_as_they_are(url, tmp_path):
    assert with_local_redis_password(url, tmp_path) == url
    assert not (tmp_path / "secrets" / "redis_password").exists()


def test_load_settings_uses_it_and_every_process_agrees(monkeypatch, tmp_path):
    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    here = load_settings().redis_url
    there = subprocess.run([sys.executable, "-c", "from helpdesk.settings import load_settings; "
                            "print(load_settings().redis_url)"],
                           cwd=PROJECT, capture_output=True, text=True, check=True).stdout.strip()
    assert here == there
    assert redis.connection.parse_url(here)["password"]
