"""Drill: Chatwoot answers 503 to every message for longer than a mirror job's retries, then
comes back.

Must hold: every mirrored message arrives, in order, with no operator's `kick`: the periodic
recovery pass (workers/chatwoot_jobs.py `recover_mirrors`) finds the outbox with entries and
no live drain job and queues a fresh one. Before it, the conversation waited in RQ's failed
registry until someone ran `python -m workers.chatwoot_jobs kick`.

A real RQ worker (`python -m workers.worker`, with RQ's scheduler), the session's Redis, the
fake Chatwoot on loopback.
"""
import time

import pytest
from rq import Queue

from helpdesk.chatwoot import ChatwootOutbox
from helpdesk.chatwoot import mirror as chatwoot_mirror
from helpdesk.config import chatwoot_config
from helpdesk.whatsapp import Route
from tests.fakes.chatwoot import FakeChatwoot
from tests.workers.chatwoot_support import config_dir, save_route, use_env
from tests.workers.zoho_support import BackgroundWorker, wait_until

CONVERSATION = "5491133445566"
PHONE = "+5491133445566"


@pytest.fixture
def fake():
    with FakeChatwoot() as server:
        yield server


def expected(count):
    return [("incoming" if i % 2 == 0 else "outgoing", f"mensaje {i}") for i in range(count)]


def test_chatwoot_down_past_the_retries_then_up_is_mirrored_in_order_with_no_kick(
        fake, redis_url, redis_client, tmp_path, monkeypatch, database_url):
    # three attempts per job (no wait between them), a recovery pass every 2 s
    directory = config_dir(tmp_path, {"delivery": {"retry_intervals": [0, 0], "job_timeout_seconds": 60,
                                                   "circuit_failure_threshold": 50,
                                                   "recover_interval_seconds": 2}})
    env = use_env(monkeypatch, {**fake.env(), "REDIS_URL": redis_url, "DATABASE_URL": database_url,
                                "HELPDESK_CONFIG_DIR": str(directory)})
    save_route(redis_client, CONVERSATION, Route(channel="waha", chat_id=f"{CONVERSATION}@c.us",
                                                 phone=CONVERSATION))
    outage = fake.fail(503, times=None, method="POST", path=r"/messages$")
    for kind, text in expected(5):
        assert chatwoot_mirror.mirror_message(CONVERSATION, kind, text)

    worker = BackgroundWorker(env, tmp_path / "worker.log").start()
    try:
        failed = Queue("chatwoot", connection=redis_client).failed_job_registry
        wait_until(lambda: len(failed) >= 1, 60, interval=0.2, what="a drain job used its retries")
        time.sleep(3)  # still down past a recovery pass: nothing lands and nothing is dropped
        conversation = fake.conversation_of(PHONE)
        assert fake.contents(conversation["id"]) == []

        fake.rules.remove(outage)  # Chatwoot is back; nobody runs `kick`

        wait_until(lambda: fake.contents(conversation["id"]) == expected(5), 30, interval=0.2,
                   what="every message mirrored once Chatwoot answered")
        wait_until(lambda: ChatwootOutbox(redis_client, chatwoot_config()).pending(CONVERSATION) == [], 10,
                   what="the outbox emptied")
    except AssertionError:
        print(worker.log()[-6000:])
        raise
    finally:
        worker.stop()
    assert fake.contents(conversation["id"]) == expected(5)  # in order, none twice
