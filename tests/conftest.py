"""Shared fixtures: a real Redis for the session, a fresh ledger per test, the catalog."""
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import redis

from helpdesk.launch import free_port, spawn_redis, wait_for_port  # noqa: F401 - shared with tests

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free loopback port, for this test session only. It requires a
    password, as `make run`'s own Redis does, so every process the tests start proves it gets
    the password through REDIS_URL (the password is given on stdin, never in argv)."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run `make setup`")
    port = free_port()
    password = secrets.token_urlsafe(16)
    data_dir = tempfile.mkdtemp(prefix="helpdesk-test-redis-")
    process = spawn_redis(port, Path(data_dir), password,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_port(port, 10):
            pytest.fail("the test Redis did not start")
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def catalog():
    from helpdesk.config import load_catalog

    return load_catalog(PROJECT / "config")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"


@pytest.fixture
def ledger(database_url: str):
    from helpdesk.tickets import Ledger

    return Ledger(database_url)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never touch the developer's var/ or .env values."""
    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'ledger.sqlite3'}")
    # the Rasa server's doors: each test says what it wants (a generated key under its var/)
    for name in ("RASA_AUTH_TOKEN", "RASA_HOST", "REST_CHANNEL_ENABLED", "REST_CHANNEL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
