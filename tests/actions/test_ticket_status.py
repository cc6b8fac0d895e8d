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

    sent = message(dispatcher, "utter_ticket_status_pending")  # not in Zoho Desk yet
    assert sent["reference"] == record.reference
    assert sent["subject"] == "POS / caja en Tienda 42 (Avenida): la caja 2 no abre"
    assert sent["status"] == "registrado, pendiente de envío a la mesa de ayuda"
    assert rendered(sent)["text"] == (
        f"El ticket {record.reference} está en estado: registrado, pendiente de envío a la mesa "
        "de ayuda.\nAsunto: POS / caja en Tienda 42 (Avenida): la caja 2 no abre."
    )
    assert events == [{"event": "slot", "timestamp": None, "name": "ticket_number", "value": None}]


def test_status_by_zoho_number_once_delivered(bot_ledger, catalog, domain):
    record = record_ticket(bot_ledger, catalog)
    bot_ledger.mark_delivered(record.id, "zoho-998877", "1234")

    _, dispatcher = run(ActionTicketStatus(), asks_status("#1234").tracker(), domain)

    sent = message(dispatcher, "utter_ticket_status")
    assert (sent["ticket_number"], sent["reference"]) == ("1234", record.reference)
    assert sent["status"] == "en la mesa de ayuda"
    assert rendered(sent)["text"] == (  # the spec's words
        "El ticket #1234 está en estado: en la mesa de ayuda.\n"
        f"Asunto: POS / caja en Tienda 42 (Avenida): la caja 2 no abre (referencia {record.reference})."
    )


# numbers as people type them, with no entity (or a fragment) from the NLU -----------------------
def asks_in_words(text, entities=(), **slots) -> Conversation:
    conversation = Conversation()
    conversation.user(text, "ask_ticket_status", entities, **slots)
    return conversation


@pytest.mark.parametrize("text", [
    "cómo va el ticket 105?", "¿y el 105?", "#105", "ticket nro 105", "Ticket N° 105",
    "qué pasó con el 105 de la tienda 42?",
])
def test_the_number_is_read_from_the_text_when_no_entity_was_found(bot_ledger, catalog, domain, text):
    record = record_ticket(bot_ledger, catalog)
    bot_ledger.mark_delivered(record.id, "zoho-105", "105")

    events, dispatcher = run(ActionTicketStatus(), asks_in_words(text).tracker(), domain)

    sent = message(dispatcher, "utter_ticket_status")
    assert sent["ticket_number"] == "105"
    assert rendered(sent)["text"].startswith("El ticket #105 está en estado: en la mesa de ayuda.")
    assert slot_events(events) == {"ticket_number": None}


@pytest.mark.parametrize("typed", [str.upper, str.lower, str.title])
def test_the_reference_is_read_from_the_text_in_any_case(bot_ledger, catalog, domain, typed):
    record = record_ticket(bot_ledger, catalog)

    _, dispatcher = run(ActionTicketStatus(), asks_in_words(typed(record.reference)).tracker(), domain)

    assert message(dispatcher, "utter_ticket_status_pending")["reference"] == record.reference


@pytest.mark.parametrize("slot", ["nro 105", "#105", "n° 105"])
def test_a_slot_with_the_words_around_the_number(bot_ledger, catalog, domain, slot):
    record = record_ticket(bot_ledger, catalog)
    bot_ledger.mark_delivered(record.id, "zoho-105", "105")

    _, dispatcher = run(ActionTicketStatus(), asks_in_words(f"ticket {slot}", ticket_number=slot).tracker(),
                        domain)

    assert message(dispatcher, "utter_ticket_status")["ticket_number"] == "105"


def test_a_store_number_is_not_a_ticket_number(bot_ledger, catalog, domain):
    record_ticket(bot_ledger, catalog)

    _, dispatcher = run(ActionTicketStatus(), asks_in_words("ver los tickets de tienda 42").tracker(), domain)

    assert responses(dispatcher) == ["utter_recent_tickets"]


def test_a_slot_that_is_no_number_is_answered_as_typed(bot_ledger, catalog, domain):
    record_ticket(bot_ledger, catalog)

    _, dispatcher = run(ActionTicketStatus(), asks_in_words("estado del HD-ABC", ticket_number="HD-ABC").tracker(),
                        domain)

    assert responses(dispatcher) == ["utter_ticket_not_found"]
    assert message(dispatcher, "utter_ticket_not_found")["number"] == "HD-ABC"


def test_a_button_payload_lists_the_recent_tickets(bot_ledger, catalog, domain):
    record_ticket(bot_ledger, catalog)

    _, dispatcher = run(ActionTicketStatus(), asks_in_words("/ask_ticket_status").tracker(), domain)

    assert responses(dispatcher) == ["utter_recent_tickets"]


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
        assert (sent["ticket_number"], sent["reference"], sent["status"]) == (
            "1234", record.reference, "en la mesa de ayuda")
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
def status_answer(number: str = None, text: str = ""):
    """The action's one message, run the way the action server runs it (a tracker, no domain):
    the ticket_number slot set to `number`, or only the message `text`."""
    actions.common.get_ledger.cache_clear()
    tracker = Tracker("5491122334455", {"ticket_number": number},
                      {"intent": {"name": "ask_ticket_status"}, "text": text, "entities": []},
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


@pytest.mark.parametrize("text", ["cómo va el ticket 105?", "¿y el 105?", "#105", "ticket nro 105",
                                  "reference"])
def test_the_live_status_of_a_number_typed_as_people_type_it(world, text):  # noqa: F811
    world.zoho.number_from(105)
    record = world.submit()
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.zoho_ticket_number == "105"
    world.zoho.set_status(record.zoho_ticket_id, "Escalated", "Open")

    said = status_answer(text=record.reference.lower() if text == "reference" else text)

    assert said["response"] == "utter_ticket_status"
    assert (said["ticket_number"], said["status"]) == ("105", "escalado")  # Zoho's, live
    assert world.ledger.get(record.id).zoho_status == "Escalated"
