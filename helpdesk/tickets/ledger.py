"""The ledger: the record of every ticket and its delivery state (SQLAlchemy 1.4).

A ticket is written here first, with its own id as the idempotency key; a worker delivers it
to Zoho Desk later and moves its state on. SQLite in `var/` by default, any SQLAlchemy URL
(PostgreSQL in production) by `DATABASE_URL`. Calls are blocking: async code runs them in a
thread (`asyncio.to_thread`).

Delivery bookkeeping lives on the ticket row too: `create_sent_at` (a create may have reached
Zoho: search before creating again), `announce` (who tells the user the Zoho number: the
submit turn or a worker), the last Zoho status seen, and why a dead letter failed. Notices for
the support team are rows of `human_notices`, opt-outs rows of `opt_outs`. Announcements said are rows of
`announcements` (one per ticket and thing announced). Retention blanks an old ticket's
personal fields (`redact_before`) and deletes old notices, handoff and announcement rows.
The schema changes only through migrations (helpdesk/tickets/schema.py, Alembic): a change to
the tables here comes with a new revision in helpdesk/tickets/migrations/versions/.
"""
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpdesk.tickets.schema import migrate
from helpdesk.tickets.ticket import Ticket, reference_for

logger = logging.getLogger(__name__)

PENDING_DELIVERY = "pending_delivery"
DELIVERED = "delivered"
FAILED = "failed"
# state -> states it may move to
TRANSITIONS = {
    PENDING_DELIVERY: {DELIVERED, FAILED},
    FAILED: {PENDING_DELIVERY},  # an operator re-queues a dead letter
    DELIVERED: set(),
}

metadata = MetaData()

tickets_table = Table(
    "tickets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("reference", String(32), nullable=False, unique=True),
    Column("conversation_id", String(128), nullable=False, index=True),
    Column("subject", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("department", String(64), nullable=False),
    Column("store", String(128)),
    Column("system", String(128)),
    Column("reporter_name", String(128)),
    Column("reporter_phone", String(32)),
    Column("channel", String(32)),
    Column("affected_person", String(128)),
    Column("error_messages", Text, nullable=False, default="[]"),
    Column("attachments", Text, nullable=False, default="[]"),
    Column("mentioned_users", Text, nullable=False, default="[]"),
    Column("correlation_id", String(64)),
    Column("state", String(32), nullable=False, index=True),
    Column("zoho_ticket_id", String(64)),
    Column("zoho_ticket_number", String(32), index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # delivery bookkeeping (added with Zoho delivery; revision 0001 adds them to older ledgers)
    Column("zoho_contact_id", String(64)),
    Column("zoho_web_url", String(512)),
    Column("zoho_status", String(120)),
    Column("zoho_status_type", String(32)),
    Column("status_checked_at", Float),
    Column("create_sent_at", Float),
    Column("next_attempt_at", Float),
    Column("delivered_at", Float),
    Column("failure_kind", String(32)),
    Column("field_errors", Text),
    Column("announce", String(16)),
    Column("announced_at", Float),
    # retention (workers/retention_jobs.py): when the personal fields were blanked
    Column("redacted_at", Float),
)

# what retention blanks on an old ticket; id, reference, subject, Zoho ids and states stay
PERSONAL_FIELDS = {
    "description": "",
    "reporter_name": None,
    "reporter_phone": None,
    "affected_person": None,
    "error_messages": "[]",
    "attachments": "[]",
    "mentioned_users": "[]",
}

# who tells the user the Zoho ticket number
ANNOUNCE_TURN = "turn"  # the submit action, in the same turn
ANNOUNCE_WORKER = "worker"  # a worker, through Rasa's trigger_intent, once delivered

# why a ticket is a dead letter
FAILURE_REJECTED = "rejected"  # Zoho refused the data (422 ...)
FAILURE_EXHAUSTED = "exhausted"  # out of attempts or time
FAILURE_CONFIG = "config"  # our configuration cannot make this ticket (department id ...)
FAILURE_CRASHED = "crashed"  # RQ gave the job up (worker killed every time)

human_notices_table = Table(
    "human_notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False, index=True),
    Column("ticket_id", String(36), index=True),
    Column("text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("send_attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("acknowledged", Boolean, nullable=False, default=False),
)

handoff_requests_table = Table(
    "handoff_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(128), nullable=False, index=True),
    Column("reason", String(64), nullable=False),
    Column("text", Text),
    Column("correlation_id", String(64)),
    Column("created_at", Float, nullable=False),
)

# who asked not to receive messages (BAJA, STOP): kept until they opt back in, whatever the
# retention, and the source the Redis set is restored from after a Redis loss
opt_outs_table = Table(
    "opt_outs",
    metadata,
    Column("conversation_id", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
)

# what a user has been told by an announcement (actions/ticket_announcements.py records it in
# the same step as it speaks; workers/announcements.py reads it before speaking): one row per
# announcement, keyed by ticket and what is announced (the job id: "announce-delivered-<ticket>",
# "announce-status-<ticket>-<change>"), so a retry or a slow first call says nothing again
announcements_table = Table(
    "announcements",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("conversation_id", String(128), nullable=False),
    Column("spoken_at", Float, nullable=False, index=True),
)

_JSON_FIELDS = ("error_messages", "attachments", "mentioned_users")


class InvalidTransition(Exception):
    """A state change the ledger does not allow (e.g. delivered back to pending)."""


@dataclass
class TicketRecord:
    values: Dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError as error:
            raise AttributeError(name) from error


def _row_to_record(row: Any) -> TicketRecord:
    values = dict(row._mapping)
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name] or "[]")
    values["field_errors"] = json.loads(values.get("field_errors") or "[]")
    return TicketRecord(values)


SQLITE_LOCK_WAIT_SECONDS = 30.0  # as long as the connections' own busy timeout


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            database_url, future=True, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # WAL lets the action server write while workers read. Switching to it needs the
            # file to itself: SQLite answers "database is locked" at once, without waiting out
            # the busy timeout, while another process opening the new ledger holds it (make
            # run starts the workers and the action server together), so it is tried again.
            deadline = time.monotonic() + SQLITE_LOCK_WAIT_SECONDS
            pause = 0.02
            while True:
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() >= deadline:
                        raise
                    time.sleep(pause)
                    pause = min(pause * 2, 0.5)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(database_url, future=True, pool_pre_ping=True)


class Ledger:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        migrate(self.engine)  # a no-op when `make run` migrated it already

    # tickets ------------------------------------------------------------------------
    def submit(self, ticket: Ticket) -> "tuple[TicketRecord, bool]":
        """Record a ticket as pending delivery. Returns (record, created).

        Submitting the same ticket id again returns the stored row and creates nothing.
        """
        now = time.time()
        values = ticket.as_dict()
        for name in _JSON_FIELDS:
            values[name] = json.dumps(values[name], ensure_ascii=False)
        values.update(state=PENDING_DELIVERY, attempts=0, created_at=now, updated_at=now)
        prefix = ticket.reference[: -len(reference_for(ticket.id, ""))]
        # a longer reference when another ticket already holds the short one
        for length in (6, 8, 10, 12, 16):
            values["reference"] = reference_for(ticket.id, prefix, length)
            try:
                with self.engine.begin() as connection:
                    connection.execute(insert(tickets_table).values(**values))
                return self.get(ticket.id), True
            except IntegrityError:
                existing = self.get(ticket.id)
                if existing is not None:
                    logger.info("ticket already recorded", extra={"ticket_id": ticket.id})
                    return existing, False
        raise RuntimeError(f"ticket {ticket.id} could not be recorded")

    def get(self, ticket_id: str) -> Optional[TicketRecord]:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(tickets_table).where(tickets_table.c.id == ticket_id)
            ).first()
        return _row_to_record(row) if row else None

    def find(self, number_or_reference: str) -> Optional[TicketRecord]:
        """A ticket by its user-facing reference (HD-XXXXXX) or its Zoho ticket number."""
        key = number_or_reference.strip().lstrip("#").upper()
        with self.engine.connect() as connection:
            row = connection.execute(
                select(tickets_table).where(
                    (tickets_table.c.reference == key) | (tickets_table.c.zoho_ticket_number == key)
                )
            ).first()
        return _row_to_record(row) if row else None

    def recent_for(self, conversation_id: str, limit: int) -> List[TicketRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tickets_table)
                .where(tickets_table.c.conversation_id == conversation_id)
                .order_by(tickets_table.c.created_at.desc())
                .limit(limit)
            ).all()
        return [_row_to_record(row) for row in rows]

    def same_incident(self, fields: Dict[str, str], since: float,
                      conversation_prefix: Optional[str] = None) -> Optional[TicketRecord]:
        """The newest ticket recorded since `since` whose `fields` (store, system, ...) equal
        these values, not closed in Zoho Desk and not refused by it; with
        `conversation_prefix`, only tickets of conversations whose id starts with it (one
        WhatsApp group's). None when there is none or a value is missing."""
        if not fields or any(not value for value in fields.values()):
            return None
        query = select(tickets_table).where(
            tickets_table.c.created_at >= since,
            tickets_table.c.state != FAILED,
            or_(tickets_table.c.zoho_status_type.is_(None),
                tickets_table.c.zoho_status_type != "Closed"),
            *[tickets_table.c[name] == value for name, value in fields.items()],
        )
        if conversation_prefix:
            escaped = (conversation_prefix.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_"))
            query = query.where(tickets_table.c.conversation_id.like(escaped + "%",
                                                                     escape="\\"))
        with self.engine.connect() as connection:
            row = connection.execute(
                query.order_by(tickets_table.c.created_at.desc()).limit(1)).first()
        return _row_to_record(row) if row else None

    def add_report(self, ticket_id: str, report_id: str, text_: str) -> bool:
        """Another report of the same incident kept on the ticket (without Zoho Desk, where it
        would be a comment): appended to the description once. False when already there."""
        with self.engine.begin() as connection:
            row = connection.execute(
                select(tickets_table.c.description).where(tickets_table.c.id == ticket_id)
                .with_for_update()
            ).first()
            if row is None:
                raise KeyError(f"no ticket {ticket_id}")
            if text_ in (row.description or ""):
                return False
            connection.execute(
                update(tickets_table).where(tickets_table.c.id == ticket_id)
                .values(description=f"{row.description}\n\n{text_}", updated_at=time.time())
            )
        logger.info("report added to the ticket", extra={"ticket_id": ticket_id,
                                                         "report_id": report_id})
        return True

    def by_state(self, state: str) -> List[TicketRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tickets_table)
                .where(tickets_table.c.state == state)
                .order_by(tickets_table.c.created_at)
            ).all()
        return [_row_to_record(row) for row in rows]

    def count_by_state(self) -> Dict[str, int]:
        """How many tickets are in each state (metrics; every state named, 0 when none)."""
        counts = {state: 0 for state in TRANSITIONS}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tickets_table.c.state, func.count()).group_by(tickets_table.c.state)).all()
        for state, count in rows:
            counts[state] = int(count)
        return counts

    def count_created_since(self, since: float) -> int:
        """How many tickets were recorded at or after an epoch time (metrics: today's)."""
        with self.engine.connect() as connection:
            return int(connection.execute(
                select(func.count()).select_from(tickets_table)
                .where(tickets_table.c.created_at >= since)).scalar() or 0)

    def add_attachments(self, ticket_id: str, paths: List[str]) -> List[str]:
        """Files sent after the ticket was recorded, appended once each; the full list."""
        with self.engine.begin() as connection:
            row = connection.execute(
                select(tickets_table.c.attachments).where(tickets_table.c.id == ticket_id)
                .with_for_update()
            ).first()
            if row is None:
                raise KeyError(f"no ticket {ticket_id}")
            current = json.loads(row.attachments or "[]")
            current += [path for path in paths if path not in current]
            connection.execute(
                update(tickets_table).where(tickets_table.c.id == ticket_id)
                .values(attachments=json.dumps(current), updated_at=time.time())
            )
        return current

    def _move(self, ticket_id: str, new_state: str, **changes: Any) -> TicketRecord:
        with self.engine.begin() as connection:
            row = connection.execute(
                select(tickets_table.c.state).where(tickets_table.c.id == ticket_id)
            ).first()
            if row is None:
                raise KeyError(f"no ticket {ticket_id}")
            if new_state not in TRANSITIONS[row.state]:
                raise InvalidTransition(f"ticket {ticket_id}: {row.state} -> {new_state}")
            result = connection.execute(
                update(tickets_table)
                .where(tickets_table.c.id == ticket_id)
                .where(tickets_table.c.state == row.state)
                .values(state=new_state, updated_at=time.time(), **changes)
            )
            if result.rowcount != 1:
                # another process moved it between our read and our write
                raise InvalidTransition(f"ticket {ticket_id}: changed concurrently, not {row.state} any more")
        return self.get(ticket_id)

    def mark_delivered(
        self,
        ticket_id: str,
        zoho_ticket_id: str,
        zoho_ticket_number: str,
        *,
        status: Optional[str] = None,
        status_type: Optional[str] = None,
        web_url: Optional[str] = None,
    ) -> TicketRecord:
        now = time.time()
        return self._move(
            ticket_id,
            DELIVERED,
            zoho_ticket_id=zoho_ticket_id,
            zoho_ticket_number=str(zoho_ticket_number),
            last_error=None,
            delivered_at=now,
            next_attempt_at=None,
            zoho_status=status,
            zoho_status_type=status_type,
            zoho_web_url=web_url,
            status_checked_at=now if status else None,
        )

    def mark_failed(
        self,
        ticket_id: str,
        error: str,
        *,
        kind: Optional[str] = None,
        field_errors: Optional[List[Dict[str, Any]]] = None,
    ) -> TicketRecord:
        return self._move(
            ticket_id,
            FAILED,
            last_error=error,
            failure_kind=kind,
            field_errors=json.dumps(field_errors, ensure_ascii=False) if field_errors else None,
            next_attempt_at=None,
        )

    def requeue(self, ticket_id: str) -> TicketRecord:
        """A dead letter goes back to pending with a fresh attempt count. `create_sent_at`
        stays: a create that may have reached Zoho is still searched for first."""
        return self._move(ticket_id, PENDING_DELIVERY, attempts=0, failure_kind=None, field_errors=None)

    def record_attempt(self, ticket_id: str, error: Optional[str], next_attempt_at: Optional[float] = None) -> int:
        """Count one failed delivery attempt; returns the new count."""
        with self.engine.begin() as connection:
            connection.execute(
                update(tickets_table)
                .where(tickets_table.c.id == ticket_id)
                .values(
                    attempts=tickets_table.c.attempts + 1,
                    last_error=error,
                    next_attempt_at=next_attempt_at,
                    updated_at=time.time(),
                )
            )
            attempts = connection.execute(
                select(tickets_table.c.attempts).where(tickets_table.c.id == ticket_id)
            ).scalar()
        return int(attempts or 0)

    def _set(self, ticket_id: str, *conditions: Any, **values: Any) -> bool:
        """Update columns of one ticket when `conditions` hold; True when it changed."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(tickets_table)
                .where(tickets_table.c.id == ticket_id, *conditions)
                .values(updated_at=time.time(), **values)
            )
        return result.rowcount == 1

    def note_deferral(self, ticket_id: str, reason: str, next_attempt_at: float) -> None:
        """A run that could not try (circuit open, rate limit): why, and when it tries again."""
        self._set(ticket_id, last_error=reason, next_attempt_at=next_attempt_at)

    def set_create_sent(self, ticket_id: str, when: Optional[float]) -> None:
        """Before a create is sent (and back to the old value when it surely did not arrive)."""
        self._set(ticket_id, create_sent_at=when)

    def set_contact(self, ticket_id: str, contact_id: str) -> None:
        self._set(ticket_id, zoho_contact_id=contact_id)

    # who tells the user the number ---------------------------------------------------------
    def hand_announcement_to_worker(self, ticket_id: str) -> bool:
        """The submit turn stops waiting: a worker tells the user once the ticket is in Zoho.
        False when the ticket was delivered first (the turn can answer with the number)."""
        return self._set(
            ticket_id,
            tickets_table.c.announce.is_(None),
            tickets_table.c.state != DELIVERED,
            announce=ANNOUNCE_WORKER,
        )

    def claim_announcement_for_turn(self, ticket_id: str) -> bool:
        """The submit turn saw the ticket delivered and answers with its number itself."""
        return self._set(
            ticket_id,
            tickets_table.c.announce.is_(None),
            tickets_table.c.state == DELIVERED,
            announce=ANNOUNCE_TURN,
            announced_at=time.time(),
        )

    def claim_unannounced(self, ticket_id: str) -> bool:
        """Nobody told the user (the turn ended without deciding): a worker will."""
        return self._set(
            ticket_id,
            tickets_table.c.announce.is_(None),
            tickets_table.c.state == DELIVERED,
            announce=ANNOUNCE_WORKER,
        )

    def mark_announced(self, ticket_id: str) -> None:
        self._set(ticket_id, announced_at=time.time())

    def unannounced_delivered(self, delivered_before: float) -> List[TicketRecord]:
        """Delivered tickets whose number the user has not been told, delivered before a time."""
        t = tickets_table.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tickets_table)
                .where(t.state == DELIVERED, t.announced_at.is_(None), t.delivered_at < delivered_before)
                .where(or_(t.announce.is_(None), t.announce == ANNOUNCE_WORKER))
                .order_by(t.delivered_at)
            ).all()
        return [_row_to_record(row) for row in rows]

    # status polling ----------------------------------------------------------------------
    def open_delivered(
        self, limit: int, delivered_after: float, final_types: Tuple[str, ...] = ("Closed", "Deleted")
    ) -> List[TicketRecord]:
        """Delivered tickets Zoho has not closed, least recently checked first."""
        t = tickets_table.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tickets_table)
                .where(t.state == DELIVERED, t.delivered_at >= delivered_after)
                .where(or_(t.zoho_status_type.is_(None), t.zoho_status_type.not_in(final_types)))
                .order_by(t.status_checked_at.is_(None).desc(), t.status_checked_at)
                .limit(limit)
            ).all()
        return [_row_to_record(row) for row in rows]

    def record_status(self, ticket_id: str, status: Optional[str], status_type: Optional[str]) -> Optional[str]:
        """Store the status Zoho shows now; returns the one seen before."""
        with self.engine.begin() as connection:
            previous = connection.execute(
                select(tickets_table.c.zoho_status).where(tickets_table.c.id == ticket_id)
            ).scalar()
            connection.execute(
                update(tickets_table)
                .where(tickets_table.c.id == ticket_id)
                .values(zoho_status=status, zoho_status_type=status_type, status_checked_at=time.time())
            )
        return previous

    # notices for the support team ------------------------------------------------------
    def add_human_notice(self, kind: str, text_: str, ticket_id: Optional[str] = None) -> int:
        with self.engine.begin() as connection:
            result = connection.execute(
                insert(human_notices_table).values(
                    kind=kind, ticket_id=ticket_id, text=text_, created_at=time.time(), send_attempts=0,
                    acknowledged=False,
                )
            )
        return int(result.inserted_primary_key[0])

    def human_notices(self, unsent_only: bool = False, limit: int = 200) -> List[Dict[str, Any]]:
        query = select(human_notices_table).order_by(human_notices_table.c.id).limit(limit)
        if unsent_only:
            query = query.where(human_notices_table.c.sent_at.is_(None))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query).all()]

    def mark_notice_sent(self, notice_id: int, error: Optional[str] = None) -> None:
        values: Dict[str, Any] = {"send_attempts": human_notices_table.c.send_attempts + 1, "last_error": error}
        if error is None:
            values["sent_at"] = time.time()
        with self.engine.begin() as connection:
            connection.execute(
                update(human_notices_table).where(human_notices_table.c.id == notice_id).values(**values)
            )

    # handoff requests ---------------------------------------------------------------
    def record_handoff_request(
        self, conversation_id: str, reason: str, text: Optional[str], correlation_id: Optional[str]
    ) -> int:
        with self.engine.begin() as connection:
            result = connection.execute(
                insert(handoff_requests_table).values(
                    conversation_id=conversation_id,
                    reason=reason,
                    text=text,
                    correlation_id=correlation_id,
                    created_at=time.time(),
                )
            )
        return int(result.inserted_primary_key[0])

    def handoff_requests(self, conversation_id: str) -> List[Dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(handoff_requests_table)
                .where(handoff_requests_table.c.conversation_id == conversation_id)
                .order_by(handoff_requests_table.c.id)
            ).all()
        return [dict(row._mapping) for row in rows]

    # opt-outs (helpdesk/whatsapp/optout.py writes them here and in Redis) -----------------
    def record_opt_out(self, conversation_id: str, when: Optional[float] = None) -> None:
        """Idempotent: the first opt-out's time stays."""
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(opt_outs_table).values(
                    conversation_id=conversation_id, created_at=when or time.time()))
        except IntegrityError:
            pass

    def clear_opt_out(self, conversation_id: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(opt_outs_table).where(opt_outs_table.c.conversation_id == conversation_id))
        return result.rowcount == 1

    def opt_outs(self) -> List[str]:
        with self.engine.connect() as connection:
            return [row.conversation_id for row in connection.execute(
                select(opt_outs_table.c.conversation_id).order_by(opt_outs_table.c.conversation_id))]

    # announcements said (actions/ticket_announcements.py, workers/announcements.py) ---------
    def record_announcement(self, key: str, conversation_id: str) -> bool:
        """Atomically: True when this call is the first to record announcement `key` (its
        caller speaks), False when it was recorded already (someone spoke: say nothing)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(announcements_table).values(
                    key=key, conversation_id=conversation_id, spoken_at=time.time()))
        except IntegrityError:
            return False
        return True

    def announcement_spoken(self, key: str) -> Optional[float]:
        """When announcement `key` was said; None when it was not (yet)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(announcements_table.c.spoken_at).where(announcements_table.c.key == key)
            ).scalar()

    def delete_announcements_before(self, cutoff: float) -> int:
        with self.engine.begin() as connection:
            return connection.execute(
                delete(announcements_table).where(announcements_table.c.spoken_at < cutoff)).rowcount

    # retention (workers/retention_jobs.py) ----------------------------------------------------
    def redact_before(self, cutoff: float, batch_size: int = 500) -> List[TicketRecord]:
        """Blank the personal fields (PERSONAL_FIELDS) of tickets created before `cutoff`, in
        batches; the records as they were, so their attachments can be deleted too. A ticket
        still pending delivery is left whole (its worker needs the description)."""
        t = tickets_table.c
        redacted: List[TicketRecord] = []
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(
                    select(tickets_table)
                    .where(t.created_at < cutoff, t.redacted_at.is_(None), t.state != PENDING_DELIVERY)
                    .order_by(t.created_at).limit(batch_size)
                ).all()
                if not rows:
                    return redacted
                now = time.time()
                connection.execute(
                    update(tickets_table).where(t.id.in_([row.id for row in rows]))
                    .values(redacted_at=now, **PERSONAL_FIELDS)
                )
            redacted += [_row_to_record(row) for row in rows]

    def delete_notices_before(self, cutoff: float) -> int:
        with self.engine.begin() as connection:
            return connection.execute(
                delete(human_notices_table).where(human_notices_table.c.created_at < cutoff)).rowcount

    def delete_handoffs_before(self, cutoff: float) -> int:
        with self.engine.begin() as connection:
            return connection.execute(
                delete(handoff_requests_table).where(handoff_requests_table.c.created_at < cutoff)).rowcount

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(select(1))
        return True
