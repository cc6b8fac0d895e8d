"""The ledger: the record of every ticket and its delivery state (SQLAlchemy 1.4).

A ticket is written here first, with its own id as the idempotency key; a worker delivers it
to Zoho Desk later and moves its state on. SQLite in `var/` by default, any SQLAlchemy URL
(PostgreSQL in production) by `DATABASE_URL`. Calls are blocking: async code runs them in a
thread (`asyncio.to_thread`).
"""
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from helpdesk.tickets import Ticket, reference_for

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
    return TicketRecord(values)


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            database_url, future=True, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # WAL lets the action server write while workers read
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(database_url, future=True, pool_pre_ping=True)


class Ledger:
    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        metadata.create_all(self.engine)

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

    def by_state(self, state: str) -> List[TicketRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(tickets_table)
                .where(tickets_table.c.state == state)
                .order_by(tickets_table.c.created_at)
            ).all()
        return [_row_to_record(row) for row in rows]

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

    def mark_delivered(self, ticket_id: str, zoho_ticket_id: str, zoho_ticket_number: str) -> TicketRecord:
        return self._move(
            ticket_id,
            DELIVERED,
            zoho_ticket_id=zoho_ticket_id,
            zoho_ticket_number=str(zoho_ticket_number),
            last_error=None,
        )

    def mark_failed(self, ticket_id: str, error: str) -> TicketRecord:
        return self._move(ticket_id, FAILED, last_error=error)

    def requeue(self, ticket_id: str) -> TicketRecord:
        return self._move(ticket_id, PENDING_DELIVERY, attempts=0)

    def record_attempt(self, ticket_id: str, error: Optional[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(tickets_table)
                .where(tickets_table.c.id == ticket_id)
                .values(
                    attempts=tickets_table.c.attempts + 1,
                    last_error=error,
                    updated_at=time.time(),
                )
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

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(select(1))
        return True
