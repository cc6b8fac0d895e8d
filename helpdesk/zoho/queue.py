"""Putting Zoho work on the RQ queue: delivery of a ticket, and what arrives after it.

Shared by the submit action (which must not import workers/) and the workers themselves.
Jobs are named by dotted path, so nothing here imports the job code. Job ids are
deterministic per ticket (`zoho-deliver-<ticket id>`): whoever enqueues — the submit turn, a
redelivered action call, the reconciler, an operator — finds the live job instead of adding a
second one, and the reconciler can tell a ticket with no live job.
"""
import hashlib
import logging
import time
from typing import Any, Dict, Optional

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.exceptions import NoSuchJobError
from rq.registry import FailedJobRegistry

from helpdesk import queues, redis_keys
from helpdesk.config import RetryPolicy, ZohoConfig

logger = logging.getLogger(__name__)

ZOHO_QUEUE = queues.ZOHO
DEFAULT_QUEUE = queues.DEFAULT

DELIVER = queues.DELIVER_TICKET
ADD_TO_TICKET = queues.ADD_TO_TICKET
ANNOUNCE_DELIVERED = queues.ANNOUNCE_DELIVERED
ANNOUNCE_STATUS = queues.ANNOUNCE_STATUS

LIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
RESULT_TTL = 24 * 3600
FAILURE_TTL = 90 * 24 * 3600  # dead letters stay as long as the spec keeps data


def delivery_job_id(ticket_id: str) -> str:
    return f"zoho-deliver-{ticket_id}"


def addition_job_id(addition_id: str) -> str:
    return "zoho-add-" + hashlib.sha1(addition_id.encode()).hexdigest()[:20]


def announce_job_id(ticket_id: str) -> str:
    return f"announce-delivered-{ticket_id}"


def status_job_id(ticket_id: str, status: str, seen_at: float) -> str:
    digest = hashlib.sha1(f"{status}:{seen_at:.3f}".encode()).hexdigest()[:12]
    return f"announce-status-{ticket_id}-{digest}"


def job_status(connection: redis.Redis, job_id: str) -> Optional[str]:
    try:
        return Job.fetch(job_id, connection=connection).get_status(refresh=False)
    except NoSuchJobError:
        return None


def _enqueue_once(
    connection: redis.Redis,
    queue_name: str,
    func: str,
    args: tuple,
    *,
    job_id: str,
    retry: Retry,
    job_timeout: int,
    correlation_id: Optional[str],
    kwargs: Optional[Dict[str, Any]] = None,
) -> Optional[Job]:
    """Enqueue unless a job of that id is waiting or running; a dead or finished one is replaced.

    None when another process is enqueuing the same id at this moment (it will be there).
    """
    guard = redis_keys.enqueue_guard(job_id)
    if not connection.set(guard, "1", nx=True, px=3000):
        time.sleep(0.05)
        try:
            return Job.fetch(job_id, connection=connection)
        except NoSuchJobError:
            return None
    try:
        return _replace_unless_live(
            connection, queue_name, func, args, job_id=job_id, retry=retry, job_timeout=job_timeout,
            correlation_id=correlation_id, kwargs=kwargs,
        )
    finally:
        connection.delete(guard)


def _replace_unless_live(
    connection: redis.Redis,
    queue_name: str,
    func: str,
    args: tuple,
    *,
    job_id: str,
    retry: Retry,
    job_timeout: int,
    correlation_id: Optional[str],
    kwargs: Optional[Dict[str, Any]],
) -> Job:
    try:
        existing = Job.fetch(job_id, connection=connection)
        status = existing.get_status(refresh=False)
        if status in LIVE:
            return existing
        if status == JobStatus.FAILED:
            FailedJobRegistry(queue_name, connection=connection).remove(existing, delete_job=False)
    except NoSuchJobError:
        pass
    queue = Queue(queue_name, connection=connection)
    return queue.enqueue(
        func,
        args=args,
        kwargs=kwargs or {},
        job_id=job_id,
        retry=retry,
        job_timeout=job_timeout,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        meta={"correlation_id": correlation_id} if correlation_id else {},
    )


def _retry(policy: RetryPolicy) -> Retry:
    """RQ's Retry giving the n-th retry the n-th interval of the policy (RQ reads its list
    from the end as retries run out)."""
    count = max(1, policy.max_attempts - 1)
    return Retry(max=count, interval=[int(round(policy.retry_interval(n))) for n in range(1, count + 1)])


def enqueue_delivery(
    connection: redis.Redis, ticket_id: str, config: ZohoConfig, correlation_id: Optional[str] = None
) -> Optional[Job]:
    """Queue the delivery of a ledger ticket to Zoho Desk (idempotent per ticket)."""
    policy = config.delivery
    return _enqueue_once(
        connection,
        ZOHO_QUEUE,
        DELIVER,
        (ticket_id,),
        job_id=delivery_job_id(ticket_id),
        retry=_retry(policy),
        job_timeout=policy.job_timeout,
        correlation_id=correlation_id,
    )


def enqueue_addition(
    connection: redis.Redis,
    ticket_id: str,
    config: ZohoConfig,
    *,
    comment_text: Optional[str] = None,
    attachment_path: Optional[str] = None,
    addition_id: Optional[str] = None,
    correlation_id: Optional[str] = None,
) -> Optional[Job]:
    """Queue a comment or a file for a ticket's Zoho ticket (after its delivery, never a new
    ticket). `addition_id` makes it idempotent: the same id is one comment or file in Zoho."""
    if not comment_text and not attachment_path:
        raise ValueError("an addition needs comment_text or attachment_path")
    if addition_id is None:
        basis = f"{ticket_id}:{comment_text or ''}:{attachment_path or ''}"
        addition_id = hashlib.sha1(basis.encode()).hexdigest()
    return _enqueue_once(
        connection,
        ZOHO_QUEUE,
        ADD_TO_TICKET,
        (ticket_id,),
        kwargs={"comment_text": comment_text, "attachment_path": attachment_path, "addition_id": addition_id},
        job_id=addition_job_id(addition_id),
        retry=_retry(config.additions),
        job_timeout=config.delivery.job_timeout,
        correlation_id=correlation_id,
    )


def enqueue_announcement(
    connection: redis.Redis,
    func: str,
    args: tuple,
    *,
    job_id: str,
    config: ZohoConfig,
    correlation_id: Optional[str] = None,
) -> Optional[Job]:
    """Queue a message to a user through Rasa (workers.announcements), retried per config."""
    policy = config.announcements
    return _enqueue_once(
        connection,
        DEFAULT_QUEUE,
        func,
        args,
        job_id=job_id,
        retry=_retry(policy),
        job_timeout=int(policy.connect_timeout + policy.read_timeout) * 4 + 30,
        correlation_id=correlation_id,
    )
