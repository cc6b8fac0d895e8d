"""One outage, one ticket (actions/same_incident.py): a report matching a ticket just recorded
is asked whether it is the same problem; joined, it is added to that ticket, otherwise it gets
its own. Real ledger per test, the project's domain and config/dialogue.yml."""
import dataclasses

import pytest
from sqlalchemy import update

import actions.same_incident
from actions.same_incident import ActionAskSameIncident
from actions.ticket_submit import ActionSubmitTicket
from helpdesk.config import catalog
from helpdesk.tickets.ledger import tickets_table
from tests.actions.helpers import (
    Conversation,
    form_turn,
    message,
    rendered,
    responses,
    run,
    slot_events,
)

INCIDENT = "se cayó el POS en la tienda 42, no podemos vender"
ENTITIES = (("store", "tienda 42"), ("system", "POS"))
FIRST = "5491100001111"
GROUP = "120363419669512474"


def report(conversation: Conversation, text: str = INCIDENT, entities=ENTITIES):
    slots = {kind: value for kind, value in entities}
    conversation.user(text, "report_incident", entities, **slots)
    return form_turn(conversation)


def ticket_from(sender_id: str, domain, text: str = INCIDENT, entities=ENTITIES):
    """A reporter's ticket, confirmed and submitted."""
    conversation = Conversation(sender_id=sender_id,
                                metadata={"sender_name": "Luis", "sender_phone": sender_id})
    events, _ = report(conversation, text, entities)
    assert slot_events(events).get("requested_slot") in (None, "confirm_ticket")
    conversation.form_asks("confirm_ticket", "Voy a crear este ticket: ...")
    conversation.user("sí", "affirm")
    form_turn(conversation)
    conversation.deactivate_form()
    events, _ = run(ActionSubmitTicket(), conversation.tracker(), domain)
    conversation.apply(events)  # the ticket's slots reset, as Rasa applies them
    conversation.action("action_listen")
    return conversation


@pytest.fixture
def second() -> Conversation:
    return Conversation(metadata={"sender_name": "Ana Pérez", "sender_phone": "5491122334455"})


def test_a_second_report_of_the_outage_joins_the_first_ticket(bot_ledger, domain, second):
    ticket_from(FIRST, domain)
    (first,) = bot_ledger.recent_for(FIRST, 5)

    events, _ = report(second)
    assert slot_events(events)["requested_slot"] == "same_incident"
    _, dispatcher = run(ActionAskSameIncident(), second.tracker(), domain)
    asked = rendered(message(dispatcher, "utter_same_incident"))
    assert first.reference in asked["text"] and "POS" in asked["text"]
    assert "Tienda 42" in asked["text"]
    assert [b["title"] for b in asked["buttons"]] == ["Sí, es el mismo", "No, es otro"]

    second.form_asks("same_incident")
    second.user("sí, es el mismo", "affirm")
    events, _ = form_turn(second)
    assert slot_events(events)["same_incident"] == first.id
    assert slot_events(events).get("requested_slot") is None  # no read-back: nothing to confirm
    second.deactivate_form()
    for _ in range(2):  # a redelivered submit adds the report once
        events, dispatcher = run(ActionSubmitTicket(), second.tracker(), domain)
        assert responses(dispatcher) == ["utter_report_added_to_ticket"]
        told = rendered(message(dispatcher, "utter_report_added_to_ticket"))["text"]
        assert first.reference in told
    assert slot_events(events)["same_incident"] is None  # the slots are fresh for a next one

    assert bot_ledger.recent_for(second.sender_id, 5) == []  # no ticket of its own
    description = bot_ledger.get(first.id).description
    assert description.count("Otro reporte del mismo problema, de Ana Pérez (5491122334455): "
                             f"{INCIDENT}") == 1


def test_a_different_problem_gets_a_ticket_of_its_own(bot_ledger, domain, second):
    ticket_from(FIRST, domain)
    report(second)
    second.form_asks("same_incident")
    second.user("no, es otro", "deny")
    events, _ = form_turn(second)
    assert slot_events(events)["same_incident"] == "other"
    assert slot_events(events)["requested_slot"] == "confirm_ticket"
    second.form_asks("confirm_ticket", "Voy a crear este ticket: ...")
    second.user("sí", "affirm")
    form_turn(second)
    second.deactivate_form()
    _, dispatcher = run(ActionSubmitTicket(), second.tracker(), domain)
    assert responses(dispatcher) == ["utter_ticket_recorded"]
    assert len(bot_ledger.recent_for(second.sender_id, 5)) == 1


@pytest.mark.parametrize("change", ["another system", "another store", "old", "closed"])
def test_no_question_without_a_matching_open_ticket_in_the_window(bot_ledger, domain, second,
                                                                 change):
    ticket_from(FIRST, domain)
    (first,) = bot_ledger.recent_for(FIRST, 5)
    text, entities = INCIDENT, ENTITIES
    if change == "another system":
        text, entities = "la impresora fiscal de la tienda 42 no imprime", (
            ("store", "tienda 42"), ("system", "impresora fiscal"))
    elif change == "another store":
        text, entities = "se cayó el POS en la tienda 12, no podemos vender", (
            ("store", "tienda 12"), ("system", "POS"))
    else:
        values = ({"created_at": first.created_at - 121 * 60} if change == "old"
                  else {"zoho_status_type": "Closed"})
        with bot_ledger.engine.begin() as connection:
            connection.execute(update(tickets_table).where(tickets_table.c.id == first.id)
                               .values(**values))
    events, _ = report(second, text, entities)
    assert slot_events(events).get("requested_slot") != "same_incident"


def test_scope_group_compares_within_the_same_group_only(bot_ledger, domain, monkeypatch):
    project = catalog()
    monkeypatch.setattr(actions.same_incident, "get_catalog", lambda: dataclasses.replace(
        project, dialogue=dataclasses.replace(project.dialogue, same_incident_scope="group")))
    ticket_from(f"g{GROUP}-{FIRST}", domain)
    for sender, asked in ((f"g{GROUP}-5491122334455", True), ("5491122334455", False),
                          ("g120363000000000001-5491122334455", False)):
        conversation = Conversation(sender_id=sender)
        events, _ = report(conversation)
        assert (slot_events(events).get("requested_slot") == "same_incident") is asked, sender


def test_the_ledger_away_means_no_question_and_the_form_goes_on(ledger_down, domain, second):
    events, _ = report(second)
    assert slot_events(events).get("requested_slot") != "same_incident"


# with Zoho Desk (fake Zoho on loopback, real Redis, a real RQ worker in the background) ---
import time  # noqa: E402

from rq import Worker  # noqa: E402

from helpdesk.tickets import DELIVERED  # noqa: E402
from tests.workers.zoho_support import background_workers, wait_until, world  # noqa: E402,F401


def test_with_zoho_the_joined_report_is_one_comment_on_the_zoho_ticket(bot_ledger, domain,
                                                                       second, world,
                                                                       background_workers):
    background_workers()
    wait_until(lambda: Worker.all(connection=world.redis), 15, what="the worker registered")
    ticket_from(FIRST, domain)
    (first,) = bot_ledger.recent_for(FIRST, 5)
    assert first.state == DELIVERED
    report(second)
    second.form_asks("same_incident")
    second.user("sí", "affirm")
    form_turn(second)
    second.deactivate_form()
    for _ in range(2):
        _, dispatcher = run(ActionSubmitTicket(), second.tracker(), domain)
        told = rendered(message(dispatcher, "utter_report_added_to_ticket"))["text"]
        assert f"#{first.zoho_ticket_number}" in told

    wait_until(lambda: world.zoho.comments.get(first.zoho_ticket_id), 20, what="the comment")
    time.sleep(1.0)  # a second comment would be on its way by now
    (comment,) = world.zoho.comments[first.zoho_ticket_id]
    assert "Otro reporte del mismo problema, de Ana Pérez (5491122334455)" in comment["content"]
    assert INCIDENT in comment["content"]
    assert len(world.zoho.tickets) == 1
    assert bot_ledger.get(first.id).description == first.description  # Zoho keeps it


# more about the reporter's own ticket of a moment ago ---------------------------------------

def test_more_about_the_ticket_just_made_is_asked_first_and_added_to_it(bot_ledger, domain):
    own = ticket_from(FIRST, domain)
    (first,) = bot_ledger.recent_for(FIRST, 5)
    more = "ah y también la balanza de carnicería hace lo mismo"
    own.user(more, "report_incident", [("system", "balanza")], system="balanza")
    events, _ = form_turn(own)
    # asked before the store: what it adds need not name one
    assert slot_events(events)["requested_slot"] == "same_incident"
    _, dispatcher = run(ActionAskSameIncident(), own.tracker(), domain)
    asked = rendered(message(dispatcher, "utter_more_about_ticket"))
    assert first.reference in asked["text"]
    assert [b["title"] for b in asked["buttons"]] == [f"Agregar al ticket {first.reference}",
                                                      "Es un problema nuevo"]
    own.form_asks("same_incident")
    own.user("1", "affirm")
    events, _ = form_turn(own)
    assert slot_events(events)["same_incident"] == first.id
    own.deactivate_form()
    _, dispatcher = run(ActionSubmitTicket(), own.tracker(), domain)
    assert responses(dispatcher) == ["utter_report_added_to_ticket"]
    assert len(bot_ledger.recent_for(FIRST, 5)) == 1
    assert bot_ledger.get(first.id).description.endswith(f"Más información de Luis ({FIRST}): {more}")


def test_a_new_problem_after_a_ticket_gets_the_form_as_usual(bot_ledger, domain):
    own = ticket_from(FIRST, domain)
    own.user("la impresora fiscal de la tienda 12 no imprime", "report_incident",
             [("system", "impresora fiscal"), ("store", "tienda 12")],
             system="impresora fiscal", store="tienda 12")
    form_turn(own)
    own.form_asks("same_incident")
    own.user("es un problema nuevo", "deny")
    events, _ = form_turn(own)
    assert slot_events(events)["same_incident"] == "other"
    assert slot_events(events)["requested_slot"] == "confirm_ticket"


def test_after_the_window_a_report_is_a_new_form_without_the_question(bot_ledger, domain):
    own = ticket_from(FIRST, domain)
    (first,) = bot_ledger.recent_for(FIRST, 5)
    with bot_ledger.engine.begin() as connection:
        connection.execute(update(tickets_table).where(tickets_table.c.id == first.id)
                           .values(created_at=first.created_at - 31 * 60))
    own.user("la impresora fiscal de la tienda 12 no imprime", "report_incident",
             [("system", "impresora fiscal"), ("store", "tienda 12")],
             system="impresora fiscal", store="tienda 12")
    events, _ = form_turn(own)
    assert slot_events(events).get("requested_slot") in (None, "confirm_ticket")
