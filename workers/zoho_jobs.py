"""RQ jobs on the `zoho` queue: deliver a ledger ticket to Zoho Desk, and add what arrives
after it (a comment, a file) to the same Zoho ticket.

Delivery, one run (`deliver_ticket`):
1. the ledger row must still be pending; one run per ticket at a time (Redis lock);
2. the circuit breaker must let us call Zoho (else: run again when it half-opens);
3. if an earlier create may have reached Zoho (`create_sent_at`: a timeout, a 5xx, a 2xx
   without id or number, a killed worker), search by the ledger id in the custom field first
   and adopt what is found — no new create until `search_settle_seconds` after the lost one;
   the mark and that check read one clock, the Redis server's (`TIME`), since the mark may be
   another worker's;
4. contact by phone (remembered, searched, created), then the ticket, with `create_sent_at`
   written before the request goes out; a remembered contact Zoho refuses (422 `/contactId:
   invalid`: an agent deleted or merged it) is forgotten, resolved again and the create sent
   once more, once;
5. delivered: the ledger gets the Zoho id and number; the user is told when the submit turn
   handed that to us; the ticket's files are queued as additions.
Failures: transient → attempt counted, retried with growing intervals, out of attempts →
dead letter; 422 and other rejections → dead letter at once, Zoho's field errors kept; 429 →
back off; THRESHOLD_EXCEEDED → circuit open until the quota resets; refused credentials →
circuit open, the support team told once. Dead letter = ledger `failed` + RQ failed registry
+ `notify_humans`. A department without zoho_id in departments.yml (read again on each try) is a
wait, not a dead letter: the support team is told once per department. Waits that are not the
ticket's fault spend no attempts; a ticket older than
`max_pending_seconds` is a dead letter anyway.
"""
import logging
import os
import time
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

import redis
from rq import get_current_job

from helpdesk import redis_keys
from helpdesk import chatwoot
from helpdesk import metrics
from helpdesk.circuit import CircuitOpen
from helpdesk.clock import redis_now
from helpdesk.config import Department, load_departments
from helpdesk.errors import ConfigError
from helpdesk.tickets import notify_humans
from helpdesk.whatsapp import in_media_dir
from helpdesk.tickets import (
    ANNOUNCE_WORKER,
    DELIVERED,
    FAILURE_CONFIG,
    FAILURE_CRASHED,
    FAILURE_EXHAUSTED,
    FAILURE_REJECTED,
    PENDING_DELIVERY,
    InvalidTransition,
    TicketRecord,
)
from helpdesk.zoho import (
    ZohoAuthError,
    ZohoError,
    ZohoPermanent,
    ZohoQuotaExceeded,
    ZohoRateLimited,
    ZohoTicket,
    ZohoTransient,
    format_field_errors,
    ticket_payload,
)
from helpdesk.zoho import (
    ANNOUNCE_DELIVERED,
    announce_job_id,
    enqueue_addition,
    enqueue_announcement,
)
from workers.job_control import RunLock, give_up, jitter, run_again_in
from workers.zoho_resources import Context, context

logger = logging.getLogger(__name__)

ADDITION_MEMORY_SECONDS = 90 * 24 * 3600  # the spec's retention


class SearchNotSettled(Exception):
    """A create whose answer was lost is too recent for the search to be trusted."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the lost create is {wait:.0f} s too recent to trust the search")
        self.wait = wait


# --- delivery --------------------------------------------------------------------------------
def deliver_ticket(ticket_id: str) -> str:
    """Deliver one ledger ticket to Zoho Desk; returns the ticket's state afterwards."""
    ctx = context()
    record = ctx.ledger.get(ticket_id)
    if record is None:
        logger.error("delivery of a ticket the ledger does not have", extra={"ticket_id": ticket_id})
        return "unknown"
    if record.state != PENDING_DELIVERY:
        return record.state
    if ctx.zoho is None:
        logger.warning("zoho desk not configured; the ticket stays pending", extra={"ticket_id": ticket_id})
        return "not_configured"
    policy = ctx.config.delivery
    lock = RunLock(ctx.redis, redis_keys.zoho_delivery_lock(ticket_id), policy.job_timeout + 30)
    if not lock.acquire():
        run_again_in(lock.wait_seconds(), "another run is delivering this ticket", _attempts_left(ctx, record))
    try:
        record = ctx.ledger.get(ticket_id)
        if record.state != PENDING_DELIVERY:
            return record.state
        return _deliver(ctx, record)
    finally:
        lock.release()


def _attempts_left(ctx: Context, record: TicketRecord) -> int:
    return max(1, ctx.config.delivery.max_attempts - int(record.attempts or 0))


def _deliver(ctx: Context, record: TicketRecord) -> str:
    policy = ctx.config.delivery
    now = redis_now(ctx.redis)  # the circuit's clock: a quota's end is compared with it
    if now - record.created_at > policy.max_pending_seconds:
        _dead_letter(
            ctx, record, FAILURE_EXHAUSTED,
            f"not delivered within {policy.max_pending_seconds:.0f} s (last error: {record.last_error})",
        )
    try:
        department_id = _department_id(ctx, record)
    except DepartmentUnconfigured as error:
        _wait_for_department(ctx, record, error)
    except ConfigError as error:
        _dead_letter(ctx, record, FAILURE_CONFIG, str(error))
    try:
        ctx.breaker.before_call()
    except CircuitOpen as closed:
        _defer(ctx, record, closed.retry_after + jitter(policy.retry_jitter), f"Zoho circuit open ({closed.reason})")
    try:
        ticket = _create_once(ctx, record, department_id)
    except SearchNotSettled as error:
        ctx.breaker.record_success()
        _defer(ctx, record, error.wait + 1, str(error))
    except ConfigError as error:
        _dead_letter(ctx, record, FAILURE_CONFIG, str(error))
    except ZohoPermanent as error:
        ctx.breaker.record_success()  # Zoho is up; it refuses this ticket
        ctx.ledger.record_attempt(record.id, error.describe())
        _dead_letter(ctx, record, FAILURE_REJECTED, error.describe(), field_errors=error.field_errors)
    except ZohoQuotaExceeded as error:
        until = now + error.retry_after if error.retry_after else _next_midnight(policy.quota_reset_timezone, now)
        ctx.breaker.open_until(until, "THRESHOLD_EXCEEDED")
        _defer(ctx, record, until - now + jitter(policy.retry_jitter), "Zoho API credits used up for today")
    except ZohoRateLimited as error:
        _back_off(ctx, record, error)
    except ZohoAuthError as error:
        _auth_refused(ctx, record, error)
    except ZohoTransient as error:
        _transient(ctx, record, error)
    ctx.breaker.record_success()
    return _delivered(ctx, record, ticket)


class DepartmentUnconfigured(ConfigError):
    """The ticket's department has no zoho_id yet: the ticket waits, it is not a dead letter."""

    def __init__(self, department: Department) -> None:
        super().__init__(f"department '{department.key}' has no zoho_id in config/departments.yml")
        self.department = department


def _department_id(ctx: Context, record: TicketRecord) -> str:
    if not ctx.zoho.ref_field:
        raise ConfigError("ZOHO_REF_FIELD is not set: without it a lost answer could make a second ticket")
    department = ctx.catalog.departments.get(record.department)
    if department is None:
        raise ConfigError(f"department '{record.department}' is not in config/departments.yml")
    if not department.zoho_id:
        # the catalog is read once per process: the operator may have filled the id in since
        try:
            fresh = load_departments(ctx.settings.config_dir / "departments.yml").get(record.department)
        except ConfigError:  # being edited, or broken: wait for it as for the missing id
            logger.exception("config/departments.yml unreadable", extra={"ticket_id": record.id})
            fresh = None
        if fresh is None or not fresh.zoho_id:
            raise DepartmentUnconfigured(fresh or department)
        department = fresh
    return department.zoho_id


def _create_once(ctx: Context, record: TicketRecord, department_id: str) -> ZohoTicket:
    client, ref_field = ctx.client, ctx.zoho.ref_field
    if record.create_sent_at:
        found = client.find_ticket_by_ref(ref_field, record.id)
        if found is not None:
            logger.info("ticket found in zoho after a lost answer", extra={"ticket_id": record.id})
            return found
        # the mark and this check by one clock (Redis's): the mark may be another worker's
        settle = record.create_sent_at + ctx.config.delivery.search_settle_seconds - redis_now(ctx.redis)
        if settle > 0:
            raise SearchNotSettled(settle)
    contact_id = record.zoho_contact_id
    if not contact_id and record.reporter_phone:
        contact_id = client.ensure_contact(
            record.reporter_phone, record.reporter_name, ctx.config.ticket.contact_last_name
        )
        ctx.ledger.set_contact(record.id, contact_id)
    try:
        return _send_create(ctx, record, department_id, contact_id)
    except ZohoPermanent as error:
        if not (contact_id and record.reporter_phone and _contact_refused(error)):
            raise
    # the remembered contact is gone (an agent deleted or merged it): forget it, find or make
    # the reporter's contact again, and create once more, once
    logger.warning("zoho refused the remembered contact; resolving it again", extra={"ticket_id": record.id})
    client.forget_contact(record.reporter_phone, contact_id)
    contact_id = client.resolve_contact(record.reporter_phone, record.reporter_name,
                                        ctx.config.ticket.contact_last_name)
    ctx.ledger.set_contact(record.id, contact_id)
    return _send_create(ctx, record, department_id, contact_id)


def _contact_refused(error: ZohoPermanent) -> bool:
    """Zoho's 422 INVALID_DATA naming the contact: `errors: [{"fieldName": "/contactId",
    "errorType": "invalid"}]` (a contact id that no longer exists)."""
    return error.status == 422 and any(
        str(item.get("fieldName", "")).lstrip("/") == "contactId" and item.get("errorType") == "invalid"
        for item in error.field_errors
    )


def _send_create(ctx: Context, record: TicketRecord, department_id: str, contact_id: Optional[str]) -> ZohoTicket:
    """One create request, marked in the ledger (by Redis's clock) before it goes out."""
    payload = ticket_payload(
        record, shape=ctx.config.ticket, department_id=department_id, contact_id=contact_id,
        ref_field=ctx.zoho.ref_field,
    )
    ctx.ledger.set_create_sent(record.id, redis_now(ctx.redis))
    try:
        return ctx.client.create_ticket(payload)
    except ZohoError as error:
        if not error.ambiguous:
            # Zoho surely did not create it: the next run need not search
            ctx.ledger.set_create_sent(record.id, record.create_sent_at)
        raise


def _delivered(ctx: Context, record: TicketRecord, ticket: ZohoTicket) -> str:
    try:
        delivered = ctx.ledger.mark_delivered(
            record.id, ticket.id, ticket.number,
            status=ticket.status, status_type=ticket.status_type, web_url=ticket.web_url,
        )
    except InvalidTransition as error:
        logger.error("zoho ticket created but the ledger row moved meanwhile",
                     extra={"ticket_id": record.id, "zoho_ticket_number": ticket.number, "error": str(error)})
        return "conflict"
    logger.info(
        "ticket delivered to zoho",
        extra={"ticket_id": record.id, "reference": record.reference, "zoho_ticket_number": ticket.number,
               "attempts": delivered.attempts},
    )
    correlation_id = record.correlation_id
    try:  # the Zoho number on the agents' note in Chatwoot
        chatwoot.note_ticket(record.conversation_id, record.id, correlation_id)
    except Exception:
        logger.exception("ticket note not queued for Chatwoot", extra={"ticket_id": record.id})
    if delivered.announce == ANNOUNCE_WORKER and not delivered.announced_at:
        try:
            enqueue_announcement(ctx.redis, ANNOUNCE_DELIVERED, (record.id,), job_id=announce_job_id(record.id),
                                 config=ctx.config, correlation_id=correlation_id)
        except redis.RedisError:
            logger.exception("announcement not queued; the reconciler will", extra={"ticket_id": record.id})
    for index, path in enumerate(delivered.attachments or []):
        try:
            enqueue_addition(ctx.redis, record.id, ctx.config, attachment_path=str(path),
                             addition_id=f"{record.id}:attachment:{index}", correlation_id=correlation_id)
        except redis.RedisError:
            logger.exception("attachment upload not queued", extra={"ticket_id": record.id, "index": index})
    return DELIVERED


# --- failures ---------------------------------------------------------------------------------
def _defer(ctx: Context, record: TicketRecord, delay: float, reason: str) -> None:
    """Run again later without spending an attempt."""
    ctx.ledger.note_deferral(record.id, reason, redis_now(ctx.redis) + delay)
    logger.info("delivery deferred", extra={"ticket_id": record.id, "delay": round(delay, 1), "reason": reason})
    run_again_in(delay, reason, _attempts_left(ctx, record))


def _wait_for_department(ctx: Context, record: TicketRecord, error: DepartmentUnconfigured) -> None:
    """No zoho_id for the ticket's department: tell the support team (once per department
    a day) and try again later, without spending an attempt."""
    department = error.department
    try:
        notify_humans(
            ctx.ledger,
            "department_unconfigured",
            ctx.config.human_notices["department_unconfigured"].format(
                department=department.key, name=department.name, reference=record.reference),
            ticket_id=record.id,
            once_per=f"department_unconfigured:{department.key}",
            once_seconds=24 * 3600,
            client=ctx.redis,
        )
    except Exception:  # the notice is best effort; the ticket waits either way
        logger.exception("support team not told about the missing zoho_id", extra={"ticket_id": record.id})
    policy = ctx.config.delivery
    _defer(ctx, record, policy.unconfigured_retry_seconds + jitter(policy.retry_jitter), str(error))


def _back_off(ctx: Context, record: TicketRecord, error: ZohoRateLimited) -> None:
    policy = ctx.config.delivery
    ctx.breaker.record_success()  # Zoho is up, only busy
    job = get_current_job()
    count = 1
    if job is not None:
        count = int(job.meta.get("rate_limited", 0)) + 1
        job.meta["rate_limited"] = count
        job.save_meta()
    steps = policy.rate_limited_backoff
    delay = error.retry_after if error.retry_after else steps[min(count, len(steps)) - 1]
    _defer(ctx, record, delay + jitter(policy.retry_jitter), f"Zoho asks to slow down ({error.code})")


def _auth_refused(ctx: Context, record: TicketRecord, error: ZohoAuthError) -> None:
    wait = ctx.config.circuit.auth_recovery_seconds
    ctx.breaker.open_for(wait, f"credentials refused: {error.code or error}")
    notify_humans(
        ctx.ledger,
        "zoho_auth",
        ctx.config.human_notices["zoho_auth"].format(error=str(error)),
        ticket_id=record.id,
        once_per="zoho_auth",
        once_seconds=int(wait),
        client=ctx.redis,
    )
    _defer(ctx, record, wait + jitter(ctx.config.delivery.retry_jitter), f"Zoho refused the credentials: {error}")


def _transient(ctx: Context, record: TicketRecord, error: ZohoTransient) -> None:
    policy = ctx.config.delivery
    ctx.breaker.record_failure(str(error))
    attempt = int(record.attempts or 0) + 1
    delay = policy.retry_interval(attempt) + jitter(policy.retry_jitter)
    attempts = ctx.ledger.record_attempt(record.id, error.describe(), redis_now(ctx.redis) + delay)
    if attempts >= policy.max_attempts:
        _dead_letter(ctx, record, FAILURE_EXHAUSTED, error.describe(), attempts=attempts)
    logger.warning(
        "delivery attempt failed",
        extra={"ticket_id": record.id, "attempt": attempts, "error": error.describe(), "retry_in": round(delay, 1)},
    )
    run_again_in(delay, error.describe(), policy.max_attempts - attempts)


def dead_letter_text(ctx: Context, record: TicketRecord, kind: str, error: str,
                     field_errors: Optional[List[Dict[str, Any]]] = None, attempts: Optional[int] = None) -> str:
    templates = ctx.config.human_notices
    template = {FAILURE_REJECTED: "ticket_rejected", FAILURE_CONFIG: "ticket_config",
                FAILURE_CRASHED: "ticket_crashed"}.get(kind, "ticket_exhausted")
    return templates[template].format(
        reference=record.reference,
        errors=format_field_errors(field_errors) if field_errors else error,
        attempts=attempts if attempts is not None else record.attempts,
        error=error,
    )


def record_dead_letter(ctx: Context, record: TicketRecord, kind: str, error: str,
                       field_errors: Optional[List[Dict[str, Any]]] = None,
                       attempts: Optional[int] = None) -> bool:
    """Ledger failed + the support team told. False when the row had moved meanwhile."""
    try:
        ctx.ledger.mark_failed(record.id, error, kind=kind, field_errors=field_errors)
    except InvalidTransition as moved:
        logger.warning("dead letter not recorded: the ticket moved", extra={"ticket_id": record.id, "error": str(moved)})
        return False
    metrics.count_ticket_failed(ctx.redis, kind)  # tickets_failed_total{kind}
    notify_humans(ctx.ledger, f"ticket_{kind}", dead_letter_text(ctx, record, kind, error, field_errors, attempts),
                  ticket_id=record.id)
    return True


def _dead_letter(ctx: Context, record: TicketRecord, kind: str, error: str,
                 field_errors: Optional[List[Dict[str, Any]]] = None, attempts: Optional[int] = None) -> None:
    record_dead_letter(ctx, record, kind, error, field_errors, attempts)
    give_up(f"ticket {record.reference} ({record.id}) is a dead letter ({kind}): {error}")


def _next_midnight(timezone_name: str, now: float) -> float:
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(now, ZoneInfo(timezone_name))
    return (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


# --- information after creation -----------------------------------------------------------------
def add_to_ticket(
    ticket_id: str,
    comment_text: Optional[str] = None,
    attachment_path: Optional[str] = None,
    addition_id: Optional[str] = None,
) -> str:
    """Add a comment and/or a file to the ticket's Zoho ticket, once it is delivered.

    Never creates a ticket. Idempotent per `addition_id`: before sending again after a run
    that may have sent it, the ticket's comments (a marker in the text) or attachments (the
    file name) are checked.
    """
    ctx = context()
    record = ctx.ledger.get(ticket_id)
    if record is None:
        give_up(f"addition for a ticket the ledger does not have: {ticket_id}")
    if ctx.zoho is None:
        return "not_configured"
    job = get_current_job()
    meta = job.meta if job is not None else {}
    # by Redis's clock: the next run that compares it may be another worker's
    now = redis_now(ctx.redis)
    first_seen = float(meta.setdefault("first_seen", now))
    policy = ctx.config.additions
    if record.state != DELIVERED:
        if now - first_seen > policy.max_wait_seconds:
            _addition_failed(ctx, record, comment_text, attachment_path, "the ticket never reached Zoho Desk")
        if job is not None:
            job.save_meta()
        run_again_in(policy.wait_for_delivery_seconds, f"waiting for the delivery of {record.reference}",
                     policy.max_attempts)
    identity = addition_id or f"{ticket_id}:{comment_text}:{attachment_path}"
    done_key = redis_keys.zoho_addition_done(identity)
    if ctx.redis.exists(done_key):
        return "already added"
    lock = RunLock(ctx.redis, redis_keys.zoho_addition_lock(identity), ctx.config.delivery.job_timeout + 30)
    if not lock.acquire():
        run_again_in(lock.wait_seconds(), "another run is adding this", policy.max_attempts)
    try:
        try:
            ctx.breaker.before_call()
        except CircuitOpen as closed:
            run_again_in(closed.retry_after + jitter(ctx.config.delivery.retry_jitter),
                         f"Zoho circuit open ({closed.reason})", job.retries_left if job else 1)
        try:
            done = []
            if comment_text:
                done.append(_add_comment(ctx, record, comment_text, addition_id, meta, job))
            if attachment_path:
                done.append(_add_attachment(ctx, record, attachment_path, meta, job))
        except (ZohoPermanent, FileNotFoundError, IsADirectoryError) as error:
            if isinstance(error, ZohoPermanent):
                ctx.breaker.record_success()
            _addition_failed(ctx, record, comment_text, attachment_path, str(error))
        except ZohoQuotaExceeded as error:
            now = redis_now(ctx.redis)
            until = now + error.retry_after if error.retry_after else _next_midnight(
                ctx.config.delivery.quota_reset_timezone, now)
            ctx.breaker.open_until(until, "THRESHOLD_EXCEEDED")
            run_again_in(until - now, "Zoho API credits used up for today", job.retries_left if job else 1)
        except ZohoRateLimited as error:
            run_again_in(error.retry_after or ctx.config.delivery.rate_limited_backoff[0],
                         f"Zoho asks to slow down ({error.code})", job.retries_left if job else 1)
        except ZohoAuthError as error:
            ctx.breaker.open_for(ctx.config.circuit.auth_recovery_seconds, f"credentials refused: {error.code}")
            run_again_in(ctx.config.circuit.auth_recovery_seconds, str(error), job.retries_left if job else 1)
        except ZohoTransient as error:
            ctx.breaker.record_failure(str(error))
            attempts = int(meta.get("attempts", 0)) + 1
            meta["attempts"] = attempts
            if job is not None:
                job.save_meta()
            if attempts >= policy.max_attempts:
                _addition_failed(ctx, record, comment_text, attachment_path, error.describe())
            run_again_in(policy.retry_interval(attempts), error.describe(), policy.max_attempts - attempts)
        ctx.breaker.record_success()
        ctx.redis.set(done_key, ", ".join(done), ex=ADDITION_MEMORY_SECONDS)
        logger.info("added to zoho ticket", extra={"ticket_id": ticket_id, "added": done})
        return ", ".join(done)
    finally:
        lock.release()


def _marker(addition_id: Optional[str]) -> str:
    return f"[ref {addition_id[:16]}]" if addition_id else ""


def _add_comment(ctx: Context, record: TicketRecord, text: str, addition_id: Optional[str],
                 meta: Dict[str, Any], job: Any) -> str:
    marker = _marker(addition_id)
    content = f"{text}\n\n{marker}" if marker else text
    if meta.get("comment_sent_at") and marker:
        for comment in ctx.client.list_comments(record.zoho_ticket_id):
            if marker in (comment.get("content") or ""):
                return f"comment {comment.get('id')} (already there)"
    if job is not None:
        meta["comment_sent_at"] = time.time()
        job.save_meta()
    comment_id = ctx.client.add_comment(record.zoho_ticket_id, content, public=ctx.config.ticket.public_comments)
    return f"comment {comment_id}"


def _add_attachment(ctx: Context, record: TicketRecord, path: str, meta: Dict[str, Any], job: Any) -> str:
    if not in_media_dir(path):
        # the actions accept only files of the media directory; a ledger row from before that
        # check (or written by a forged call) must not make us upload `.env` to Zoho
        logger.warning("attachment refused: not a file of the media directory",
                       extra={"ticket_id": record.id, "source": "ledger"})
        return "attachment refused (not in the media directory)"
    name = os.path.basename(path)
    size = os.path.getsize(path)
    if meta.get("attachment_sent_at"):
        for attachment in ctx.client.list_attachments(record.zoho_ticket_id):
            if attachment.get("name") == name and str(attachment.get("size")) == str(size):
                return f"attachment {attachment.get('id')} (already there)"
    if job is not None:
        meta["attachment_sent_at"] = time.time()
        job.save_meta()
    answer = ctx.client.upload_attachment(record.zoho_ticket_id, path, public=ctx.config.ticket.public_attachments)
    return f"attachment {answer.get('id')}"


def _addition_failed(ctx: Context, record: TicketRecord, comment_text: Optional[str],
                     attachment_path: Optional[str], error: str) -> None:
    notices = ctx.config.human_notices
    what = (notices["addition_file"].format(name=os.path.basename(attachment_path)) if attachment_path
            else notices["addition_comment"])
    notify_humans(
        ctx.ledger,
        "addition_failed",
        notices["addition_failed"].format(what=what, reference=record.reference, error=error),
        ticket_id=record.id,
    )
    give_up(f"addition to {record.reference} failed: {error}")
