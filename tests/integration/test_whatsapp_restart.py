"""A Rasa server killed with SIGKILL right after acknowledging a WhatsApp message: the
message is answered once when the server is back.

This test runs its own Rasa server on its own Redis database (so the session's server does
not take the message over) with the session's action server.
"""
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.integration.conftest import WAHA_HMAC, _start, _stop, _wait_http, api_headers
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message


def _start_rasa(env, log: Path):
    process = _start("rasa", env, log)
    url = f"http://127.0.0.1:{env['RASA_PORT']}"
    _wait_http(f"{url}/webhooks/waha/", 240, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/status", headers=api_headers(), timeout=5)
        if status.ok and status.json().get("model_id"):
            return process, url
        time.sleep(0.5)
    pytest.fail(f"the model did not load:\n{log.read_text()[-3000:]}")


def test_sigkill_after_acknowledgement_then_restart_answers_once(stack, fake_waha, tmp_path):
    base_redis = stack.redis_url.rsplit("/", 1)[0]
    env = dict(stack.env, REDIS_URL=f"{base_redis}/5", RASA_PORT=str(free_port()))
    number = "5491188880001"
    process, url = _start_rasa(env, tmp_path / "rasa-1.log")
    try:
        fake_waha.clear()
        # the gateway is slow, so the turn cannot have replied before the kill
        fake_waha.delay_seconds = 3
        event = waha_message(number, "hola")
        answer = post_waha(url, event, WAHA_HMAC)
        assert answer.status_code == 200 and answer.json()["accepted"] == 1
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        time.sleep(3.5)
        assert texts_to(fake_waha.requests, f"{number}@c.us") == []
        fake_waha.delay_seconds = 0

        process, url = _start_rasa(env, tmp_path / "rasa-2.log")
        # the dead server's heartbeat expires, its pending entry is taken over and answered
        fake_waha.wait_for(lambda seen: len(texts_to(seen, f"{number}@c.us")) >= 1, timeout=60)
        time.sleep(3)
        texts = texts_to(fake_waha.requests, f"{number}@c.us")
        assert len(texts) == 1 and "asistente de soporte" in texts[0]
        tracker = requests.get(f"{url}/conversations/{number}/tracker",
                               headers=api_headers(), timeout=10).json()
        user_turns = [e for e in tracker["events"] if e["event"] == "user"]
        assert len(user_turns) == 1
        assert user_turns[0]["message_id"] == event["payload"]["id"]
    finally:
        fake_waha.delay_seconds = 0
        _stop(process)
