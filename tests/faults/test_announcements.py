"""Fault drills of the announcements (issue 13, "Announcements repeat"): a worker tells a
reporter the Zoho number of their ticket through the real Rasa server's `trigger_intent`, the
session's action server runs action_announce_ticket_delivered, the channel sends it to the
fake WAHA. Must hold: the reporter gets the ticket number exactly once when

(a) Rasa is slow to answer (also: frozen, below): its send is taken by WAHA at once but confirmed after the
    worker's read timeout (Rasa waits for the confirmation before it answers), so the worker's
    call times out after the user has the message and RQ runs the job again;
(b) the work horse is SIGKILLed after Rasa answered and before the ticket was marked
    announced: the drill holds SQLite's write lock on the ledger once WAHA has the message,
    the worker's `mark_announced` waits on it, and the drill kills the work horse then; RQ runs
    the job again.

Before the fix (workers/announcements.py spoke again on every run until the mark was written)
both sent the number twice (or more), and so did a Rasa server frozen (SIGSTOP) past the read
timeout: the call the worker gave up on still ran when the server went on, and so did the
retry. A real RQ worker (`python -m workers.worker`) on the drill's Redis database, the drill's
own Rasa server (tests/faults/servers.py), the session's action server and ledger.
docs/reliability.md "Announcements" says what is promised.
"""
import os
import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
import yaml
from rq.job import Job

from helpdesk import queues
from helpdesk.config import load_catalog
from helpdesk.config.zoho import load_zoho_config
from helpdesk.tickets import Ledger, build_ticket, ticket_id_for
from helpdesk.zoho import announce_job_id, enqueue_announcement
from tests.conftest import PROJECT
from tests.faults.servers import drill_server, sends_to
from tests.integration.whatsapp_payloads import post_waha, waha_message
from tests.stack import WAHA_HMAC
from tests.workers.zoho_support import BackgroundWorker, wait_until

DATABASE = 12
READ_TIMEOUT = 3  # the worker's read timeout of trigger_intent in these drills


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    work = tmp_path_factory.mktemp("announcement-drills")
    with drill_server(stack, work, DATABASE, {("rate_limit", "messages"): 0}) as server:
        config = Path(server["env"]["HELPDESK_CONFIG_DIR"])
        zoho = yaml.safe_load((config / "zoho.yml").read_text(encoding="utf-8"))
        zoho["announcements"].update(retry_intervals=[1], read_timeout=READ_TIMEOUT)
        zoho["status_polling"]["interval_seconds"] = 0  # no periodic job but the drill's
        zoho["reconcile"]["interval_seconds"] = 0
        (config / "zoho.yml").write_text(yaml.safe_dump(zoho, allow_unicode=True), encoding="utf-8")
        yield server


@pytest.fixture
def waha(fake_waha, server):
    fake_waha.clear()
    yield fake_waha
    fake_waha.clear()


@pytest.fixture
def worker(server, tmp_path) -> Iterator[BackgroundWorker]:
    env = dict(server["env"], PYTHONPATH=str(PROJECT), WORKER_HEALTH_PORT="0", LOG_LEVEL="INFO")
    started = BackgroundWorker(env, tmp_path / "worker.log").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def ledger(stack) -> Iterator[Ledger]:
    opened = Ledger(stack.database_url)  # the action server's
    yield opened
    opened.engine.dispose()


def _conversation(server: Dict[str, Any], waha) -> str:
    """A reporter who wrote through WAHA (the conversation's channel and route), answered."""
    number = "54911" + "".join(random.choice("0123456789") for _ in range(8))
    answer = post_waha(server["url"], waha_message(number, "hola"), WAHA_HMAC)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    wait_until(lambda: sends_to(waha.requests, f"{number}@c.us"), 60, what="the greeting answered")
    return number


def _delivered_ticket(server: Dict[str, Any], ledger: Ledger, conversation_id: str):
    """A ticket whose submit turn said "Zoho no está disponible…", then delivered: a worker
    tells the number. The number is the drill's own, to count its announcements."""
    catalog = load_catalog(Path(server["env"]["HELPDESK_CONFIG_DIR"]))
    ticket = build_ticket(
        catalog, ticket_id=ticket_id_for(conversation_id, time.time()), conversation_id=conversation_id,
        store="Tienda 42 (Avenida)", system="POS", description="la caja 2 no enciende, sale error E-45",
        stated_priority=None, priority_texts=["la caja 2 no enciende"], reporter_name="Ana Pérez",
        reporter_phone=conversation_id, channel="waha", mentioned_users=[], correlation_id="corr-announce")
    record, _ = ledger.submit(ticket)
    assert ledger.hand_announcement_to_worker(record.id)
    number = str(random.randint(700000, 799999))
    ledger.mark_delivered(record.id, f"zoho-{number}", number)
    return ledger.get(record.id)


def _announce(server: Dict[str, Any], record) -> None:
    config = load_zoho_config(Path(server["env"]["HELPDESK_CONFIG_DIR"]) / "zoho.yml")
    enqueue_announcement(server["redis"], queues.ANNOUNCE_DELIVERED, (record.id,),
                         job_id=announce_job_id(record.id), config=config)


def _told(waha, record) -> list:
    return [text for text in sends_to(waha.requests, f"{record.conversation_id}@c.us")
            if f"#{record.zoho_ticket_number}" in text]


def _finished(server: Dict[str, Any], record) -> bool:
    job = Job.fetch(announce_job_id(record.id), connection=server["redis"])
    return job.get_status() == "finished"


def test_rasa_answering_after_the_read_timeout_announces_once(server, waha, worker, ledger):
    number = _conversation(server, waha)
    record = _delivered_ticket(server, ledger, number)
    # WAHA takes the send at once and confirms it after the worker's read timeout
    waha.slow_chats[f"{number}@c.us"] = READ_TIMEOUT + 3
    _announce(server, record)

    wait_until(lambda: _told(waha, record), 30, what="the number sent")
    wait_until(lambda: ledger.get(record.id).announced_at or len(_told(waha, record)) > 1, 60,
               interval=0.2, what="marked announced")
    assert "no answer in" in worker.log()  # the first call did time out
    time.sleep(READ_TIMEOUT + 5)  # a retry that spoke again would have reached WAHA by now
    assert len(_told(waha, record)) == 1, _told(waha, record)
    assert ledger.get(record.id).announced_at
    assert _finished(server, record)
    assert ledger.announcement_spoken(announce_job_id(record.id))


def test_a_frozen_rasa_server_past_the_read_timeout_announces_once(server, waha, worker, ledger):
    """The Rasa server stopped (SIGSTOP) for longer than the read timeout while the job runs
    (under the server's 5 s Redis socket timeout: a longer freeze times every Redis call out at
    once, another fault): the first call waits in the server's socket, the worker gives up and
    RQ runs the job again; when the server goes on it runs the first call (its client gone) and
    the retry. Must hold: once, not twice (before the fix: twice) and not never."""
    number = _conversation(server, waha)
    record = _delivered_ticket(server, ledger, number)
    group = server["process"].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        _announce(server, record)
        wait_until(lambda: "no answer in" in worker.log(), 15, interval=0.05,
                   what="the first call timed out")
        time.sleep(0.8)  # the retry (1 s later) is on its way
    finally:
        os.killpg(group, signal.SIGCONT)
    wait_until(lambda: ledger.get(record.id).announced_at, 60, interval=0.2, what="marked announced")
    time.sleep(READ_TIMEOUT + 3)
    assert len(_told(waha, record)) == 1, _told(waha, record)
    assert _finished(server, record)


def test_a_work_horse_killed_between_speaking_and_marking_announces_once(server, waha, worker, ledger,
                                                                           stack):
    number = _conversation(server, waha)
    record = _delivered_ticket(server, ledger, number)
    waha.slow_chats[f"{number}@c.us"] = 2  # time to take the ledger's lock before Rasa answers
    lock = sqlite3.connect(stack.database_url[len("sqlite:///"):], isolation_level=None)

    def release() -> None:
        if lock.in_transaction:
            lock.execute("ROLLBACK")

    try:
        _announce(server, record)
        wait_until(lambda: _told(waha, record), 30, interval=0.02, what="the number sent")
        lock.execute("BEGIN IMMEDIATE")  # the worker's mark_announced waits on this
        wait_until(lambda: "intent triggered" in worker.log(), 20, interval=0.05,
                   what="Rasa answered the worker")
        time.sleep(0.5)  # the work horse is in mark_announced, waiting on the lock
        horse = worker.work_horse()
        assert horse is not None and ledger.get(record.id).announced_at is None
        os.kill(horse, signal.SIGKILL)
        wait_until(lambda: worker.work_horse() != horse, 20, what="the work horse gone")
        release()
        wait_until(lambda: ledger.get(record.id).announced_at, 60, interval=0.2,
                   what="marked announced by the job's next run")
    finally:
        release()
        lock.close()
    time.sleep(3)
    assert len(_told(waha, record)) == 1, _told(waha, record)
    assert _finished(server, record)
