"""Operator command for dead letters: tickets Zoho Desk never got, Zoho or announcement jobs
RQ gave up on, and WhatsApp messages whose turn kept failing (parked by the Rasa server).

    python -m workers.dead_letters list [--json]     failed tickets, failed jobs, parked
                                                     messages, unsent notices
    python -m workers.dead_letters requeue <id>      a ticket (ledger id or HD- reference) or a job id
    python -m workers.dead_letters requeue-all       every failed ticket and failed job
    python -m workers.dead_letters notices [--json]  what the support team was told
    python -m workers.dead_letters inbound [--json]  the parked WhatsApp messages
    python -m workers.dead_letters replay-inbound <id>  run a parked message's turn again (at
                                                     the end of its conversation's queue)
    python -m workers.dead_letters outbound [--json] replies and notices WhatsApp never got
    python -m workers.dead_letters replay-outbound <id>  send one again (at the end of its
                                                     chat's outbox)

A re-queued ticket goes back to pending with a fresh attempt count and a fresh delivery job; if
an earlier create may have reached Zoho, the job searches for it before creating (no
duplicates). A re-queued job starts again with its full retries.
"""
import json
import sys
import time
from typing import Any, Dict, List, Optional

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from helpdesk import whatsapp
from helpdesk.logs import mask_phone
from helpdesk.tickets import FAILED, InvalidTransition, Ledger, TicketRecord
from helpdesk.settings import load_settings
from helpdesk.config import ZohoConfig, channel_config, zoho_config
from helpdesk.zoho import (
    ADD_TO_TICKET,
    ANNOUNCE_DELIVERED,
    ANNOUNCE_STATUS,
    DEFAULT_QUEUE,
    DELIVER,
    ZOHO_QUEUE,
    enqueue_addition,
    enqueue_announcement,
    enqueue_delivery,
)

QUEUES = (ZOHO_QUEUE, DEFAULT_QUEUE)
JOB_FUNCTIONS = (DELIVER, ADD_TO_TICKET, ANNOUNCE_DELIVERED, ANNOUNCE_STATUS)
USAGE = ("usage: python -m workers.dead_letters list|notices|inbound|outbound [--json] | requeue "
         "<ticket id, reference or job id> | requeue-all | replay-inbound <parked id> | "
         "replay-outbound <parked id>")


class DeadLetters:
    def __init__(self, ledger: Ledger, connection: redis.Redis, config: ZohoConfig) -> None:
        self.ledger = ledger
        self.redis = connection
        self.config = config

    # reading ------------------------------------------------------------------------------
    def failed_tickets(self) -> List[Dict[str, Any]]:
        return [
            {
                "ticket_id": r.id,
                "reference": r.reference,
                "kind": r.failure_kind,
                "attempts": r.attempts,
                "error": r.last_error,
                "field_errors": r.field_errors,
                "subject": r.subject,
                "updated_at": r.updated_at,
            }
            for r in self.ledger.by_state(FAILED)
        ]

    def failed_jobs(self) -> List[Dict[str, Any]]:
        """Failed jobs of ours, except deliveries of tickets already listed as failed."""
        jobs = []
        for queue in QUEUES:
            registry = FailedJobRegistry(queue, connection=self.redis)
            for job_id in registry.get_job_ids():
                try:
                    job = Job.fetch(job_id, connection=self.redis)
                except NoSuchJobError:
                    continue
                if job.func_name not in JOB_FUNCTIONS:
                    continue
                if job.func_name == DELIVER:
                    record = self.ledger.get(job.args[0]) if job.args else None
                    if record is not None and record.state == FAILED:
                        continue
                error = (job.exc_info or "").strip().splitlines()
                jobs.append({
                    "job_id": job.id,
                    "queue": queue,
                    "function": job.func_name,
                    "args": list(job.args),
                    "error": error[-1] if error else "",
                    "ended_at": job.ended_at.isoformat() if job.ended_at else None,
                })
        return jobs

    def notices(self, unsent_only: bool = False) -> List[Dict[str, Any]]:
        return self.ledger.human_notices(unsent_only=unsent_only)

    def parked_messages(self) -> List[Dict[str, Any]]:
        """WhatsApp messages the Rasa server gave up on, phone numbers masked."""
        return [dict(entry, conversation_id=mask_phone(entry["conversation_id"] or ""))
                for entry in whatsapp.parked(self.redis)]

    def undelivered_messages(self) -> List[Dict[str, Any]]:
        """Outgoing WhatsApp messages that were parked, phone numbers masked."""
        return [dict(entry, chat_id=mask_phone(entry["chat_id"] or ""),
                     conversation_id=mask_phone(entry["conversation_id"] or ""))
                for entry in whatsapp.undelivered(self.redis)]

    def replay_outbound(self, parked_id: str) -> str:
        try:
            whatsapp.resend(self.redis, parked_id)
        except (ValueError, TypeError) as error:
            raise LookupError(f"parked message {parked_id} is unreadable: {error}") from error
        return f"parked message {parked_id} queued for delivery again"

    def replay_inbound(self, parked_id: str) -> str:
        try:
            new_id = whatsapp.replay(self.redis, parked_id, channel_config().inbound_partitions)
        except (ValueError, TypeError) as error:
            raise LookupError(f"parked message {parked_id} is unreadable: {error}") from error
        return f"parked message {parked_id} queued again as {new_id}"

    # re-queuing ---------------------------------------------------------------------------
    def requeue(self, key: str) -> str:
        """Re-queue a ticket (ledger id or reference) or a failed job; what was done."""
        record = self.ledger.get(key) or self.ledger.find(key)
        if record is not None:
            return self._requeue_ticket(record)
        for queue in QUEUES:
            registry = FailedJobRegistry(queue, connection=self.redis)
            if key in registry.get_job_ids():
                return self._requeue_job(Job.fetch(key, connection=self.redis), queue)
        raise LookupError(f"no failed ticket or failed job '{key}'")

    def requeue_all(self) -> List[str]:
        done = [self._requeue_ticket(r) for r in self.ledger.by_state(FAILED)]
        for job in self.failed_jobs():
            done.append(self.requeue(job["job_id"]))
        return done

    def _requeue_ticket(self, record: TicketRecord) -> str:
        if record.state == FAILED:
            try:
                self.ledger.requeue(record.id)
            except InvalidTransition as error:
                raise LookupError(str(error)) from error
        elif record.state != "pending_delivery":
            raise LookupError(f"ticket {record.reference} is {record.state}, not a dead letter")
        enqueue_delivery(self.redis, record.id, self.config, record.correlation_id)
        return f"ticket {record.reference} ({record.id}) queued for delivery"

    def _requeue_job(self, job: Job, queue: str) -> str:
        args, kwargs = list(job.args), dict(job.kwargs)
        correlation_id = (job.meta or {}).get("correlation_id")
        if job.func_name == DELIVER:
            record = self.ledger.get(args[0])
            if record is None:
                raise LookupError(f"job {job.id}: the ledger has no ticket {args[0]}")
            return self._requeue_ticket(record)
        FailedJobRegistry(queue, connection=self.redis).remove(job, delete_job=True)
        if job.func_name == ADD_TO_TICKET:
            enqueue_addition(self.redis, args[0], self.config, correlation_id=correlation_id, **kwargs)
        else:
            enqueue_announcement(self.redis, job.func_name, tuple(args), job_id=job.id, config=self.config,
                                 correlation_id=correlation_id)
        return f"job {job.id} ({job.func_name}) queued again"


def _print_list(dead: DeadLetters, as_json: bool) -> None:
    tickets, jobs, unsent = dead.failed_tickets(), dead.failed_jobs(), dead.notices(unsent_only=True)
    if as_json:
        print(json.dumps({"tickets": tickets, "jobs": jobs, "parked_messages": dead.parked_messages(),
                          "undelivered_messages": dead.undelivered_messages(),
                          "unsent_notices": unsent}, ensure_ascii=False, default=str, indent=2))
        return
    print(f"Failed tickets: {len(tickets)}")
    for t in tickets:
        print(f"  {t['reference']}  {t['ticket_id']}  {t['kind'] or '-'}  attempts={t['attempts']}  {t['error'] or ''}")
        for error in t["field_errors"]:
            print(f"      {error.get('fieldName')}: {error.get('errorType')}")
    print(f"Failed jobs: {len(jobs)}")
    for j in jobs:
        print(f"  {j['job_id']}  {j['function']}  {j['args']}  {j['error']}")
    parked, undelivered = dead.parked_messages(), dead.undelivered_messages()
    print(f"Parked WhatsApp messages: {len(parked)}"
          + ("  (python -m workers.dead_letters inbound)" if parked else ""))
    print(f"WhatsApp messages not delivered: {len(undelivered)}"
          + ("  (python -m workers.dead_letters outbound)" if undelivered else ""))
    print(f"Notices not delivered to the support team: {len(unsent)}"
          + ("  (python -m workers.dead_letters notices)" if unsent else ""))


def _print_parked(entries: List[Dict[str, Any]], as_json: bool, columns: tuple) -> None:
    """Parked WhatsApp messages, in or out: JSON, or a line each."""
    if as_json:
        print(json.dumps(entries, ensure_ascii=False, default=str, indent=2))
        return
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["parked_at"]))
        shown = "  ".join(str(entry[column] or "?") for column in columns)
        print(f"  {entry['id']}  {when}  {shown}  «{(entry['text'] or '')[:80]}»  {entry['reason']}")


def main(argv: List[str], dead: Optional[DeadLetters] = None) -> int:
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if dead is None:
        settings = load_settings()
        dead = DeadLetters(Ledger(settings.database_url), redis.Redis.from_url(settings.redis_url), zoho_config())
    command, rest = argv[0], argv[1:]
    as_json = "--json" in rest
    try:
        if command == "list":
            _print_list(dead, as_json)
        elif command == "notices":
            notices = dead.notices()
            if as_json:
                print(json.dumps(notices, ensure_ascii=False, default=str, indent=2))
            for n in [] if as_json else notices:
                state = "sent" if n["sent_at"] else "NOT SENT"
                print(f"  #{n['id']}  {n['kind']}  {state}  {n['text']}")
        elif command == "inbound":
            _print_parked(dead.parked_messages(), as_json, ("conversation_id", "kind"))
        elif command == "outbound":
            _print_parked(dead.undelivered_messages(), as_json, ("channel", "chat_id", "kind"))
        elif command == "replay-outbound" and len(rest) == 1:
            print(dead.replay_outbound(rest[0]))
        elif command == "replay-inbound" and len(rest) == 1:
            print(dead.replay_inbound(rest[0]))
        elif command == "requeue" and len(rest) == 1:
            print(dead.requeue(rest[0]))
        elif command == "requeue-all" and not rest:
            done = dead.requeue_all()
            print("\n".join(done) if done else "nothing to re-queue")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except LookupError as error:
        print(f"dead_letters: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
