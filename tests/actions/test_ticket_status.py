"""action_ticket_status against the real ledger (SQLite file of the test): by reference or
Zoho number, the chat's recent tickets, inside the form, the ledger failing; and, with a real
delivery to the fake Zoho, the status from Zoho Desk and from the ledger when Zoho is down."""
import asyncio
import sqlite3

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

import actions.common
from helpdesk.config import RetentionConfig
from workers.retention_jobs import apply_retention
from actions.ticket_status import ActionTicketStatus
from tests.actions.helpers import (
    SENDER,
    OTHER,
    Conversation,
    in_ticket_form,
    message,
    record_ticket,
    rendered,
    responses,
    run,
    slot_events,
)
from tests.workers.zoho_support import run_burst, world  # noqa: F401 - fixture


def asks_status(number=None, sender=SENDER) -> Conversation:
    conversation = Conversation(sender_id=sender)
    if number:
        conversation.user(f"cómo va el ticket {number}?", "ask_ticket_status",
                          [("ticket_number", number)], ticket_number=number)
    else:
        conversation.user("estado de mis tickets", "ask_ticket_status")
    return conversation


# from the ledger -------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [str.upper, str.lower])
def test_status_by_reference(bot_ledger, catalog, domain, typed):
    record = record_ticket(bot_ledger, catalog)

    events, dispatcher = run(ActionTicketStatus(), asks_status(typed(record.reference)).tracker(), domain)

    sent = message(dispatcher, "utter_ticket_status")
    assert sent["reference"] == record.reference
    assert sent["subject"] == "POS / caja en Tienda 42 (Avenida): la caja 2 no abre"
    assert sent["status"] == "registrado, pendiente de envío a la mesa de ayuda"
    assert rendered(sent)["text"] == (
        f"El ticket {record.reference} (POS / caja en Tienda 42 (Avenida): la caja 2 no abre) "
        "está en estado: registrado, pendiente de envío a la mesa de ayuda."
    )
    assert events == [{"event": "slot", "timestamp": None, "name": "ticket_number", "value": None}]


def test_status_by_zoho_number_once_delivered(bot_ledger, catalog, domain):
    record = record_ticket(bot_ledger, catalog)
    bot_ledger.mark_delivered(record.id, "zoho-998877", "1234")

    _, dispatcher = run(ActionTicketStatus(), asks_status("#1234").tracker(), domain)

    sent = message(dispatcher, "utter_ticket_status")
    assert sent["reference"] == f"#1234 ({record.reference})"
    assert sent["status"] == "en la mesa de ayuda"


def test_the_status_of_an_old_ticket_after_retention(bot_ledger, catalog, domain, redis_client, tmp_path):
    """Retention blanked the ticket's personal fields (workers/retention_jobs.py); what it keeps
    still answers: by Zoho number, by reference and in the chat's recent tickets."""
    record = record_ticket(bot_ledger, catalog, started=1.0)
    bot_ledger.mark_delivered(record.id, "zoho-998877", "1234")
    with bot_ledger.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE tickets SET created_at = 1000 WHERE id = ?", (record.id,))
    now = 1000 + 91 * 86400
    config = RetentionConfig(days=90, run_every_hours=24, batch_size=10)
    assert apply_retention(redis_client, bot_ledger, config, now, tmp_path / "media")["tickets_redacted"] == 1
    assert bot_ledger.get(record.id).description == ""

    for asked in ("#1234", record.reference):
        _, dispatcher = run(ActionTicketStatus(), asks_status(asked).tracker(), domain)
        sent = message(dispatcher, "utter_ticket_status")
        assert (sent["reference"], sent["status"]) == (f"#1234 ({record.reference})", "en la mesa de ayuda")
        assert sent["subject"] == "POS / caja en Tienda 42 (Avenida): la caja 2 no abre"
    _, dispatcher = run(ActionTicketStatus(), asks_status().tracker(), domain)
    assert f"#1234 ({record.reference})" in message(dispatcher, "utter_recent_tickets")["lines"]


def test_status_of_an_unknown_ticket(bot_ledger, catalog, domain):
    record_ticket(bot_ledger, catalog)

    events, dispatcher = run(ActionTicketStatus(), asks_status("HD-AAAAAA").tracker(), domain)

    assert responses(dispatcher) == ["utter_ticket_not_found"]
    assert rendered(dispatcher.messages[0])["text"] == (
        "No encuentro el ticket «HD-AAAAAA». Revise el número e inténtelo de nuevo."
    )
    assert slot_events(events) == {"ticket_number": None}


def test_recent_tickets_of_this_chat_newest_first(bot_ledger, catalog, domain):
    records = [
        record_ticket(bot_ledger, catalog, started=1_700_000_000.0 + n, description=f"problema número {n}")
        for n in range(4)
    ]
    record_ticket(bot_ledger, catalog, conversation_id=OTHER, description="de otro chat")

    _, dispatcher = run(ActionTicketStatus(), asks_status().tracker(), domain)

    lines = message(dispatcher, "utter_recent_tickets")["lines"].split("\n")
    assert lines == [
        f"• {r.reference}: POS / caja en Tienda 42 (Avenida): problema número {n} "
        "(registrado, pendiente de envío a la mesa de ayuda)"
        for n, r in reversed(list(enumerate(records)))
    ][:3]


def test_no_tickets_yet(bot_ledger, catalog, domain):
    record_ticket(bot_ledger, catalog, conversation_id=OTHER)

    _, dispatcher = run(ActionTicketStatus(), asks_status().tracker(), domain)

    assert responses(dispatcher) == ["utter_no_tickets"]


def test_status_inside_the_form_keeps_the_ticket_slots(bot_ledger, domain):
    conversation = in_ticket_form(Conversation())
    conversation.user("cómo va el ticket HD-AAAAAA?", "ask_ticket_status",
                      [("ticket_number", "HD-AAAAAA")], ticket_number="HD-AAAAAA")

    events, dispatcher = run(ActionTicketStatus(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_ticket_not_found"]
    assert slot_events(events) == {"ticket_number": None}


def test_status_when_the_ledger_query_fails(bot_ledger, database_url, domain):
    actions.common.get_ledger()  # the action server opened its ledger long ago
    with sqlite3.connect(database_url[len("sqlite:///"):]) as connection:
        connection.execute("DROP TABLE tickets")

    events, dispatcher = run(ActionTicketStatus(), asks_status("HD-AAAAAA").tracker(), domain)

    assert responses(dispatcher) == ["utter_status_unavailable"]
    assert slot_events(events) == {"ticket_number": None}


def test_status_when_the_ledger_cannot_be_opened(ledger_down, domain):
    events, dispatcher = run(ActionTicketStatus(), asks_status("HD-AAAAAA").tracker(), domain)

    assert responses(dispatcher) == ["utter_status_unavailable"]
    assert slot_events(events) == {"ticket_number": None}


# from Zoho Desk, with a real delivery (a burst RQ worker, the fake Zoho) ---------------------
def status_answer(number: str):
    """The action's one message, run the way the action server runs it (a tracker, no domain)."""
    actions.common.get_ledger.cache_clear()
    tracker = Tracker("5491122334455", {"ticket_number": number}, {"intent": {"name": "ask_ticket_status"}},
                      [], False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    asyncio.run(ActionTicketStatus().run(dispatcher, tracker, {}))
    assert len(dispatcher.messages) == 1
    return dispatcher.messages[0]


def test_status_comes_from_zoho_and_from_the_ledger_when_zoho_is_down(world):  # noqa: F811
    record = world.submit()
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.state == "delivered" and record.zoho_ticket_id

    world.zoho.set_status(record.zoho_ticket_id, "On Hold", "On Hold")
    live = status_answer(record.reference)
    assert live["response"] == "utter_ticket_status"
    assert live["status"] == "en espera"  # Zoho's "On Hold" as config/zoho.yml labels it
    assert world.ledger.get(record.id).zoho_status == "On Hold"
    assert any(call.path.endswith(f"/tickets/{record.zoho_ticket_id}")
               for call in world.zoho.calls("GET"))

    world.zoho.go_down()
    offline = status_answer(record.zoho_ticket_number)
    assert offline["response"] == "utter_ticket_status_offline"
    assert offline["status"] == "en espera"  # the last status Zoho gave
