"""The SQL ledger (helpdesk/tickets/ledger.py) on a fresh SQLite file per test."""
import sqlite3
import threading
import time

import pytest
from sqlalchemy import event

from helpdesk.tickets import (
    DELIVERED,
    FAILED,
    PENDING_DELIVERY,
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
