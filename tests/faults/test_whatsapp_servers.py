"""Fault drill: two Rasa servers share the inbound log; one conversation gets 100 messages at
50 a second and the server reading its partition is killed with SIGKILL in the middle. Every
message is handled once, in order, and every reply reaches WAHA once.

Both servers run on their own Redis database (the session's server does not read their log)
with the session's action server, and a config/ where the rate limit is off and a lease lasts
3 s (so the take-over comes quickly; 15 s in config/channels.yml).
"""
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import redis
import requests
import yaml

from helpdesk.whatsapp import inbound
from tests.conftest import free_port
from tests.faults.servers import start_rasa as _start_rasa
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message
from tests.stack import WAHA_HMAC, _stop, api_headers

MESSAGES = 100
RATE_PER_SECOND = 50
KILL_AFTER = 40  # messages sent before the kill


def _drill_config(stack, target: Path) -> Path:
    shutil.copytree(stack.env["HELPDESK_CONFIG_DIR"], target)
    channels = yaml.safe_load((target / "channels.yml").read_text(encoding="utf-8"))
    channels["rate_limit"]["messages"] = 0  # off: 100 messages in 2 s are all answered
    channels["inbound"]["lease_seconds"] = 3
    (target / "channels.yml").write_text(yaml.safe_dump(channels, allow_unicode=True),
                                         encoding="utf-8")
    return target


def _lease_holder(client: redis.Redis, partition: int) -> int:
    """The pid in the name of the server holding the partition ("<host>-<pid>")."""
    owner = client.get(inbound.lease_key(partition))
    return int(owner.decode().rsplit("-", 1)[1]) if owner else 0


def test_a_killed_server_s_conversation_goes_on_once_and_in_order(stack, fake_waha, tmp_path):
    base_redis = stack.redis_url.rsplit("/", 1)[0]
    config_dir = _drill_config(stack, tmp_path / "config")
    env = dict(stack.env, REDIS_URL=f"{base_redis}/6", HELPDESK_CONFIG_DIR=str(config_dir))
    client = redis.Redis.from_url(f"{base_redis}/6")
    client.flushdb()
    number = "5491188880002"
    chat = f"{number}@c.us"
    partitions = yaml.safe_load((config_dir / "channels.yml").read_text())["inbound"]["partitions"]
    partition = inbound.partition_of(number, partitions)
    servers = {}
    started = []

    def start(name: str) -> None:
        process, url = _start_rasa(dict(env, RASA_PORT=str(free_port())), tmp_path / f"{name}.log")
        servers[name] = (process, url)
        started.append(process)

    threads = [threading.Thread(target=start, args=(name,)) for name in ("one", "two")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(servers) == {"one", "two"}, "a Rasa server did not start"
        # both share the partitions: four leases each
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            holders = [_lease_holder(client, p) for p in range(partitions)]
            if 0 not in holders and len(set(holders)) == 2 and all(
                    holders.count(h) == partitions // 2 for h in set(holders)):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the partitions were not shared: {holders}")
        holder_pid = _lease_holder(client, partition)
        victim = next(name for name, (process, _url) in servers.items()
                      if os.getpgid(holder_pid) == process.pid)
        survivor = "two" if victim == "one" else "one"
        survivor_url = servers[survivor][1]

        fake_waha.clear()
        events = [waha_message(number, "hola", message_id=f"false_{chat}_DRILL{n:03d}")
                  for n in range(1, MESSAGES + 1)]
        session = requests.Session()
        began = time.monotonic()
        for n, event in enumerate(events, start=1):
            answer = post_waha(survivor_url, event, WAHA_HMAC, session=session)
            assert answer.status_code == 200 and answer.json()["accepted"] == 1
            if n == KILL_AFTER:
                os.killpg(servers[victim][0].pid, signal.SIGKILL)
                servers[victim][0].wait(10)
            time.sleep(max(0.0, began + n / RATE_PER_SECOND - time.monotonic()))

        # the survivor takes the partition over after the lease (3 s) and Rasa's lock of the
        # conversation the dead server held (TICKET_LOCK_LIFETIME, 60 s) and answers the rest
        deadline = time.monotonic() + 240
        while sum(client.xlen(inbound.stream(p)) for p in range(partitions)):
            assert time.monotonic() < deadline, "the inbound log was not drained"
            time.sleep(0.5)
        time.sleep(2)  # anything sent twice would arrive now
        took = time.monotonic() - began

        tracker = requests.get(f"{survivor_url}/conversations/{number}/tracker",
                               headers=api_headers(), timeout=30).json()
        handled = [e["message_id"] for e in tracker["events"] if e["event"] == "user"]
        assert handled == [event["payload"]["id"] for event in events]  # once each, in order
        bot_utterances = [e for e in tracker["events"] if e["event"] == "bot"]
        sent = texts_to(fake_waha.requests, chat)
        assert len(sent) == len(bot_utterances) >= MESSAGES  # no reply lost, none repeated
        assert os.getpgid(_lease_holder(client, partition)) == servers[survivor][0].pid
        print(f"drill: {MESSAGES} messages handled in {took:.1f} s with a server killed")
    finally:
        for process in started:
            _stop(process)
        client.flushdb()
        client.close()

