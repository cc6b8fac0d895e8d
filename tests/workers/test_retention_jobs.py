"""Retention (workers/retention_jobs.py) with a controlled clock, against the session's real
Redis, Rasa's own Redis tracker store, real RQ registries and the real ledger (SQLite in tmp):
nothing younger than the limit is touched, everything older is gone, opt-outs stay, and the
job schedules itself once per slot."""
import asyncio
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import pytest
from rasa.core.lock_store import RedisLockStore
from rasa.core.tracker_store import RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from helpdesk import queues, redis_keys
from helpdesk.config import RetentionConfig, load_retention_config
from helpdesk.tickets import DELIVERED, Ledger, Ticket, reference_for, ticket_id_for
from helpdesk.whatsapp import OptOutRegistry, store
from tests.conftest import PROJECT
from workers import retention_jobs
from workers.retention_jobs import apply_retention, rasa_key_prefixes, schedule_retention

DAY = 86400
NOW = 1_800_000_000.0  # the test's clock: 2027-01-15
CONFIG = RetentionConfig(days=90, run_every_hours=24, batch_size=2)  # small batches: SCAN loops
OLD = NOW - 91 * DAY
YOUNG = NOW - 89 * DAY


DOMAIN = Domain.load(str(PROJECT / "domain.yml"))


@pytest.fixture
def tracker_store(redis_url, redis_client):
    """Rasa's Redis tracker store as endpoints.yml configures it, on the test Redis."""
    url = urlparse(redis_url)
    store = RedisTrackerStore(DOMAIN, host=url.hostname, port=url.port, db=0,
                              password=url.password, key_prefix="tracker", record_exp=90 * DAY)
    yield store
    store.red.close()


def conversation(sender, *timestamps):
    """A tracker with one session per timestamp: session start, a message, a slot."""
    events = []
    for when in timestamps:
        events += [ActionExecuted("action_session_start", timestamp=when),
                   SessionStarted(timestamp=when),
                   ActionExecuted("action_listen", timestamp=when),
                   UserUttered("hola", {"name": "greet"}, timestamp=when + 1),
                   SlotSet("ticket_number", "1001", timestamp=when + 2)]
    return DialogueStateTracker.from_events(sender, events, slots=DOMAIN.slots)


@pytest.fixture
def lock_store(redis_url, redis_client):
    """Rasa's Redis lock store as endpoints.yml configures it."""
    url = urlparse(redis_url)
    store = RedisLockStore(host=url.hostname, port=url.port, db=0, password=url.password, key_prefix="lock")
    yield store
    store.red.close()


def run_pass(redis_client, ledger, media, now=NOW, config=CONFIG):
    return apply_retention(redis_client, ledger, config, now, media)


def test_rasa_s_keys_as_endpoints_yml_configures_them(tmp_path):
    assert rasa_key_prefixes() == ("tracker:tracker:", "lock:lock:")
    assert rasa_key_prefixes(PROJECT / "endpoints.yml") == ("tracker:tracker:", "lock:lock:")
    bare = tmp_path / "endpoints.yml"
    bare.write_text("tracker_store:\n  type: redis\n", encoding="utf-8")
    assert rasa_key_prefixes(bare) == ("tracker:", "lock:")  # Rasa's defaults


def test_tracker_events_older_than_the_limit_go_and_younger_ones_stay(tracker_store, lock_store, redis_client,
                                                                      ledger, tmp_path):
    asyncio.run(tracker_store.save(conversation("mixed", OLD - DAY, OLD, YOUNG, NOW - 60)))
    asyncio.run(tracker_store.save(conversation("idle", OLD - 5 * DAY, OLD)))
    asyncio.run(tracker_store.save(conversation("active", YOUNG, NOW - 60)))
    asyncio.run(tracker_store.save(conversation("in-a-turn", OLD)))
    ticket = lock_store.issue_ticket("in-a-turn", 60)  # a turn is running
    asyncio.run(tracker_store.save(conversation("crashed-in-a-turn", OLD)))
    lock_store.issue_ticket("crashed-in-a-turn", -60)  # a dead server's lock: its ticket expired
    assert redis_client.exists("lock:lock:in-a-turn", "lock:lock:crashed-in-a-turn") == 2
    young_before = redis_client.get("tracker:tracker:active")
    ttl_before = redis_client.ttl("tracker:tracker:mixed")

    counts = run_pass(redis_client, ledger, tmp_path / "media")

    assert (counts["trackers_trimmed"], counts["trackers_deleted"], counts["trackers_busy"]) == (1, 2, 1)
    assert counts["tracker_events_deleted"] == 10 + 10 + 5  # two old sessions of each, and one
    # Rasa reads the trimmed tracker: the two young sessions, whole and in order
    mixed = asyncio.run(tracker_store.retrieve_full_tracker("mixed"))
    assert [e.timestamp for e in mixed.events] == [YOUNG] * 3 + [YOUNG + 1, YOUNG + 2] + [NOW - 60] * 3 + [
        NOW - 59, NOW - 58]
    assert mixed.get_slot("ticket_number") == "1001"
    assert 0 < redis_client.ttl("tracker:tracker:mixed") <= ttl_before  # its expiry kept
    # a conversation with nothing younger is gone; one with nothing older untouched
    assert asyncio.run(tracker_store.retrieve_full_tracker("idle")) is None
    assert asyncio.run(tracker_store.retrieve_full_tracker("crashed-in-a-turn")) is None
    assert redis_client.get("tracker:tracker:active") == young_before
    assert len(asyncio.run(tracker_store.retrieve_full_tracker("in-a-turn")).events) == 5

    # the turn ended: the next run takes it; a second pass over the rest finds nothing to do
    lock_store.cleanup("in-a-turn", ticket)
    assert not redis_client.exists("lock:lock:in-a-turn")
    again = run_pass(redis_client, ledger, tmp_path / "media")
    assert (again["trackers_trimmed"], again["trackers_deleted"], again["trackers_busy"]) == (0, 1, 0)


def test_a_rasa_save_after_the_trim_goes_on_from_the_trimmed_tracker(tracker_store, redis_client,
                                                                     ledger, tmp_path):
    asyncio.run(tracker_store.save(conversation("5491122334455", OLD, YOUNG)))
    run_pass(redis_client, ledger, tmp_path / "media")
    tracker = asyncio.run(tracker_store.retrieve("5491122334455"))
    tracker.update(UserUttered("gracias", {"name": "thanks"}, timestamp=NOW))
    asyncio.run(tracker_store.save(tracker))
    stored = asyncio.run(tracker_store.retrieve_full_tracker("5491122334455"))
    assert min(e.timestamp for e in stored.events) == YOUNG
    assert stored.events[-1].text == "gracias"


def make_ticket(started: float, conversation_id="5491122334455") -> Ticket:
    ticket_id = ticket_id_for(conversation_id, started)
    return Ticket(id=ticket_id, reference=reference_for(ticket_id, "HD-"), conversation_id=conversation_id,
                  subject="POS / caja en Tienda 42 (Avenida): la caja 2 no abre",
                  description="la caja 2 no abre, llamar a Ana al 11 5555 0000", priority="normal",
                  classification="Problem", department="it", store="Tienda 42 (Avenida)", system="POS",
                  reporter_name="Ana Pérez", reporter_phone="5491122334455", channel="whatsapp",
                  affected_person="Luis", error_messages=["E-45"], attachments=[],
                  mentioned_users=["@5491100000001"], correlation_id="c0ffee")


def aged(ledger: Ledger, table: str, row_id, when: float) -> None:
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE {table} SET created_at = ? WHERE id = ?", (when, row_id))


def test_ledger_personal_fields_notices_handoffs_and_announcements_older_than_the_limit_go(redis_client, ledger, tmp_path):
    old, _ = ledger.submit(make_ticket(1.0))
    ledger.mark_delivered(old.id, "zoho-1", "1001", status="Open", status_type="Open")
    young, _ = ledger.submit(make_ticket(2.0))
    ledger.mark_delivered(young.id, "zoho-2", "1002")
    aged(ledger, "tickets", old.id, OLD)
    aged(ledger, "tickets", young.id, YOUNG)
    old_notice = ledger.add_human_notice("dead_letter", "El ticket HD-X no pudo enviarse")
    young_notice = ledger.add_human_notice("dead_letter", "otro")
    aged(ledger, "human_notices", old_notice, OLD)
    aged(ledger, "human_notices", young_notice, YOUNG)
    old_handoff = ledger.record_handoff_request("5491122334455", "asked", "quiero hablar con alguien", None)
    young_handoff = ledger.record_handoff_request("5491122334455", "asked", "de nuevo", None)
    aged(ledger, "handoff_requests", old_handoff, OLD)
    aged(ledger, "handoff_requests", young_handoff, YOUNG)
    for key, when in (("announce-delivered-old", OLD), ("announce-delivered-young", YOUNG)):
        ledger.record_announcement(key, "5491122334455")
        with ledger.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE announcements SET spoken_at = ? WHERE key = ?", (when, key))

    counts = run_pass(redis_client, ledger, tmp_path / "media")

    assert (counts["tickets_redacted"], counts["notices_deleted"], counts["handoffs_deleted"],
            counts["announcements_deleted"]) == (1, 1, 1, 1)
    assert ledger.announcement_spoken("announce-delivered-old") is None
    assert ledger.announcement_spoken("announce-delivered-young") == YOUNG
    gone = ledger.get(old.id)
    assert (gone.description, gone.reporter_name, gone.reporter_phone, gone.affected_person,
            gone.error_messages, gone.mentioned_users) == ("", None, None, None, [], [])
    # what reporting and status questions need stays
    assert (gone.id, gone.reference, gone.zoho_ticket_number, gone.state, gone.zoho_status) == (
        old.id, old.reference, "1001", DELIVERED, "Open")
    kept = ledger.get(young.id)
    assert (kept.description, kept.reporter_name, kept.reporter_phone) == (
        "la caja 2 no abre, llamar a Ana al 11 5555 0000", "Ana Pérez", "5491122334455")
    assert kept.redacted_at is None
    assert [n["id"] for n in ledger.human_notices()] == [young_notice]
    assert [r["id"] for r in ledger.handoff_requests("5491122334455")] == [young_handoff]


def set_mtime(path: str, when: float) -> None:
    os.utime(path, (when, when))


def test_media_files_go_by_their_time_and_a_file_sent_again_is_young(redis_client, ledger, tmp_path):
    media = tmp_path / "media"
    old = store(b"%PDF-1.4 viejo", "application/pdf", "document", directory=media)
    young = store(b"%PDF-1.4 nuevo", "application/pdf", "document", directory=media)
    again = store(b"\xff\xd8\xff foto", "image/jpeg", "image", directory=media)
    for path in (old.path, again.path):
        set_mtime(path, OLD)
    set_mtime(young.path, YOUNG)
    store(b"\xff\xd8\xff foto", "image/jpeg", "image", directory=media)  # the same photo sent today
    assert os.path.getmtime(again.path) > NOW - 90 * DAY  # storing it again made it young

    counts = run_pass(redis_client, ledger, media)

    assert counts["media_deleted"] == 1
    assert not Path(old.path).exists() and not Path(old.path).parent.exists()  # its folder too
    assert Path(young.path).read_bytes() == b"%PDF-1.4 nuevo"
    assert Path(again.path).exists()
    assert run_pass(redis_client, ledger, tmp_path / "nothing-here")["media_deleted"] == 0


def failed_job(redis_client, queue_name: str, ended: float) -> Job:
    """A job RQ gave up on at `ended`, in the queue's failed registry as RQ leaves it."""
    job = Queue(queue_name, connection=redis_client).enqueue(queues.RUN_RETENTION, failure_ttl=365 * DAY)
    job.ended_at = datetime.fromtimestamp(ended, tz=timezone.utc).replace(tzinfo=None)
    job.set_status("failed")
    job.save()
    Queue(queue_name, connection=redis_client).remove(job)
    FailedJobRegistry(queue_name, connection=redis_client).add(job, ttl=365 * DAY, exc_string="Traceback")
    return job


def test_dead_letters_older_than_the_limit_go(redis_client, ledger, tmp_path):
    old = [failed_job(redis_client, name, OLD) for name in (queues.ZOHO, queues.CHATWOOT)]
    young = failed_job(redis_client, queues.DEFAULT, YOUNG)
    dead = redis_keys.chatwoot_dead_letters()
    for when in (OLD - DAY, OLD, YOUNG):
        redis_client.rpush(dead, json.dumps({"conversation_id": "549", "entry": {"kind": "message"},
                                             "error": "422", "at": when}))

    parked = redis_keys.inbound_parked()
    for key in (parked, redis_keys.outbox_parked()):
        for when in (OLD - DAY, OLD, YOUNG):
            redis_client.xadd(key, {"m": "{}", "reason": "3 attempts failed"},
                              id=f"{int(when * 1000)}-0")

    counts = run_pass(redis_client, ledger, tmp_path / "media")

    assert (counts["failed_jobs_deleted"], counts["chatwoot_dead_deleted"]) == (2, 2)
    assert counts["inbound_parked_deleted"] == counts["outbound_parked_deleted"] == 2
    assert [entry_id for entry_id, _ in redis_client.xrange(parked)] == [
        f"{int(YOUNG * 1000)}-0".encode()]
    for job in old:
        assert not redis_client.exists(job.key)
        assert job.id not in FailedJobRegistry(job.origin, connection=redis_client).get_job_ids()
    assert FailedJobRegistry(queues.DEFAULT, connection=redis_client).get_job_ids() == [young.id]
    assert [json.loads(raw)["at"] for raw in redis_client.lrange(dead, 0, -1)] == [YOUNG]


def test_dedupe_markers_never_outlive_the_limit(redis_client, ledger, tmp_path):
    seen = redis_keys.inbound_seen("waha", "wamid.1")
    redis_client.set(seen, "1", ex=7 * DAY)  # as the inbound script writes it
    forever = redis_keys.chatwoot_webhook_seen("delivery:9")
    redis_client.set(forever, "1")  # no TTL: would never go
    too_long = redis_keys.zoho_addition_done("t:1")
    redis_client.set(too_long, "1", ex=400 * DAY)
    other = redis_keys.route("549")  # not a dedupe marker: not retention's to touch
    redis_client.set(other, "x")

    counts = run_pass(redis_client, ledger, tmp_path / "media")

    assert counts["dedupe_capped"] == 2
    assert 6 * DAY < redis_client.ttl(seen) <= 7 * DAY
    assert 89 * DAY < redis_client.ttl(forever) <= 90 * DAY
    assert 89 * DAY < redis_client.ttl(too_long) <= 90 * DAY
    assert redis_client.ttl(other) == -1


def test_opt_outs_are_kept_whatever_their_age_and_come_back_after_a_redis_loss(redis_client, ledger, tmp_path):
    OptOutRegistry(redis_client, ledger).opt_out("5491122334455")
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE opt_outs SET created_at = ?", (OLD - 300 * DAY,))

    assert run_pass(redis_client, ledger, tmp_path / "media")["opt_outs_restored"] == 0
    assert ledger.opt_outs() == ["5491122334455"]
    redis_client.flushdb()  # Redis lost
    assert run_pass(redis_client, ledger, tmp_path / "media")["opt_outs_restored"] == 1
    assert redis_client.sismember(redis_keys.opted_out_set(), "5491122334455")


def test_a_shorter_limit_from_the_config(redis_client, ledger, tmp_path, tracker_store):
    path = tmp_path / "retention.yml"
    path.write_text("days: 30\n", encoding="utf-8")
    config = load_retention_config(path)
    asyncio.run(tracker_store.save(conversation("549", NOW - 31 * DAY, NOW - 29 * DAY)))
    counts = run_pass(redis_client, ledger, tmp_path / "media", config=config)
    assert counts["trackers_trimmed"] == 1
    events = asyncio.run(tracker_store.retrieve_full_tracker("549")).events
    assert min(e.timestamp for e in events) == NOW - 29 * DAY


# --- the schedule --------------------------------------------------------------------------------
def test_schedule_retention_once_per_slot_on_the_default_queue(redis_client):
    first = schedule_retention(redis_client, CONFIG, after=NOW)
    second = schedule_retention(redis_client, CONFIG, after=NOW + 60)  # another worker starting
    assert first == second == f"retention-{int(NOW // DAY) + 1}"
    job = Job.fetch(first, connection=redis_client)
    assert job.func_name == queues.RUN_RETENTION and job.origin == queues.DEFAULT
    scheduled = ScheduledJobRegistry(queues.DEFAULT, connection=redis_client)
    assert scheduled.get_job_ids() == [first]
    assert scheduled.get_scheduled_time(first).timestamp() == (int(NOW // DAY) + 1) * DAY


def test_the_job_runs_a_pass_and_schedules_the_next(monkeypatch, redis_url, redis_client, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    retention_jobs._ledger.cache_clear()
    ledger = Ledger(os.environ["DATABASE_URL"])
    old, _ = ledger.submit(make_ticket(1.0))
    ledger.mark_failed(old.id, "rejected")
    aged(ledger, "tickets", old.id, 1000.0)

    counts = retention_jobs.run_retention()

    assert counts["tickets_redacted"] == 1 and ledger.get(old.id).description == ""
    assert len(ScheduledJobRegistry(queues.DEFAULT, connection=redis_client).get_job_ids()) == 1
    retention_jobs._ledger.cache_clear()
