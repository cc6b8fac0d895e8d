"""The webhook ingress (connectors/ingress.py) as `make run` starts it, a process of its own on
a free loopback port with the test Redis: oversized bodies refused before they are buffered
(its memory read from /proc), a WhatsApp channel without its webhook secret refusing to
start, in one line, unless the development setting lets unsigned deliveries in, and the
Chatwoot agent webhook served there too (with the fake Chatwoot), so a deployment exposes only
the ingress."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from helpdesk import redis_keys
from helpdesk.chatwoot import ChatwootClient, ChatwootDirectory
from helpdesk.config import load_chatwoot_config
from helpdesk.settings import ChatwootSettings
from helpdesk.whatsapp import Route
from tests.conftest import PROJECT, free_port, wait_for_port
from tests.fakes.chatwoot import FakeChatwoot
from tests.connectors.whatsapp.support import (
    inbound_entries,
    inbound_length,
    USER,
    WAHA_HMAC_KEY,
    oversized_bodies_are_refused_before_buffering,
    waha_event,
    waha_payload,
    waha_signed,
)
from tests.workers.chatwoot_support import save_route

PATH = "/webhooks/waha/webhook"


def ingress_env(redis_url: str, port: int, **extra: str) -> Dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WAHA_", "META_", "CHATWOOT_", "HELPDESK_INSECURE", "METRICS_"))}
    env.update({"REDIS_URL": redis_url, "INGRESS_PORT": str(port), "INGRESS_HOST": "127.0.0.1",
                "WAHA_BASE_URL": "http://127.0.0.1:9", "WAHA_API_KEY": "k",
                "PYTHONPATH": str(PROJECT), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


class Ingress:
    def __init__(self, env: Dict[str, str], log: Path) -> None:
        self.port = int(env["INGRESS_PORT"])
        self.log = log
        self.output = open(log, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "connectors.ingress"], cwd=PROJECT,
                                        env=env, stdout=self.output, stderr=subprocess.STDOUT)

    def wait(self) -> None:
        assert wait_for_port(self.port, 60), self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.output.close()


@pytest.fixture
def ingress(redis_url: str, redis_client, tmp_path: Path) -> Iterator[Ingress]:
    server = Ingress(ingress_env(redis_url, free_port(), WAHA_WEBHOOK_HMAC_KEY=WAHA_HMAC_KEY),
                     tmp_path / "ingress.log")
    try:
        server.wait()
        yield server
    finally:
        server.stop()


METRICS_TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def metrics_ingress(redis_url: str, redis_client, tmp_path: Path) -> Iterator[Ingress]:
    server = Ingress(ingress_env(redis_url, free_port(), WAHA_WEBHOOK_HMAC_KEY=WAHA_HMAC_KEY,
                                 METRICS_TOKEN=METRICS_TOKEN), tmp_path / "ingress.log")
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def post_signed(port: int) -> requests.Response:
    body = json.dumps(waha_event(waha_payload(USER, "hola"))).encode()
    return requests.post(f"http://127.0.0.1:{port}{PATH}", data=body, headers=waha_signed(body),
                         timeout=30)


def test_a_120_mb_body_is_refused_before_it_is_buffered(ingress, redis_client):
    measured = oversized_bodies_are_refused_before_buffering(
        ingress.port, ingress.process.pid, PATH, lambda: post_signed(ingress.port).status_code)
    print("measured", measured)
    assert inbound_length(redis_client) == 2  # the two valid webhooks, nothing else


def test_metrics_need_the_token(metrics_ingress, redis_client):
    """/metrics: 401 without the Bearer token or with a wrong one; with it, Prometheus' text
    format holding the shared numbers (the message just accepted, read from Redis) and this
    process's webhook acknowledgement histogram."""
    url = f"http://127.0.0.1:{metrics_ingress.port}/metrics"
    assert post_signed(metrics_ingress.port).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN},
                    {"Authorization": f"Basic {METRICS_TOKEN}"}):
        refused = requests.get(url, headers=headers, timeout=30)
        assert refused.status_code == 401, headers
        assert "messages_received" not in refused.text
    answer = requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    assert samples[("messages_received_total", frozenset({("channel", "waha")}))] == 1
    assert samples[("connection_status", frozenset({("target", "redis")}))] == 1
    assert samples[("connection_status", frozenset({("target", "ledger")}))] == 1
    assert samples[("tickets_created_total", frozenset())] == 0
    process = next(dict(labels)["process"] for name, labels in samples
                   if name == "webhook_ack_seconds_count")
    assert process.startswith("ingress@")
    ack = frozenset({("process", process), ("channel", "waha"), ("status", "200")})
    assert samples[("webhook_ack_seconds_count", ack)] == 1
    assert 0 < samples[("webhook_ack_seconds_sum", ack)] < 5
    assert METRICS_TOKEN not in metrics_ingress.log.read_text()


def test_without_a_metrics_token_metrics_are_off(ingress):
    answer = requests.get(f"http://127.0.0.1:{ingress.port}/metrics",
                          headers={"Authorization": "Bearer anything"}, timeout=30)
    assert answer.status_code == 404


def test_ready_names_what_is_not_ready_one_line_each(redis_url, redis_client, tmp_path):
    """/ready beside /health: here no action server listens, so it is 503 with that line."""
    env = ingress_env(redis_url, free_port(), WAHA_WEBHOOK_HMAC_KEY=WAHA_HMAC_KEY,
                      ACTIONS_PORT=str(free_port()), DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    env = {k: v for k, v in env.items() if not k.startswith("ZOHO_")}
    server = Ingress(env, tmp_path / "ingress.log")
    try:
        server.wait()
        answer = requests.get(f"http://127.0.0.1:{server.port}/ready", timeout=30)
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["status"] == "not_ready"
        [line] = body["not_ready"]
        assert line.startswith("action_server: ")
        assert {name: c["status"] for name, c in body["checks"].items()} == {
            "redis": "ok", "ledger": "ok", "action_server": "down", "zoho": "ok"}
        assert requests.get(f"http://127.0.0.1:{server.port}/health", timeout=30).status_code == 200
    finally:
        server.stop()


def test_every_route_of_the_ingress_has_the_webhook_limit(monkeypatch):
    """Sanic's own limit (checked against Content-Length before reading, and while reading
    a chunked body) is the webhooks' limit here, not its 100 MB default."""
    from connectors.ingress import build_app
    from helpdesk.config import channel_config

    for name in ("WAHA_BASE_URL", "META_ACCESS_TOKEN", "CHATWOOT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert build_app().config.REQUEST_MAX_SIZE == channel_config().max_body_bytes


def test_without_the_hmac_key_the_ingress_refuses_to_start_in_one_line(redis_url, tmp_path):
    env = ingress_env(redis_url, free_port())
    for command in (["-m", "connectors.ingress"], ["-m", "helpdesk.launch", "ingress"]):
        started = time.monotonic()
        result = subprocess.run([sys.executable, *command], cwd=PROJECT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr[-2000:]
        assert "WAHA" in lines[0] and "WAHA_WEBHOOK_HMAC_KEY" in lines[0]
        assert "HELPDESK_INSECURE_WEBHOOKS=true" in lines[0]
        assert time.monotonic() - started < 60
        assert not wait_for_port(int(env["INGRESS_PORT"]), 0.2)


def test_with_the_development_setting_unsigned_webhooks_are_accepted_with_a_warning(
        redis_url, redis_client, tmp_path):
    server = Ingress(ingress_env(redis_url, free_port(), HELPDESK_INSECURE_WEBHOOKS="true"),
                     tmp_path / "ingress.log")
    try:
        server.wait()
        for _ in range(2):
            body = json.dumps(waha_event(waha_payload(USER, "hola"))).encode()
            answer = requests.post(f"http://127.0.0.1:{server.port}{PATH}", data=body,
                                   headers={"Content-Type": "application/json"}, timeout=30)
            assert answer.status_code == 200 and answer.json()["accepted"] == 1
    finally:
        server.stop()
    warnings = [line for line in server.log.read_text().splitlines()
                if "WAHA_WEBHOOK_HMAC_KEY" in line]
    assert len(warnings) == 1 and "unsigned" in warnings[0], server.log.read_text()[-3000:]


# --- the Chatwoot agent webhook on the ingress ---------------------------------------------
CHATWOOT_TOKEN = "ingress-chatwoot-token-0123456789"
DIRECT = "5491122334455"


@pytest.fixture(scope="module")
def fake_chatwoot() -> Iterator[FakeChatwoot]:
    with FakeChatwoot() as server:
        yield server


@pytest.fixture(scope="module")
def chatwoot_ingress(fake_chatwoot, redis_url, tmp_path_factory) -> Iterator[str]:
    fake = fake_chatwoot
    work = tmp_path_factory.mktemp("ingress")
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WAHA_", "META_", "CHATWOOT_", "REST_CHANNEL_", "HELPDESK_INSECURE"))}
    env.update({**fake.env(), "CHATWOOT_WEBHOOK_TOKEN": CHATWOOT_TOKEN, "REDIS_URL": redis_url,
                "INGRESS_PORT": str(port), "INGRESS_HOST": "127.0.0.1",
                "HELPDESK_VAR_DIR": str(work / "var"), "PYTHONPATH": str(PROJECT),
                "LOG_LEVEL": "INFO"})
    env.pop("HELPDESK_CONFIG_DIR", None)
    log = open(work / "ingress.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "connectors.ingress"], cwd=PROJECT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not wait_for_port(port, 0.5):
            assert process.poll() is None and time.monotonic() < deadline, \
                (work / "ingress.log").read_text()[-3000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_the_ingress_serves_the_chatwoot_webhook(chatwoot_ingress, fake_chatwoot, redis_client):
    ingress, fake = chatwoot_ingress, fake_chatwoot
    options = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")
    settings = ChatwootSettings(url=fake.url, api_token=fake.token, account_id=str(fake.account_id),
                                inbox_id=str(fake.inbox_id), webhook_token=CHATWOOT_TOKEN,
                                webhook_secret=None)
    client = ChatwootClient(settings, options)
    try:
        conversation = ChatwootDirectory(redis_client, options).ensure(client, DIRECT)
    finally:
        client.close()
    save_route(redis_client, DIRECT, Route(channel="waha", chat_id=f"{DIRECT}@c.us", phone=DIRECT))
    message = fake.agent_writes(conversation, "Hola, ya lo revisamos")
    url = f"{ingress}/webhooks/chatwoot/webhook"

    assert FakeChatwoot.deliver(fake.message_webhook(message["id"]), f"{url}?token=wrong")[0] == 401
    status, body = FakeChatwoot.deliver(fake.message_webhook(message["id"]),
                                        f"{url}?token={CHATWOOT_TOKEN}")
    assert (status, body) == (200, {"result": "relayed"})
    queued = [json.loads(raw) for raw in
              redis_client.lrange(redis_keys.outbox("waha", f"{DIRECT}@c.us"), 0, -1)]
    assert [m["text"] for m in queued] == ["Hola, ya lo revisamos"]
    health = requests.get(f"{ingress}/health", timeout=10).json()
    assert "chatwoot" in health["channels"]
