"""Fault drills of the media fetched at acceptance (connectors/whatsapp/media_fetch.py):
WAHA deletes a message's file seconds after the message (180 s in WAHA; a few here).

1. A backlog: the Rasa server is stopped (SIGSTOP) when an image arrives at the ingress, and
   resumed only after WAHA deleted the file; the turn that then runs still has the image in
   its metadata (on the tracker, stored under var/media) and the user is not asked to send it
   again. Before the fetch queue the turn fetched the file when it started: gone.
2. The process holding a fetch dies: an ingress of its own reads the job and stalls in the
   download (the fake WAHA holds the file), is killed with SIGKILL; a second ingress takes
   the job over (XAUTOCLAIM after media.fetch_claim_seconds) and stores the file before WAHA
   deletes it.
"""
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import redis
import requests

from helpdesk import redis_keys
from helpdesk.whatsapp import direct_conversation_id
from tests.conftest import free_port
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message
from tests.stack import WAHA_HMAC, WAHA_KEY, _start, _stop, _wait_http

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def _number() -> str:
    return "54911" + "".join(random.choice("0123456789") for _ in range(8))


def _gone(fake_waha, path: str) -> bool:
    answer = requests.get(f"{fake_waha.url}{path}", headers={"X-Api-Key": WAHA_KEY}, timeout=5)
    return answer.status_code == 404


def test_an_image_whose_turn_starts_after_waha_deleted_the_file_still_reaches_the_turn(
        stack, fake_waha):
    fake_waha.clear()
    number = _number()
    path = f"/api/files/default/backlog-{number}.jpg"
    data = JPEG + number.encode()
    # deleted 3 s after the message: the ingress fetches it at once; the backlog lasts until
    # it is gone, and stays under the Rasa server's 5 s Redis socket timeout (a longer freeze
    # of the whole process is a different fault: its Redis calls time out all at once)
    url = fake_waha.serve_file(path, data, "image/jpeg", lifetime=3)
    rasa = stack.processes["rasa"]
    os.killpg(rasa.pid, signal.SIGSTOP)  # the backlog: no turn runs meanwhile
    try:
        event = waha_message(number, "no imprime la fiscal, mire la foto",
                             media={"url": url, "mimetype": "image/jpeg", "filename": None,
                                    "error": None})
        answer = post_waha(stack.ingress_url, event, WAHA_HMAC)
        assert answer.status_code == 200 and answer.json()["accepted"] == 1
        deadline = time.monotonic() + 30
        while not _gone(fake_waha, path):  # WAHA deletes the file
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        os.killpg(rasa.pid, signal.SIGCONT)
    chat = f"{number}@c.us"
    fake_waha.wait_for(lambda seen: len(texts_to(seen, chat)) >= 1, timeout=90)
    conversation = direct_conversation_id(number)
    deadline = time.monotonic() + 60
    while True:
        events = stack.tracker(conversation)["events"]
        users = [e for e in events if e["event"] == "user"]
        if users:
            break
        assert time.monotonic() < deadline, "the turn never reached the tracker"
        time.sleep(0.5)
    media = (users[0].get("metadata") or {}).get("media") or []
    assert len(media) == 1, users[0].get("metadata")
    assert Path(media[0]["path"]).read_bytes() == data
    assert media[0]["mime_type"] == "image/jpeg"
    time.sleep(1)
    assert not any(t.startswith("No pude descargar") for t in texts_to(fake_waha.requests, chat))


def test_a_fetch_held_by_a_killed_process_is_fetched_by_another(stack, fake_waha, tmp_path):
    base_redis = stack.redis_url.rsplit("/", 1)[0]
    url_db = f"{base_redis}/9"
    client = redis.Redis.from_url(url_db)
    client.flushdb()
    fake_waha.clear()
    number = _number()
    path = f"/api/files/default/killed-{number}.jpg"
    data = JPEG + b"killed" + number.encode()
    url = fake_waha.serve_file(path, data, "image/jpeg", lifetime=60)
    processes = []

    def ingress(name: str):
        port = free_port()
        env = dict(stack.env, REDIS_URL=url_db, INGRESS_PORT=str(port))
        log = tmp_path / f"{name}.log"
        process = _start("ingress", env, log)
        processes.append(process)
        _wait_http(f"http://127.0.0.1:{port}/health", 60, process, log)
        return process, f"http://127.0.0.1:{port}"

    try:
        first, first_url = ingress("ingress-1")
        fake_waha.file_delay_seconds = 30  # the first download stalls in WAHA
        event = waha_message(number, "", media={"url": url, "mimetype": "image/jpeg"})
        answer = post_waha(first_url, event, WAHA_HMAC)
        assert answer.status_code == 200 and answer.json()["accepted"] == 1
        fake_waha.wait_for(lambda seen: any(r["path"] == path for r in seen), timeout=30)
        pending = client.xpending(redis_keys.media_fetches(), "fetchers")
        assert pending["pending"] == 1
        os.killpg(first.pid, signal.SIGKILL)  # it dies holding the fetch
        first.wait(10)
        fake_waha.file_delay_seconds = 0
        record_key = redis_keys.media_fetched("waha", event["payload"]["id"])
        assert json.loads(client.get(record_key))["state"] == "pending"

        ingress("ingress-2")
        deadline = time.monotonic() + 60
        while True:
            record = json.loads(client.get(record_key) or "{}")
            if record.get("state") != "pending":
                break
            assert time.monotonic() < deadline, "nobody took the fetch over"
            time.sleep(0.2)
        assert record["state"] == "stored", record
        assert Path(record["media"]["path"]).read_bytes() == data
        assert len(fake_waha.calls(path)) == 2  # the killed one's, then the taker's
        assert client.xpending(redis_keys.media_fetches(), "fetchers")["pending"] == 0
        assert client.xlen(redis_keys.media_fetches()) == 0
    finally:
        fake_waha.file_delay_seconds = 0
        for process in processes:
            _stop(process)
        client.flushdb()
        client.close()
