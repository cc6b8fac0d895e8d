"""Ticket status, handoff, opt-out/opt-in and how-to actions, against the real ledger (SQLite
file of the test) and the session's real Redis."""
import sqlite3
import time

import pytest

import actions.common
from actions.handoff import ActionRequestHuman
from actions.knowledge import ActionAnswerHowto
from actions.subscription import ActionOptIn, ActionOptOut
from actions.ticket_status import ActionTicketStatus
from helpdesk import redis_keys
from helpdesk.tickets import build_ticket, ticket_id_for
from tests.actions.helpers import (
    SENDER,
    FRESH_TICKET_SLOTS,
    TICKET_SLOTS,
    Conversation,
    form_turn,
    message,
    rendered,
    responses,
    run,
    slot_events,
)

OTHER = "5491199887766"


def record_ticket(ledger, catalog, conversation_id=SENDER, started=None, description="la caja 2 no abre"):
    ticket = build_ticket(
        catalog,
        ticket_id=ticket_id_for(conversation_id, started or time.time()),
        conversation_id=conversation_id,
        store="Tienda 42 (Avenida)",
        system="POS",
        description=description,
        stated_priority=None,
        priority_texts=[description],
    )
    record, created = ledger.submit(ticket)
    assert created
    return record


def asks_status(number=None, sender=SENDER) -> Conversation:
    conversation = Conversation(sender_id=sender)
    if number:
        conversation.user(f"cómo va el ticket {number}?", "ask_ticket_status",
                          [("ticket_number", number)], ticket_number=number)
    else:
        conversation.user("estado de mis tickets", "ask_ticket_status")
    return conversation


def in_ticket_form(conversation: Conversation) -> Conversation:
    """The form has store and system and asks for the description."""
    conversation.user("la impresora fiscal tira error en la tienda 9", "report_incident",
                      [("system", "impresora fiscal"), ("store", "tienda 9")],
                      system="impresora fiscal", store="tienda 9")
    form_turn(conversation)
    conversation.slot("description", None)  # say it is still to be described
    conversation.form_asks("description")
    return conversation


# ticket status --------------------------------------------------------------------------
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


# handoff --------------------------------------------------------------------------------
def test_handoff_during_the_form_records_what_was_collected(bot_ledger, domain):
    conversation = in_ticket_form(Conversation())
    conversation.user("quiero hablar con una persona", "request_human")
    tracker = conversation.tracker()

    events, dispatcher = run(ActionRequestHuman(), tracker, domain)

    requests_ = bot_ledger.handoff_requests(SENDER)
    assert len(requests_) == 1
    request = requests_[0]
    assert request["reason"] == "during_ticket"
    assert request["text"] == (
        "quiero hablar con una persona | store: Tienda 9 (Belgrano); system: impresora fiscal"
    )
    assert request["correlation_id"] == tracker.latest_message["metadata"]["correlation_id"]
    assert responses(dispatcher) == ["utter_handoff_requested"]
    assert rendered(dispatcher.messages[0])["text"].startswith("He registrado su solicitud.")
    assert slot_events(events) == FRESH_TICKET_SLOTS


def test_handoff_outside_the_form(bot_ledger, domain):
    conversation = Conversation().user("quiero hablar con una persona", "request_human")

    _, dispatcher = run(ActionRequestHuman(), conversation.tracker(), domain)

    requests_ = bot_ledger.handoff_requests(SENDER)
    assert [(r["reason"], r["text"]) for r in requests_] == [("asked", "quiero hablar con una persona")]
    assert responses(dispatcher) == ["utter_handoff_requested"]


def test_handoff_when_the_ledger_cannot_be_opened_still_answers(ledger_down, domain):
    conversation = Conversation().user("quiero hablar con una persona", "request_human")

    events, dispatcher = run(ActionRequestHuman(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_requested"]
    assert slot_events(events) == FRESH_TICKET_SLOTS


# opt-out / opt-in -----------------------------------------------------------------------
def test_opt_out_adds_the_sender_to_the_redis_set(optout_redis, domain):
    optout_redis.sadd(redis_keys.opted_out_set(), OTHER)
    conversation = Conversation().user("BAJA", "opt_out")

    events, dispatcher = run(ActionOptOut(), conversation.tracker(), domain)

    assert optout_redis.sismember(redis_keys.opted_out_set(), SENDER)
    assert optout_redis.smembers(redis_keys.opted_out_set()) == {SENDER.encode(), OTHER.encode()}
    assert responses(dispatcher) == ["utter_opted_out"]
    assert slot_events(events) == FRESH_TICKET_SLOTS


def test_opt_out_inside_the_form_clears_the_ticket(optout_redis, domain):
    conversation = in_ticket_form(Conversation())
    conversation.user("STOP", "opt_out")

    events, _ = run(ActionOptOut(), conversation.tracker(), domain)

    assert optout_redis.sismember(redis_keys.opted_out_set(), SENDER)
    after = conversation.apply(events).tracker().slots
    assert all(after[name] == FRESH_TICKET_SLOTS[name] for name in TICKET_SLOTS)


def test_opt_in_removes_the_sender_from_the_redis_set(optout_redis, domain):
    optout_redis.sadd(redis_keys.opted_out_set(), SENDER, OTHER)
    conversation = Conversation().user("ALTA", "opt_in")

    events, dispatcher = run(ActionOptIn(), conversation.tracker(), domain)

    assert optout_redis.smembers(redis_keys.opted_out_set()) == {OTHER.encode()}
    assert responses(dispatcher) == ["utter_opted_in"]
    # nothing collected while the bot was silent carries on
    assert slot_events(events) == FRESH_TICKET_SLOTS


def test_opt_out_then_opt_in(optout_redis, domain):
    conversation = Conversation().user("BAJA", "opt_out")
    run(ActionOptOut(), conversation.tracker(), domain)
    assert optout_redis.sismember(redis_keys.opted_out_set(), SENDER)

    conversation.action("action_opt_out").action("action_listen").user("ALTA", "opt_in")
    _, dispatcher = run(ActionOptIn(), conversation.tracker(), domain)

    assert not optout_redis.sismember(redis_keys.opted_out_set(), SENDER)
    assert responses(dispatcher) == ["utter_opted_in"]


@pytest.mark.parametrize("action, intent", [(ActionOptOut, "opt_out"), (ActionOptIn, "opt_in")])
def test_unreachable_redis_tells_the_user(unreachable_redis, domain, action, intent):
    conversation = in_ticket_form(Conversation())
    conversation.user("BAJA" if intent == "opt_out" else "ALTA", intent)

    started = time.monotonic()
    events, dispatcher = run(action(), conversation.tracker(), domain)

    assert time.monotonic() - started < 5
    assert responses(dispatcher) == ["utter_opt_unavailable"]
    assert rendered(dispatcher.messages[0])["text"].startswith("No he podido guardar su preferencia")
    assert events == []


# how-to ---------------------------------------------------------------------------------
