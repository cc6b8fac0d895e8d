"""Readiness (helpdesk/health.py `readiness`, what /ready answers) against the session's real
Redis and a real SQLite ledger: Zoho's set-up judged by the last `make zoho-check` kept in
Redis, one line per thing not ready."""
import asyncio
import json

import pytest

from helpdesk import redis_keys
from helpdesk.health import readiness
from helpdesk.settings import load_settings
from tests.conftest import free_port
from tests.fakes.zoho import FakeZoho


@pytest.fixture
def env(monkeypatch, redis_url, redis_client, database_url):
    for name in ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN", "ZOHO_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ACTIONS_PORT", str(free_port()))  # nothing listens there
    return monkeypatch


def ready(action_server=False):
    return asyncio.run(readiness(load_settings(), action_server=action_server))


def test_without_zoho_redis_and_ledger_are_enough(env):
    ok, body = ready()
    assert ok and body["status"] == "ready" and body["not_ready"] == []
    assert {name: c["status"] for name, c in body["checks"].items()} == {
        "redis": "ok", "ledger": "ok", "zoho": "ok"}


def test_a_down_action_server_is_one_line(env):
    ok, body = ready(action_server=True)
    assert not ok and body["status"] == "not_ready"
    [line] = body["not_ready"]
    assert line.startswith("action_server: ")


def test_zoho_configured_is_ready_only_after_a_clean_zoho_check(env, redis_client):
    for name, value in FakeZoho().env().items():  # configured, never called here
        env.setenv(name, value)
    ok, body = ready()
    assert not ok and body["not_ready"] == ["zoho: set-up not checked yet: run make zoho-check"]

    redis_client.set(redis_keys.zoho_check(), json.dumps(
        {"ok": False, "missing": ["department 'it' ...", "department 'payments' ..."], "resolved": {}}))
    ok, body = ready()
    assert not ok and body["not_ready"] == ["zoho: configuration incomplete (2 missing): run make zoho-check"]
    assert body["checks"]["zoho"]["status"] == "not_ready"

    redis_client.set(redis_keys.zoho_check(), json.dumps({"ok": True, "missing": [], "resolved": {"it": "1"}}))
    ok, body = ready()
    assert ok and body["not_ready"] == []


def test_redis_down_is_named(env):
    env.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    ok, body = ready()
    assert not ok
    assert [line.split(":")[0] for line in body["not_ready"]] == ["redis"]
