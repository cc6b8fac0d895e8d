"""Periodic Zoho jobs: the delivery reconciler and the ticket status poller.

RQ 1.16 has no cron. Each periodic job is scheduled for the next multiple of its interval
(`enqueue_at`, RQ's scheduler) with an id made of its name and that time slot, and schedules
its successor before it does its work: a run killed half-way (its work horse SIGKILLed, a job
timeout) has already scheduled the next slot, so the chain goes on (scheduling it in `finally`
lost the chain with the killed run). `start_periodic_jobs()` at worker start-up restarts a
chain broken otherwise. Ids per slot and a run marker per slot (Redis SET NX) keep it to one
run per slot however many workers start.

The reconciler is what makes delivery survive a killed worker:
- RQ 1.16 keeps a job whose worker died in its StartedJobRegistry until the job's heartbeat
  expires (at least 60 s, RQ adds 60 to the heartbeat TTL), and only a worker's maintenance
  (at start-up, then every 10 minutes) moves such jobs on: to a retry when `retries_left`
  remains, else to the failed registry. The reconciler runs that same cleanup for the `zoho`
  queue on every pass, so an abandoned delivery is retried within a pass of its expiry.
  (A work horse killed under a live worker is noticed by the worker at once and retried.)
- A `pending_delivery` ticket with no live job (lost with Redis, never enqueued because the
  submit turn could not reach Redis, or finished without delivering) is enqueued again under
  its deterministic id. A job RQ gave up on (failed registry) while the ledger still says
  pending is recorded as a dead letter and the support team is told.
- Delivered tickets whose number nobody told the user are announced; unsent notices for the
  support team are offered to the senders again.
"""
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Tuple

import redis
from rq import Queue, get_current_job
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from helpdesk import queues, redis_keys
from helpdesk.circuit import CircuitOpen
from helpdesk.clock import redis_now
from helpdesk.tickets import send_pending_notices
from helpdesk.tickets import FAILURE_CRASHED, PENDING_DELIVERY
from helpdesk.zoho import (
    ZohoAuthError,
    ZohoNotFound,
    ZohoQuotaExceeded,
    ZohoRateLimited,
    ZohoTransient,
)
from helpdesk.config import ZohoConfig, zoho_config
from helpdesk.zoho import (
    ANNOUNCE_DELIVERED,
    ANNOUNCE_STATUS,
    LIVE,
    ZOHO_QUEUE,
    announce_job_id,
    delivery_job_id,
    enqueue_announcement,
    enqueue_delivery,
    job_status,
    status_job_id,
)
from workers.zoho_resources import Context, context
from workers.zoho_jobs import record_dead_letter

logger = logging.getLogger(__name__)

RECONCILE = "zoho-reconcile"
POLL_STATUSES = "zoho-poll-statuses"
# Zoho statusType values after which a ticket is not polled any more
FINAL_STATUS_TYPES = ("Closed", "Deleted")

# name -> (job function path, interval from the config)
PERIODIC: Dict[str, Tuple[str, Callable[[ZohoConfig], float]]] = {
    RECONCILE: (queues.RECONCILE_DELIVERIES, lambda c: c.reconcile.interval_seconds),
    POLL_STATUSES: (queues.POLL_TICKET_STATUSES, lambda c: c.status_polling.interval_seconds),
}


# --- scheduling ----------------------------------------------------------------------------
def schedule_next(connection: redis.Redis, name: str, config: ZohoConfig, after: Optional[float] = None) -> Optional[str]:
    """Schedule the run of `name` for the next slot after `after`; its job id, None when off."""
    func, interval_of = PERIODIC[name]
    interval = interval_of(config)
    if interval <= 0:
        return None
    # slots by the Redis server's clock, the one the scheduler reads (workers/scheduler.py)
    slot = int((after if after is not None else redis_now(connection)) // interval) + 1
    job_id = f"{name}-{slot}"
    if job_status(connection, job_id) in LIVE:
        return job_id
    Queue(ZOHO_QUEUE, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * interval, tz=timezone.utc),
        func,
        job_id=job_id,
        job_timeout=max(60, int(interval)),
        result_ttl=int(interval * 3) + 60,
        failure_ttl=7 * 24 * 3600,
    )
    return job_id


def schedule_successor(connection: redis.Redis, name: str, config: ZohoConfig) -> Optional[str]:
    """From inside a periodic run: the next slot after this run's own slot (a worker whose
    clock is behind the scheduler's still schedules the slot after this one)."""
    interval = PERIODIC[name][1](config)
    after = redis_now(connection)
    job = get_current_job()
    prefix = f"{name}-"
    if job is not None and job.id.startswith(prefix) and job.id[len(prefix):].isdigit() and interval > 0:
        after = max(after, (int(job.id[len(prefix):]) + 0.5) * interval)
    return schedule_next(connection, name, config, after)


def start_periodic_jobs(connection: redis.Redis, config: Optional[ZohoConfig] = None) -> List[str]:
    """Worker start-up: one reconcile pass now (a crash may have left work behind), and every
    periodic Zoho job's next run scheduled. Returns the job ids."""
    config = config or zoho_config()
    started = []
    func, interval_of = PERIODIC[RECONCILE]
    if interval_of(config) > 0:
        job = Queue(ZOHO_QUEUE, connection=connection).enqueue(
            func, job_id=f"{RECONCILE}-start-{uuid.uuid4().hex[:12]}", result_ttl=600, failure_ttl=7 * 24 * 3600,
        )
        started.append(job.id)
    return started + [job_id for name in PERIODIC if (job_id := schedule_next(connection, name, config))]


def _first_run_of_slot(ctx: Context, name: str) -> bool:
    job = get_current_job()
    if job is None:
        return True
    interval = PERIODIC[name][1](ctx.config)
    return bool(ctx.redis.set(redis_keys.periodic_run(job.id), "1", nx=True, ex=max(60, int(interval * 3))))


# --- the reconciler -------------------------------------------------------------------------
def reconcile_deliveries() -> Dict[str, int]:
    ctx = context()
    schedule_successor(ctx.redis, RECONCILE, ctx.config)  # first: a killed pass keeps the chain
    if not _first_run_of_slot(ctx, RECONCILE):
        return {"skipped": 1}
    counts = reconcile(ctx) if ctx.zoho is not None else {}
    counts["notices_sent"] = send_pending_notices(ctx.ledger)
    return counts


def reconcile(ctx: Context) -> Dict[str, int]:
    """One pass (see the module docstring); counts of what it did."""
    counts = {"requeued": 0, "dead": 0, "announced": 0, "abandoned_cleaned": 0}
    registry = StartedJobRegistry(ZOHO_QUEUE, connection=ctx.redis)
    expired = registry.get_expired_job_ids()
    if expired:
        registry.cleanup()  # RQ's own handling: retry when retries remain, else failed registry
        counts["abandoned_cleaned"] = len(expired)
        logger.warning("abandoned zoho jobs handed back to RQ", extra={"jobs": expired})
    now = time.time()
    policy = ctx.config.reconcile
    for record in ctx.ledger.by_state(PENDING_DELIVERY):
        if now - record.created_at < policy.grace_seconds:
            continue
        status = job_status(ctx.redis, delivery_job_id(record.id))
        if status in LIVE:
            continue
        if status == JobStatus.FAILED:
            if record_dead_letter(ctx, record, FAILURE_CRASHED,
                                  "RQ gave up on the delivery job (its worker was killed, or it failed"
                                  " unexpectedly, in every run; see the RQ failed registry)"):
                counts["dead"] += 1
            continue
        enqueue_delivery(ctx.redis, record.id, ctx.config, record.correlation_id)
        counts["requeued"] += 1
        logger.warning("pending ticket without a live job queued again",
                       extra={"ticket_id": record.id, "job_status": status})
    since = now - ctx.config.delivery.max_pending_seconds
    for record in ctx.ledger.unannounced_delivered(now - policy.announce_after_seconds):
        if record.delivered_at < since:
            continue
        if record.announce is None and not ctx.ledger.claim_unannounced(record.id):
            continue
        job_id = announce_job_id(record.id)
        if job_status(ctx.redis, job_id) in LIVE | {JobStatus.FAILED}:
            continue
        enqueue_announcement(ctx.redis, ANNOUNCE_DELIVERED, (record.id,), job_id=job_id, config=ctx.config,
                             correlation_id=record.correlation_id)
        counts["announced"] += 1
    if any(counts.values()):
        logger.info("zoho reconcile pass", extra=counts)
    return counts


# --- status polling ----------------------------------------------------------------------------
def poll_ticket_statuses() -> Dict[str, int]:
    ctx = context()
    schedule_successor(ctx.redis, POLL_STATUSES, ctx.config)  # first: a killed pass keeps the chain
    if not _first_run_of_slot(ctx, POLL_STATUSES):
        return {"skipped": 1}
    return poll_statuses(ctx) if ctx.zoho is not None else {}


def poll_statuses(ctx: Context) -> Dict[str, int]:
    """Check open delivered tickets; a changed status is stored and announced. Stops the pass
    at the first sign of trouble (circuit open, failures, limits): the next pass goes on."""
    policy = ctx.config.status_polling
    counts = {"checked": 0, "changed": 0}
    now = time.time()
    records = ctx.ledger.open_delivered(policy.batch_size, now - policy.max_age_days * 86400, FINAL_STATUS_TYPES)
    for record in records:
        try:
            ctx.breaker.before_call()
            ticket = ctx.client.get_ticket(record.zoho_ticket_id)
        except CircuitOpen:
            break
        except ZohoNotFound:
            ctx.breaker.record_success()
            ctx.ledger.record_status(record.id, record.zoho_status, "Deleted")
            continue
        except ZohoQuotaExceeded as error:
            ctx.breaker.open_for(error.retry_after or 3600, "THRESHOLD_EXCEEDED")
            break
        except ZohoAuthError as error:
            ctx.breaker.open_for(ctx.config.circuit.auth_recovery_seconds, f"credentials refused: {error.code}")
            break
        except ZohoRateLimited:
            break
        except ZohoTransient as error:
            ctx.breaker.record_failure(str(error))
            break
        ctx.breaker.record_success()
        counts["checked"] += 1
        previous = ctx.ledger.record_status(record.id, ticket.status, ticket.status_type)
        if previous is not None and ticket.status and ticket.status != previous:
            counts["changed"] += 1
            logger.info("zoho ticket status changed",
                        extra={"ticket_id": record.id, "from": previous, "to": ticket.status})
            enqueue_announcement(
                ctx.redis, ANNOUNCE_STATUS, (record.id, ticket.status),
                job_id=status_job_id(record.id, ticket.status, time.time()),
                config=ctx.config, correlation_id=record.correlation_id,
            )
    return counts
