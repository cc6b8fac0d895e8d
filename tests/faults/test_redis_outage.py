"""Fault drill: Redis stopped for 10 s while WAHA delivers messages, then started again.

The drill has a redis-server of its own (persistent: the append-only file keeps what was
accepted across the stop) and a Rasa server on it, with the session's config/ for tests and
the rate limit off. No action server: greetings need none. WAHA is played by a sender that
retries a delivery answered 5xx or not answered, as WAHA does.
"""
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest
import redis
import requests
import yaml

from helpdesk import redis_keys
from helpdesk.launch import spawn_redis, stack_env
from tests.conftest import free_port, wait_for_port
from tests.faults.servers import sends_to, start_rasa
from tests.integration.whatsapp_payloads import post_waha, waha_message
from tests.stack import AUTH_TOKEN, MODEL, REST_TOKEN, WAHA_HMAC, _stop, api_headers, \
    gateway_env
from tests.stack import test_config_dir as config_for_tests

CHATS = 5
PER_CHAT = 8
RATE_PER_SECOND = 10
OUTAGE_SECONDS = 10
STOP_AFTER = 10  # messages sent before Redis stops


def _redis(port: int, data: Path, password: str) -> subprocess.Popen:
    process = spawn_redis(port, data, password, persistent=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_port(port, 10), "the drill's Redis did not start"
    return process


def test_redis_stopped_under_load_nothing_accepted_is_lost_and_all_resume(fake_waha,
                                                                          fake_meta):
    """Must hold: while Redis is down the webhook answers 503 (so the gateway retries), never
    200 for a message it could not record; nothing accepted is lost; the consumer and the
    outbox drainer resume by themselves when Redis is back: every message answered once, in
    order per chat; deliveries WAHA makes again are answered as duplicates, not again."""
    work = Path(tempfile.mkdtemp(prefix="helpdesk-redis-drill-"))
    port, password = free_port(), secrets.token_urlsafe(16)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    (work / "redis").mkdir()
    servers = {"redis": _redis(port, work / "redis", password)}
    config = config_for_tests(work)
    channels = yaml.safe_load((config / "channels.yml").read_text(encoding="utf-8"))
    channels["rate_limit"]["messages"] = 0
    (config / "channels.yml").write_text(yaml.safe_dump(channels, allow_unicode=True),
                                         encoding="utf-8")
    env = stack_env({**os.environ, **gateway_env(fake_waha, fake_meta),
                     "HELPDESK_CONFIG_DIR": str(config)},
                    redis_url=url, rasa_port=free_port(), actions_port=free_port(),
                    work_dir=work, model=MODEL, auth_token=AUTH_TOKEN, rest_token=REST_TOKEN)
    rasa = None
    try:
        rasa, rasa_url = start_rasa(env, work / "rasa.log")
        fake_waha.clear()
        numbers = [f"54911555500{n:02d}" for n in range(CHATS)]
        events = [waha_message(numbers[i % CHATS], "hola") for i in range(CHATS * PER_CHAT)]
        statuses: Dict[str, List[int]] = {e["payload"]["id"]: [] for e in events}

        def deliver(event) -> None:
            """WAHA's webhook retries: again after 1 s while 5xx or no answer (60 s at most)."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    answer = post_waha(rasa_url, event, WAHA_HMAC)
                    statuses[event["payload"]["id"]].append(answer.status_code)
                    if answer.status_code < 500:
                        return
                except requests.RequestException:
                    statuses[event["payload"]["id"]].append(0)
                time.sleep(1)

        def restart() -> None:
            servers["redis"] = _redis(port, work / "redis", password)

        began = time.monotonic()
        for n, event in enumerate(events, start=1):
            deliver(event)  # one at a time, in order, as WAHA delivers a session's events
            if n == STOP_AFTER:
                servers["redis"].send_signal(signal.SIGTERM)  # writes its AOF and exits
                servers["redis"].wait(15)
                back = threading.Timer(OUTAGE_SECONDS, restart)
                back.start()
            time.sleep(max(0.0, began + n / RATE_PER_SECOND - time.monotonic()))
        back.join()

        refused = [mid for mid, seen in statuses.items() if any(s >= 500 or s == 0 for s in seen)]
        assert refused, "no delivery met the outage"
        assert all(seen[-1] == 200 for seen in statuses.values()), statuses
        # every message answered once, in order per chat
        deadline = time.monotonic() + 180
        while sum(len(sends_to(fake_waha.requests, f"{n}@c.us")) for n in numbers) < len(events):
            assert time.monotonic() < deadline, "not every message was answered"
            time.sleep(0.5)
        # WAHA delivers the first messages again (its retry of an answer it lost)
        for event in events[:STOP_AFTER]:
            answer = post_waha(rasa_url, event, WAHA_HMAC)
            assert answer.status_code == 200 and not answer.json().get("accepted"), answer.text
        time.sleep(3)  # a second copy would arrive now
        for number in numbers:
            assert len(sends_to(fake_waha.requests, f"{number}@c.us")) == PER_CHAT
            tracker = requests.get(f"{rasa_url}/conversations/{number}/tracker",
                                   headers=api_headers(), timeout=10).json()
            handled = [e["message_id"] for e in tracker["events"] if e["event"] == "user"]
            assert handled == [e["payload"]["id"] for e in events
                               if e["payload"]["from"] == f"{number}@c.us"]
        client = redis.Redis.from_url(url)
        assert client.xlen(redis_keys.inbound_parked()) == 0
        client.close()
        print(f"drill: {len(events)} messages, {len(refused)} refused with 503 or unanswered "
              f"during a {OUTAGE_SECONDS} s Redis stop, all answered once")
    finally:
        if rasa is not None:
            _stop(rasa)
        if servers["redis"].poll() is None:
            servers["redis"].terminate()
            servers["redis"].wait(10)
        shutil.rmtree(work, ignore_errors=True)
