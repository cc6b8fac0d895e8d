"""The SQL ledger (helpdesk/tickets/ledger.py) on a fresh SQLite file per test; its delivery
bookkeeping: who tells the user the number, attempts, dead letters, statuses, notices, and
columns and tables added to an older database, opt-outs, and what retention blanks or deletes."""
import sqlite3
import threading
import time

import pytest
from sqlalchemy import event

from helpdesk.tickets import (
    ANNOUNCE_TURN,
    ANNOUNCE_WORKER,
    DELIVERED,
    FAILED,
    PENDING_DELIVERY,
    PERSONAL_FIELDS,
    InvalidTransition,
    Ledger,
)
from helpdesk.tickets import Ticket, build_ticket, reference_for, ticket_id_for


def make_ticket(conversation_id="5491122334455", started=1700000000.0, **overrides) -> Ticket:
    ticket_id = ticket_id_for(conversation_id, started)
    values = dict(
        id=ticket_id,
        reference=reference_for(ticket_id, "HD-"),
        conversation_id=conversation_id,
        subject="POS / caja en Tienda 42 (Avenida): la caja 2 no abre",
        description="la caja 2 no abre, sale error E-45",
        priority="urgent",
        classification="Problem",
        department="it",
        store="Tienda 42 (Avenida)",
        system="POS",
        reporter_name="Ana Pérez",
        reporter_phone="5491122334455",
        channel="whatsapp",
        affected_person="Luis",
        error_messages=["E-45", "Código «inválido»"],
        attachments=["media/abc.jpg"],
        mentioned_users=["@5491100000001", "@5491100000002"],
        correlation_id="c0ffee",
    )
    values.update(overrides)
    return Ticket(**values)


def count_rows(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT COUNT(*) FROM tickets").scalar()


# submit ------------------------------------------------------------------------------
def test_submit_records_every_field_as_pending(ledger):
    ticket = make_ticket()
    before = time.time()
    record, created = ledger.submit(ticket)
    assert created is True
    assert record.state == PENDING_DELIVERY
    assert record.attempts == 0
    assert record.zoho_ticket_id is None and record.zoho_ticket_number is None
    assert record.last_error is None
    assert before <= record.created_at == record.updated_at <= time.time()
    for name, value in ticket.as_dict().items():
        assert getattr(record, name) == value, name
    # list fields come back as lists, not JSON text
    assert record.error_messages == ["E-45", "Código «inválido»"]
    assert record.attachments == ["media/abc.jpg"]
    assert record.mentioned_users == ["@5491100000001", "@5491100000002"]
    assert ledger.get(ticket.id).values == record.values


def test_submit_with_empty_optional_fields(ledger):
    ticket = make_ticket(store=None, system=None, reporter_name=None, reporter_phone=None,
                         error_messages=[], attachments=[], mentioned_users=[])
    record, created = ledger.submit(ticket)
    assert created
    assert record.store is None and record.system is None
    assert record.error_messages == [] and record.attachments == [] and record.mentioned_users == []


def test_record_has_no_unknown_attributes(ledger):
    record, _ = ledger.submit(make_ticket())
    with pytest.raises(AttributeError):
        record.not_a_column  # noqa: B018


def test_get_unknown_ticket_is_none(ledger):
    assert ledger.get("00000000-0000-0000-0000-000000000000") is None


def test_submitting_the_same_ticket_twice_creates_one_row(ledger):
    ticket = make_ticket()
    first, created_first = ledger.submit(ticket)
    second, created_second = ledger.submit(make_ticket(description="otra descripción"))
    assert (created_first, created_second) == (True, False)
    assert second.values == first.values  # the stored row, unchanged
    assert second.description == ticket.description
    assert count_rows(ledger) == 1


def test_resubmitting_does_not_reset_the_delivery_state(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    ledger.mark_delivered(ticket.id, "z-1", "1042")
    record, created = ledger.submit(ticket)
    assert created is False
    assert record.state == DELIVERED
    assert record.zoho_ticket_number == "1042"


@pytest.mark.parametrize("shared_engine", [True, False], ids=["one-ledger", "two-ledgers"])
def test_concurrent_submits_of_the_same_ticket_make_one_row(database_url, shared_engine):
    first = Ledger(database_url)
    ledgers = [first, first if shared_engine else Ledger(database_url)]
    for round_number in range(5):
        ticket = make_ticket(conversation_id=f"conv-{round_number}")
        barrier = threading.Barrier(2)
        results, errors = [], []

        def submit(ledger):
            try:
                barrier.wait(5)
                results.append(ledger.submit(ticket))
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=submit, args=(ledger,)) for ledger in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert sorted(created for _, created in results) == [False, True]
        assert {record.id for record, _ in results} == {ticket.id}
    assert count_rows(first) == 5


def test_two_different_tickets_with_colliding_references_are_both_recorded(ledger):
    first = make_ticket(conversation_id="54911000035740")
    second = make_ticket(conversation_id="54911000069967")
    assert first.id != second.id
    assert first.reference == second.reference == "HD-24GDXR"  # precondition of this case
    assert ledger.submit(first)[1] is True
    record, created = ledger.submit(second)
    assert created is True
    assert record.id == second.id


# find and recent ---------------------------------------------------------------------
def test_find_by_reference(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    reference = ticket.reference
    for key in (reference, reference.lower(), f"#{reference}", f"  #{reference.lower()} "):
        found = ledger.find(key)
        assert found is not None, key
        assert found.id == ticket.id


def test_find_unknown(ledger):
    ledger.submit(make_ticket())
    assert ledger.find("HD-ZZZZZZ") is None
    assert ledger.find("1042") is None


def test_find_by_zoho_number_after_delivery(ledger):
    ticket = make_ticket()
    other = make_ticket(conversation_id="other")
    ledger.submit(ticket)
    ledger.submit(other)
    assert ledger.find("1042") is None
    ledger.mark_delivered(ticket.id, "421000000123", 1042)
    for key in ("1042", "#1042", " 1042 "):
        assert ledger.find(key).id == ticket.id
    assert ledger.find(ticket.reference).zoho_ticket_number == "1042"


def test_recent_for_newest_first_with_limit(ledger):
    tickets = [make_ticket(conversation_id="5491122334455", started=1700000000.0 + i) for i in range(4)]
    for ticket in tickets:
        ledger.submit(ticket)
        time.sleep(0.005)  # distinct created_at
    ledger.submit(make_ticket(conversation_id="someone-else"))
    recent = ledger.recent_for("5491122334455", 3)
    assert [r.id for r in recent] == [t.id for t in reversed(tickets)][:3]
    assert [r.id for r in ledger.recent_for("5491122334455", 10)] == [t.id for t in reversed(tickets)]
    assert ledger.recent_for("5491122334455", 0) == []
    assert ledger.recent_for("nobody", 3) == []


def test_by_state(ledger):
    a, b, c = (make_ticket(conversation_id=f"conv-{i}") for i in range(3))
    for ticket in (a, b, c):
        ledger.submit(ticket)
        time.sleep(0.002)
    ledger.mark_delivered(b.id, "z", "7")
    ledger.mark_failed(c.id, "boom")
    assert [r.id for r in ledger.by_state(PENDING_DELIVERY)] == [a.id]
    assert [r.id for r in ledger.by_state(DELIVERED)] == [b.id]
    assert [r.id for r in ledger.by_state(FAILED)] == [c.id]


# state transitions -------------------------------------------------------------------
def test_pending_to_delivered(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    ledger.record_attempt(ticket.id, "timeout")
    record = ledger.mark_delivered(ticket.id, "421000000123", 1042)
    assert record.state == DELIVERED
    assert record.zoho_ticket_id == "421000000123"
    assert record.zoho_ticket_number == "1042"
    assert record.last_error is None
    assert record.updated_at >= record.created_at
    assert ledger.get(ticket.id).state == DELIVERED


def test_pending_to_failed_and_requeued(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    for _ in range(3):
        ledger.record_attempt(ticket.id, "zoho 503")
    failed = ledger.mark_failed(ticket.id, "gave up after 3 attempts")
    assert failed.state == FAILED
    assert failed.last_error == "gave up after 3 attempts"
    assert failed.attempts == 3
    requeued = ledger.requeue(ticket.id)
    assert requeued.state == PENDING_DELIVERY
    assert requeued.attempts == 0
    # and it can be delivered afterwards
    assert ledger.mark_delivered(ticket.id, "z", "9").state == DELIVERED


@pytest.mark.parametrize(
    "move",
    [
        lambda ledger, tid: ledger.mark_delivered(tid, "z-2", "2"),
        lambda ledger, tid: ledger.mark_failed(tid, "late error"),
        lambda ledger, tid: ledger.requeue(tid),
    ],
    ids=["delivered", "failed", "pending"],
)
def test_delivered_is_final(ledger, move):
    ticket = make_ticket()
    ledger.submit(ticket)
    ledger.mark_delivered(ticket.id, "z-1", "1")
    with pytest.raises(InvalidTransition, match=f"{ticket.id}: delivered ->"):
        move(ledger, ticket.id)
    record = ledger.get(ticket.id)
    assert record.state == DELIVERED
    assert (record.zoho_ticket_id, record.zoho_ticket_number) == ("z-1", "1")


def test_pending_cannot_be_requeued_and_failed_cannot_be_delivered(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    with pytest.raises(InvalidTransition):
        ledger.requeue(ticket.id)
    ledger.mark_failed(ticket.id, "boom")
    with pytest.raises(InvalidTransition):
        ledger.mark_delivered(ticket.id, "z", "1")
    with pytest.raises(InvalidTransition):
        ledger.mark_failed(ticket.id, "again")
    assert ledger.get(ticket.id).state == FAILED


def test_moving_an_unknown_ticket(ledger):
    with pytest.raises(KeyError):
        ledger.mark_delivered("00000000-0000-0000-0000-000000000000", "z", "1")


def test_a_concurrent_state_change_is_not_silently_lost(ledger, database_url):
    ticket = make_ticket()
    ledger.submit(ticket)
    path = database_url[len("sqlite:///"):]
    interleaved = []

    @event.listens_for(ledger.engine, "before_cursor_execute")
    def other_process_delivers_first(conn, cursor, statement, parameters, context, many):
        if statement.startswith("UPDATE tickets SET state") and not interleaved:
            interleaved.append(True)
            other = sqlite3.connect(path)
            other.execute(
                "UPDATE tickets SET state = 'delivered', zoho_ticket_number = '77' WHERE id = ?",
                (ticket.id,),
            )
            other.commit()
            other.close()

    try:
        with pytest.raises(InvalidTransition):
            ledger.mark_failed(ticket.id, "timeout")
    finally:
        event.remove(ledger.engine, "before_cursor_execute", other_process_delivers_first)
    assert interleaved


def test_record_attempt(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    ledger.record_attempt(ticket.id, "timeout")
    ledger.record_attempt(ticket.id, "zoho 503")
    record = ledger.get(ticket.id)
    assert record.attempts == 2
    assert record.last_error == "zoho 503"
    assert record.state == PENDING_DELIVERY
    ledger.record_attempt(ticket.id, None)
    record = ledger.get(ticket.id)
    assert record.attempts == 3
    assert record.last_error is None


# handoff requests --------------------------------------------------------------------
def test_handoff_requests(ledger):
    first = ledger.record_handoff_request("5491122334455", "asked", "quiero hablar con alguien", "c1")
    ledger.record_handoff_request("someone-else", "store_unknown", None, None)
    second = ledger.record_handoff_request("5491122334455", "store_unknown", None, "c2")
    assert isinstance(first, int) and second > first
    requests = ledger.handoff_requests("5491122334455")
    assert [r["id"] for r in requests] == [first, second]
    assert requests[0]["reason"] == "asked"
    assert requests[0]["text"] == "quiero hablar con alguien"
    assert requests[0]["correlation_id"] == "c1"
    assert requests[0]["conversation_id"] == "5491122334455"
    assert requests[1]["text"] is None
    assert requests[0]["created_at"] <= requests[1]["created_at"] <= time.time()
    assert ledger.handoff_requests("nobody") == []


def test_ping(ledger):
    assert ledger.ping() is True


def test_data_survives_a_new_ledger_on_the_same_database(database_url):
    ticket = make_ticket()
    Ledger(database_url).submit(ticket)
    again = Ledger(database_url)
    assert again.get(ticket.id).reference == ticket.reference


def test_a_built_ticket_round_trips(ledger, catalog):
    ticket = build_ticket(
        catalog,
        ticket_id=ticket_id_for("5491122334455", 1700000000.0),
        conversation_id="5491122334455",
        store="Tienda 42 (Avenida)",
        system="POS",
        description="la caja 2 no abre",
        stated_priority=None,
        priority_texts=["no pueden vender"],
        mentioned_users=["@5491100000001"],
    )
    record, created = ledger.submit(ticket)
    assert created
    assert record.priority == "urgent"
    assert record.mentioned_users == ["@5491100000001"]
    assert ledger.find(ticket.reference.lower()).id == ticket.id


# delivery bookkeeping ----------------------------------------------------------------
def delivery_ticket(n: int = 1) -> Ticket:
    """A small ticket for the delivery bookkeeping, the n-th of one chat."""
    ticket_id = ticket_id_for("5491122334455", float(n))
    return Ticket(id=ticket_id, reference=reference_for(ticket_id, "HD-"), conversation_id="5491122334455",
                  subject="POS: no abre", description="la caja no abre", priority="urgent",
                  classification="Problem", department="it", store=None, system="POS")


def test_the_turn_and_the_worker_never_both_tell_the_number(ledger):
    record, _ = ledger.submit(delivery_ticket())
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
    record, _ = ledger.submit(delivery_ticket())
    assert ledger.hand_announcement_to_worker(record.id) is True
    assert ledger.hand_announcement_to_worker(record.id) is False  # once
    assert ledger.get(record.id).announce == ANNOUNCE_WORKER
    ledger.mark_delivered(record.id, "z-1", "1001")
    assert ledger.claim_announcement_for_turn(record.id) is False
    assert [r.id for r in ledger.unannounced_delivered(time.time() + 1)] == [record.id]
    ledger.mark_announced(record.id)
    assert ledger.unannounced_delivered(time.time() + 1) == []


def test_attempts_deferrals_and_a_dead_letter_with_field_errors(ledger):
    record, _ = ledger.submit(delivery_ticket())
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
    records = [ledger.submit(delivery_ticket(n))[0] for n in range(1, 4)]
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
    assert old.redacted_at is None
    # a table added later (opt-outs) is created on the older database too
    ledger.record_opt_out("549")
    assert ledger.opt_outs() == ["549"]
    ledger.mark_delivered(old.id, "z", "7", status="Open")
    assert ledger.get(old.id).state == DELIVERED and ledger.get(old.id).zoho_status == "Open"
    assert ledger.hand_announcement_to_worker(old.id) is False
    ledger.engine.dispose()
    # opening it again adds nothing more
    again = Ledger(f"sqlite:///{path}")
    assert again.get(old.id).zoho_ticket_number == "7"
    again.engine.dispose()


# opt-outs ---------------------------------------------------------------------------
def test_opt_outs_are_recorded_once_and_cleared(ledger):
    ledger.record_opt_out("5491122334455", when=100.0)
    ledger.record_opt_out("5491122334455", when=200.0)  # again: the first stays
    ledger.record_opt_out("120363000000000001@g.us")
    assert ledger.opt_outs() == ["120363000000000001@g.us", "5491122334455"]
    assert ledger.clear_opt_out("5491122334455") is True
    assert ledger.clear_opt_out("5491122334455") is False
    assert ledger.opt_outs() == ["120363000000000001@g.us"]


# retention ----------------------------------------------------------------------------
def set_created(ledger, ticket_id, when):
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE tickets SET created_at = ? WHERE id = ?", (when, ticket_id))


def test_redact_before_blanks_personal_fields_of_old_finished_tickets_only(ledger):
    old, _ = ledger.submit(make_ticket(started=1.0))
    ledger.mark_delivered(old.id, "z-1", "1001", status="Open")
    old_failed, _ = ledger.submit(make_ticket(started=2.0))
    ledger.mark_failed(old_failed.id, "rejected")
    old_pending, _ = ledger.submit(make_ticket(started=3.0))  # its worker still needs the text
    young, _ = ledger.submit(make_ticket(started=4.0))
    ledger.mark_delivered(young.id, "z-4", "1004")
    for record, when in ((old, 1000.0), (old_failed, 1000.0), (old_pending, 1000.0), (young, 3000.0)):
        set_created(ledger, record.id, when)

    redacted = ledger.redact_before(2000.0, batch_size=1)  # one row per batch: batches loop

    assert sorted(r.id for r in redacted) == sorted([old.id, old_failed.id])
    assert all(r.attachments == ["media/abc.jpg"] for r in redacted)  # as they were
    for ticket_id in (old.id, old_failed.id):
        record = ledger.get(ticket_id)
        assert (record.description, record.reporter_name, record.reporter_phone, record.affected_person) == (
            "", None, None, None)
        assert (record.error_messages, record.attachments, record.mentioned_users) == ([], [], [])
        assert record.redacted_at is not None
    kept = ledger.get(old.id)
    assert (kept.reference, kept.zoho_ticket_number, kept.state, kept.zoho_status) == (
        old.reference, "1001", DELIVERED, "Open")
    assert kept.subject == old.subject and kept.conversation_id == old.conversation_id
    assert ledger.find(old.reference).id == old.id and ledger.find("1001").id == old.id
    for untouched in (old_pending.id, young.id):
        record = ledger.get(untouched)
        assert record.description == "la caja 2 no abre, sale error E-45" and record.redacted_at is None
    assert ledger.redact_before(2000.0) == []  # done once
    assert set(PERSONAL_FIELDS) == {"description", "reporter_name", "reporter_phone", "affected_person",
                                    "error_messages", "attachments", "mentioned_users"}


def test_old_notices_and_handoff_rows_are_deleted(ledger):
    old_notice = ledger.add_human_notice("dead_letter", "viejo")
    young_notice = ledger.add_human_notice("dead_letter", "nuevo")
    old_handoff = ledger.record_handoff_request("549", "asked", "hola", None)
    young_handoff = ledger.record_handoff_request("549", "asked", "otra vez", None)
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE human_notices SET created_at = 10 WHERE id = ?", (old_notice,))
        connection.exec_driver_sql("UPDATE handoff_requests SET created_at = 10 WHERE id = ?", (old_handoff,))
    assert ledger.delete_notices_before(20.0) == 1
    assert ledger.delete_handoffs_before(20.0) == 1
    assert [n["id"] for n in ledger.human_notices()] == [young_notice]
    assert [r["id"] for r in ledger.handoff_requests("549")] == [young_handoff]


# --- processes opening a new database together ------------------------------------------------
def _open_ledger(database_url, barrier):
    barrier.wait()
    Ledger(database_url).engine.dispose()


def test_processes_opening_a_new_ledger_together_all_succeed(tmp_path):
    """`make run` starts two workers and the action server at once on a fresh ledger: each
    used to CREATE the tables after the others' check, and the losers failed with "table
    tickets already exists" (the worker's Zoho jobs were then not prepared)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        database_url = f"sqlite:///{tmp_path / f'ledger-{round_}.sqlite3'}"
        barrier = context.Barrier(6)
        processes = [context.Process(target=_open_ledger, args=(database_url, barrier)) for _ in range(6)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * 6
    assert Ledger(database_url).recent_for("nobody", 5) == []


def test_same_incident_is_the_newest_open_ticket_with_those_fields(ledger):
    fields = {"store": "Tienda 42 (Avenida)", "system": "POS"}
    older = make_ticket("g120363_1-5491100000001", 1.0)
    newer = make_ticket("g120363_1-5491100000002", 2.0)
    other = make_ticket("5491100000003", 3.0, system="impresora fiscal")
    failed = make_ticket("5491100000004", 4.0)
    for ticket in (older, newer, other, failed):
        ledger.submit(ticket)
        time.sleep(0.01)  # created_at apart
    ledger.mark_failed(failed.id, "Zoho refused it")
    since = time.time() - 60
    assert ledger.same_incident(fields, since).id == newer.id
    assert ledger.same_incident({**fields, "system": "impresora fiscal"}, since).id == other.id
    assert ledger.same_incident(fields, time.time() + 1) is None  # none in the window
    assert ledger.same_incident({**fields, "store": None}, since) is None  # a value unknown
    # one group's conversations only; "_" in the prefix is a character, not a wildcard
    assert ledger.same_incident(fields, since, "g120363_1-").id == newer.id
    assert ledger.same_incident(fields, since, "g120363x1-") is None
    # closed in Zoho Desk: the outage is over, the older open one is the match
    ledger.mark_delivered(newer.id, "z1", "101")
    ledger.record_status(newer.id, "Closed", "Closed")
    assert ledger.same_incident(fields, since).id == older.id


def test_add_report_appends_to_the_description_once(ledger):
    ticket = make_ticket()
    ledger.submit(ticket)
    assert ledger.add_report(ticket.id, "r1", "Otro reporte: sin sistema") is True
    assert ledger.add_report(ticket.id, "r1", "Otro reporte: sin sistema") is False
    assert ledger.get(ticket.id).description == (
        "la caja 2 no abre, sale error E-45\n\nOtro reporte: sin sistema")
    with pytest.raises(KeyError):
        ledger.add_report("nope", "r2", "x")
