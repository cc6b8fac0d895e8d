"""The ledger's delivery bookkeeping (helpdesk/tickets/ledger.py): who tells the user the number,
attempts, dead letters, statuses, notices, and columns added to an older database."""
import sqlite3
import time

from helpdesk.tickets import ANNOUNCE_TURN, ANNOUNCE_WORKER, DELIVERED, FAILED, Ledger
from helpdesk.tickets import Ticket, reference_for, ticket_id_for


def ticket(n: int = 1) -> Ticket:
    ticket_id = ticket_id_for("5491122334455", float(n))
    return Ticket(id=ticket_id, reference=reference_for(ticket_id, "HD-"), conversation_id="5491122334455",
                  subject="POS: no abre", description="la caja no abre", priority="urgent",
                  classification="Problem", department="it", store=None, system="POS")


def test_the_turn_and_the_worker_never_both_tell_the_number(ledger):
    record, _ = ledger.submit(ticket())
    assert ledger.claim_announcement_for_turn(record.id) is False  # not delivered yet
    ledger.mark_delivered(record.id, "z-1", "1001", status="Open", status_type="Open")
    # the worker delivered first: the turn claims it, the hand-over is refused
    assert ledger.hand_announcement_to_worker(record.id) is False
    assert ledger.claim_announcement_for_turn(record.id) is True
    assert ledger.claim_unannounced(record.id) is False
    got = ledger.get(record.id)
    assert got.announce == ANNOUNCE_TURN and got.announced_at is not None
    assert ledger.unannounced_delivered(time.time() + 1) == []


def test_handed_to_the_worker_before_delivery(ledger):
    record, _ = ledger.submit(ticket())
    assert ledger.hand_announcement_to_worker(record.id) is True
    assert ledger.hand_announcement_to_worker(record.id) is False  # once
    assert ledger.get(record.id).announce == ANNOUNCE_WORKER
    ledger.mark_delivered(record.id, "z-1", "1001")
    assert ledger.claim_announcement_for_turn(record.id) is False
    assert [r.id for r in ledger.unannounced_delivered(time.time() + 1)] == [record.id]
    ledger.mark_announced(record.id)
    assert ledger.unannounced_delivered(time.time() + 1) == []


def test_attempts_deferrals_and_a_dead_letter_with_field_errors(ledger):
    record, _ = ledger.submit(ticket())
    assert ledger.record_attempt(record.id, "503", next_attempt_at=123.0) == 1
    assert ledger.record_attempt(record.id, "503") == 2
    ledger.note_deferral(record.id, "circuit open", 456.0)
    got = ledger.get(record.id)
    assert (got.attempts, got.last_error, got.next_attempt_at) == (2, "circuit open", 456.0)
    ledger.set_create_sent(record.id, 99.5)
    errors = [{"fieldName": "/departmentId", "errorType": "invalid"}]
    failed = ledger.mark_failed(record.id, "422", kind="rejected", field_errors=errors)
    assert failed.state == FAILED and failed.failure_kind == "rejected" and failed.field_errors == errors
    requeued = ledger.requeue(record.id)
    assert requeued.attempts == 0 and requeued.failure_kind is None and requeued.field_errors == []
    assert requeued.create_sent_at == 99.5  # a create that may have reached Zoho is still searched for


def test_open_delivered_tickets_and_status_changes(ledger):
    records = [ledger.submit(ticket(n))[0] for n in range(1, 4)]
    for n, record in enumerate(records):
        ledger.mark_delivered(record.id, f"z-{n}", str(1000 + n), status="Open", status_type="Open")
    assert ledger.record_status(records[0].id, "Closed", "Closed") == "Open"
    assert ledger.record_status(records[1].id, "On Hold", "On Hold") == "Open"
    open_ids = [r.id for r in ledger.open_delivered(10, 0)]
    assert set(open_ids) == {records[1].id, records[2].id}
    assert open_ids[0] == records[2].id  # least recently checked first
    assert ledger.open_delivered(10, time.time() + 60) == []  # too old to poll


def test_human_notices(ledger):
    first = ledger.add_human_notice("ticket_rejected", "El ticket HD-X no se pudo crear", "t-1")
    ledger.add_human_notice("zoho_auth", "Zoho rechaza las credenciales")
    assert [n["id"] for n in ledger.human_notices(unsent_only=True)][0] == first
    ledger.mark_notice_sent(first, error="WAHA down")
    assert ledger.human_notices()[0]["send_attempts"] == 1 and ledger.human_notices()[0]["sent_at"] is None
    ledger.mark_notice_sent(first)
    assert [n["kind"] for n in ledger.human_notices(unsent_only=True)] == ["zoho_auth"]


def test_an_older_database_gets_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        # the tickets table as the first ledger created it
        connection.execute(
            "CREATE TABLE tickets (id VARCHAR(36) PRIMARY KEY, reference VARCHAR(32) NOT NULL UNIQUE,"
            " conversation_id VARCHAR(128) NOT NULL, subject VARCHAR(255) NOT NULL, description TEXT NOT NULL,"
            " priority VARCHAR(16) NOT NULL, classification VARCHAR(64) NOT NULL, department VARCHAR(64) NOT NULL,"
            " store VARCHAR(128), system VARCHAR(128), reporter_name VARCHAR(128), reporter_phone VARCHAR(32),"
            " channel VARCHAR(32), affected_person VARCHAR(128), error_messages TEXT NOT NULL,"
            " attachments TEXT NOT NULL, mentioned_users TEXT NOT NULL, correlation_id VARCHAR(64),"
            " state VARCHAR(32) NOT NULL, zoho_ticket_id VARCHAR(64), zoho_ticket_number VARCHAR(32),"
            " attempts INTEGER NOT NULL, last_error TEXT, created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL)"
        )
        connection.execute(
            "INSERT INTO tickets VALUES ('00000000-0000-0000-0000-000000000001','HD-OLD001','549','s','d',"
            "'normal','Problem','it',NULL,NULL,NULL,NULL,NULL,NULL,'[]','[]','[]',NULL,'pending_delivery',"
            "NULL,NULL,0,NULL,1.0,1.0)"
        )
    ledger = Ledger(f"sqlite:///{path}")
    old = ledger.get("00000000-0000-0000-0000-000000000001")
    assert old.announce is None and old.field_errors == [] and old.create_sent_at is None
    ledger.mark_delivered(old.id, "z", "7", status="Open")
    assert ledger.get(old.id).state == DELIVERED and ledger.get(old.id).zoho_status == "Open"
    assert ledger.hand_announcement_to_worker(old.id) is False
    ledger.engine.dispose()
    # opening it again adds nothing more
    again = Ledger(f"sqlite:///{path}")
    assert again.get(old.id).zoho_ticket_number == "7"
    again.engine.dispose()
