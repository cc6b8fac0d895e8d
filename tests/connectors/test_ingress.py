"""The webhook ingress (connectors/ingress.py) serves the Chatwoot agent webhook too, so a
deployment exposes only the ingress: `python -m connectors.ingress` as `make run` starts it,
on a free loopback port with the session's Redis and the fake Chatwoot, relays an agent's reply
to the user's WhatsApp outbox and refuses a wrong token, with no Rasa server anywhere."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from helpdesk import redis_keys
from helpdesk.chatwoot import ChatwootClient, ChatwootDirectory
from helpdesk.config import load_chatwoot_config
from helpdesk.settings import ChatwootSettings
from helpdesk.whatsapp import Route
from tests.conftest import PROJECT, free_port, wait_for_port
from tests.fakes.chatwoot import FakeChatwoot
from tests.workers.chatwoot_support import save_route

CHATWOOT_TOKEN = "ingress-chatwoot-token-0123456789"
DIRECT = "5491122334455"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeChatwoot]:
    with FakeChatwoot() as server:
        yield server


@pytest.fixture(scope="module")
def ingress(fake, redis_url, tmp_path_factory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("ingress")
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WAHA_", "META_", "CHATWOOT_", "REST_CHANNEL_"))}
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


def test_the_ingress_serves_the_chatwoot_webhook(ingress, fake, redis_client):
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
