"""Retention: what is older than config/retention.yml's limit (the spec: 90 days) is deleted.

`run_retention` is the periodic RQ job (default queue), scheduled like the periodic Zoho jobs
(workers/zoho_periodic.py): for the next multiple of its interval, under an id of its name and
time slot, with a run marker per slot, and it schedules its successor (the slot after its own)
before its pass, so a pass killed half-way does not end the chain; `schedule_retention` at
worker start-up restarts a chain broken otherwise. `apply_retention(..., now)` is
one pass with the clock given (tests pass their own):

- tracker events: the project's tracker store (helpdesk/trackers/) keeps each conversation's
  events as a list, oldest first: the events older than the limit are cut from its head
  (`trim_before`, which leaves a conversation saved meanwhile for the next run), a
  conversation with none left is deleted. Conversations still in the layout of Rasa's Redis
  tracker store (not read since the upgrade) are whole JSON documents under
  `<key_prefix>:tracker:<sender>` (endpoints.yml tracker_store `legacy_key_prefix`), their expiry
  (`record_exp`) renewed on every save, so an active user's history never expires. Each
  tracker is read with SCAN in batches; events older than the limit are dropped and the
  tracker rewritten (its expiry kept), a tracker with none left is deleted. The rewrite is a
  WATCHed transaction and a conversation in a turn (a live ticket in Rasa's lock,
  `<lock_store key_prefix>:lock:<sender>`) is left for the next run: Rasa's save merges what it
  holds with what is stored, so a turn in flight would bring old events back.
- the ledger: personal fields of finished tickets blanked (helpdesk.tickets.PERSONAL_FIELDS;
  id, reference, subject, Zoho number and states stay, so the bot still answers an old
  ticket's status), old notices, handoff rows and records of announcements said deleted.
- media files under var/media by modification time (storing the same bytes again renews it).
- dead letters: jobs in the RQ failed registry of the project's queues that ended before the
  limit, Chatwoot's refused mirror entries (a list, oldest first) and parked WhatsApp messages, in
  and out (streams whose ids are the time of parking).
- dedupe markers: all are written with a TTL shorter than the limit; a marker without one (or
  with a longer one) is given the limit.
- opt-outs are kept (a legal record until the user opts back in); a pass restores the Redis set
  from the ledger when it was lost.
"""
import json
import logging
import os
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import redis
import yaml
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from helpdesk import queues, redis_keys
from helpdesk.clock import redis_now
from helpdesk.config import RetentionConfig, retention_config
from helpdesk.settings import PROJECT_DIR, load_settings
from helpdesk.tickets import Ledger
from helpdesk.trackers import conversations, trim_before
from helpdesk.whatsapp import media_dir, restore_opt_outs

logger = logging.getLogger(__name__)

NAME = "retention"
LIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
# Rasa's own key prefixes under endpoints.yml's key_prefix (rasa/core/tracker_store.py,
# rasa/core/lock_store.py: "<key_prefix>:tracker:<sender>", "<key_prefix>:lock:<sender>")
RASA_TRACKER = "tracker:"
RASA_LOCK = "lock:"
# dedupe markers (helpdesk/redis_keys.py): written with TTLs shorter than the limit
DEDUPE_PATTERNS = (
    redis_keys.inbound_seen("*", "*"),
    redis_keys.chatwoot_webhook_seen("*"),
    redis_keys.chatwoot_posted("*"),
    redis_keys.zoho_addition_done("*"),
    redis_keys.human_notice_sent("*"),
)


# --- the job and its schedule ------------------------------------------------------------------
def schedule_retention(connection: redis.Redis, config: Optional[RetentionConfig] = None,
                       after: Optional[float] = None) -> str:
    """Schedule the next run for the slot after `after` (now); its job id."""
    config = config or retention_config()
    interval = config.interval_seconds
    # slots by the Redis server's clock, the one the scheduler reads (workers/scheduler.py)
    slot = int((after if after is not None else redis_now(connection)) // interval) + 1
    job_id = f"{NAME}-{slot}"
    try:
        if Job.fetch(job_id, connection=connection).get_status() in LIVE:
            return job_id
    except NoSuchJobError:
        pass
    Queue(queues.DEFAULT, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * interval, tz=timezone.utc),
        queues.RUN_RETENTION,
        job_id=job_id,
        job_timeout=max(600, int(interval / 4)),
        result_ttl=int(interval * 3),
        failure_ttl=7 * 24 * 3600,
    )
    return job_id


@lru_cache(maxsize=None)
def _ledger(database_url: str) -> Ledger:
    return Ledger(database_url)


def restore_opt_outs_at_start(connection: redis.Redis) -> int:
    """Worker start-up: the opted-out set back from the ledger when Redis lost it."""
    if connection.exists(redis_keys.opted_out_restored()):
        return 0
    return restore_opt_outs(connection, _ledger(load_settings().database_url))


def run_retention() -> Dict[str, int]:
    """The periodic job: the next run scheduled, then one pass now, once per time slot."""
    settings = load_settings()
    config = retention_config()
    client = redis.Redis.from_url(settings.redis_url)
    try:
        job = get_current_job()
        after = redis_now(client)
        own = job.id[len(NAME) + 1:] if job is not None and job.id.startswith(f"{NAME}-") else ""
        if own.isdigit():  # the slot after this run's own, whatever this worker's clock says
            after = max(after, (int(own) + 0.5) * config.interval_seconds)
        schedule_retention(client, config, after=after)  # first: a killed pass keeps the chain
        if job is not None and not client.set(redis_keys.periodic_run(job.id), "1", nx=True,
                                              ex=int(config.interval_seconds * 3)):
            return {"skipped": 1}
        counts = apply_retention(client, _ledger(settings.database_url), config, time.time(), media_dir())
        logger.info("retention pass", extra=counts)
        return counts
    finally:
        client.close()


def apply_retention(client: redis.Redis, ledger: Ledger, config: RetentionConfig, now: float,
                    media: Path, rasa_prefixes: Optional[Tuple[str, str]] = None) -> Dict[str, int]:
    """One pass with the clock at `now`: everything older than the limit goes (module
    docstring). Counts of what it did."""
    cutoff = now - config.seconds
    batch = config.batch_size
    counts: Dict[str, int] = {}
    trackers, locks = rasa_prefixes or rasa_key_prefixes()
    counts.update(prune_trackers(client, cutoff, batch, trackers, locks))
    counts.update(prune_event_lists(client, cutoff, batch))
    counts["tickets_redacted"] = len(ledger.redact_before(cutoff, batch))
    counts["notices_deleted"] = ledger.delete_notices_before(cutoff)
    counts["handoffs_deleted"] = ledger.delete_handoffs_before(cutoff)
    counts["announcements_deleted"] = ledger.delete_announcements_before(cutoff)
    counts["media_deleted"] = prune_media(media, cutoff)
    counts["failed_jobs_deleted"] = prune_failed_jobs(client, cutoff)
    counts["chatwoot_dead_deleted"] = prune_chatwoot_dead_letters(client, cutoff)
    counts["inbound_parked_deleted"] = prune_parked_messages(client, cutoff,
                                                             redis_keys.inbound_parked())
    counts["outbound_parked_deleted"] = prune_parked_messages(client, cutoff,
                                                              redis_keys.outbox_parked())
    counts["dedupe_capped"] = cap_dedupe_ttls(client, config.seconds, batch)
    counts["opt_outs_restored"] = (0 if client.exists(redis_keys.opted_out_restored())
                                   else restore_opt_outs(client, ledger))
    return counts


# --- trackers ------------------------------------------------------------------------------------
def rasa_key_prefixes(endpoints: Path = PROJECT_DIR / "endpoints.yml") -> Tuple[str, str]:
    """Where Rasa's Redis stores keep trackers and locks ("tracker:tracker:", "lock:lock:"),
    from endpoints.yml's key_prefix of each store, the way Rasa builds them."""
    data = yaml.safe_load(endpoints.read_text(encoding="utf-8")) or {}

    def prefix(store: str, own: str) -> str:
        section = data.get(store) or {}
        configured = str(section.get("legacy_key_prefix") or section.get("key_prefix") or "")
        return f"{configured}:{own}" if configured.isalnum() else own

    return prefix("tracker_store", RASA_TRACKER), prefix("lock_store", RASA_LOCK)


def prune_event_lists(client: redis.Redis, cutoff: float, batch: int) -> Dict[str, int]:
    """Events older than `cutoff` cut from the head of each conversation's list."""
    counts = {"histories_trimmed": 0, "histories_deleted": 0, "history_events_deleted": 0}
    for sender in conversations(client, batch):
        removed, left = trim_before(client, sender, cutoff, batch)
        if removed:
            counts["history_events_deleted"] += removed
            counts["histories_deleted" if left == 0 else "histories_trimmed"] += 1
    return counts


def _in_a_turn(client: redis.Redis, lock_key: str) -> bool:
    """Rasa's lock holds a ticket that has not expired (a crashed server's lock, whose tickets
    all expired, does not count)."""
    raw = client.get(lock_key)
    if raw is None:
        return False
    try:
        # Rasa's TicketLock.dumps: each ticket is itself a JSON string
        tickets = [json.loads(t) if isinstance(t, str) else t for t in json.loads(raw).get("tickets") or []]
        return any(float(ticket["expires"]) > time.time() for ticket in tickets)
    except (ValueError, TypeError, KeyError, AttributeError):
        return True  # unreadable: leave the conversation alone


def _keys(client: redis.Redis, pattern: str, batch: int) -> Iterator[bytes]:
    yield from client.scan_iter(match=pattern, count=batch)


def prune_trackers(client: redis.Redis, cutoff: float, batch: int, trackers: str, locks: str) -> Dict[str, int]:
    """Drop tracker events older than `cutoff`; delete trackers left empty. `trackers` and
    `locks`: Rasa's key prefixes (`rasa_key_prefixes`)."""
    counts = {"trackers_trimmed": 0, "trackers_deleted": 0, "tracker_events_deleted": 0, "trackers_busy": 0}
    for key in _keys(client, trackers + "*", batch):
        sender = key.decode()[len(trackers):]
        if _in_a_turn(client, locks + sender):
            counts["trackers_busy"] += 1  # in a turn now: the next run
            continue
        outcome, dropped = _prune_tracker(client, key, cutoff)
        if outcome:
            counts[outcome] += 1
            counts["tracker_events_deleted"] += dropped
        elif outcome is None:
            counts["trackers_busy"] += 1
    return counts


def _prune_tracker(client: redis.Redis, key: bytes, cutoff: float) -> Tuple[Optional[str], int]:
    """("trackers_trimmed" | "trackers_deleted", events dropped); ("", 0) when nothing is old;
    (None, 0) when Rasa saved it meanwhile (left for the next run)."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)
            raw = pipe.get(key)
            if raw is None:
                return "", 0
            tracker = json.loads(raw)
            events = tracker.get("events") or []
            kept = [event for event in events if (event.get("timestamp") or 0) >= cutoff]
            if len(kept) == len(events):
                return "", 0
            pipe.multi()
            if kept:
                tracker["events"] = kept
                pipe.set(key, json.dumps(tracker), keepttl=True)
            else:
                pipe.delete(key)
            pipe.execute()
        except redis.WatchError:
            return None, 0
    return ("trackers_trimmed" if kept else "trackers_deleted"), len(events) - len(kept)


# --- files -----------------------------------------------------------------------------------
def prune_media(directory: Path, cutoff: float) -> int:
    """Media files last stored before `cutoff` deleted, and folders left empty."""
    if not directory.is_dir():
        return 0
    deleted = 0
    for root, folders, files in os.walk(directory, topdown=False):
        for name in files:
            path = Path(root) / name
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    deleted += 1
            except FileNotFoundError:
                continue
        if Path(root) != directory:
            try:
                os.rmdir(root)  # only when empty
            except OSError:
                pass
    return deleted


# --- dead letters ----------------------------------------------------------------------------
def _timestamp(moment: Optional[datetime]) -> Optional[float]:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def prune_failed_jobs(client: redis.Redis, cutoff: float) -> int:
    """Jobs of the project's queues that RQ gave up on before `cutoff`, deleted."""
    deleted = 0
    for name in queues.ALL:
        registry = FailedJobRegistry(name, connection=client)
        for job_id in registry.get_job_ids():
            try:
                job = Job.fetch(job_id, connection=client)
            except NoSuchJobError:
                registry.remove(job_id)
                continue
            ended = _timestamp(job.ended_at) or _timestamp(job.enqueued_at)
            if ended is not None and ended < cutoff:
                registry.remove(job, delete_job=True)
                deleted += 1
    return deleted


def prune_chatwoot_dead_letters(client: redis.Redis, cutoff: float) -> int:
    """Chatwoot's refused entries older than `cutoff` (the list is oldest first)."""
    key = redis_keys.chatwoot_dead_letters()
    deleted = 0
    while True:
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                head = pipe.lindex(key, 0)
                if head is None or (json.loads(head).get("at") or 0) >= cutoff:
                    return deleted
                pipe.multi()
                pipe.lpop(key)
                pipe.execute()
                deleted += 1
            except redis.WatchError:
                continue


def prune_parked_messages(client: redis.Redis, cutoff: float, key: str) -> int:
    """WhatsApp messages parked before `cutoff` (a stream: its ids are the time of parking)."""
    return int(client.xtrim(key, minid=f"{int(cutoff * 1000)}-0", approximate=False))


# --- dedupe markers -----------------------------------------------------------------------------
def cap_dedupe_ttls(client: redis.Redis, limit_seconds: int, batch: int) -> int:
    """A dedupe marker without a TTL, or with one past the limit, gets the limit."""
    capped = 0
    for pattern in DEDUPE_PATTERNS:
        for key in _keys(client, pattern, batch):
            ttl = client.ttl(key)
            if ttl == -1 or ttl > limit_seconds:
                client.expire(key, limit_seconds)
                capped += 1
    return capped
