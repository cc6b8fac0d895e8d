"""The actions that pass a worker's trigger_intent entities to the responses
(actions/ticket_announcements.py), on trackers built as Rasa builds them for an external intent."""
import asyncio

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.exc import SQLAlchemyError

from actions.ticket_announcements import ActionAnnounceTicketDelivered, ActionAnnounceTicketStatus
from tests.actions.helpers import Conversation, message, run


def external(intent, **entities):
    # what Rasa's trigger_intent puts on the tracker: UserUttered.create_external
    conversation = Conversation(metadata={"sender_name": "Ana Pérez"})
    conversation.user(f"EXTERNAL: {intent}", intent,
                      [{"entity": name, "value": value} for name, value in entities.items()])
    return conversation.tracker()


def test_delivered_passes_number_priority_and_reference(domain):
    tracker = external("EXTERNAL_ticket_delivered", ticket_number="1042", priority="urgente",
                       reference="HD-7K3M9Q")
    events, dispatcher = run(ActionAnnounceTicketDelivered(), tracker, domain)
    sent = message(dispatcher, "utter_ticket_delivered")
    assert (sent["ticket_number"], sent["priority"], sent["reference"]) == ("1042", "urgente", "HD-7K3M9Q")
    assert events == []  # a form the reporter is filling in is left alone


def test_status_change_passes_number_and_status(domain):
    tracker = external("EXTERNAL_ticket_status_changed", ticket_number="1042", status="en espera",
                       reference="HD-7K3M9Q")
    events, dispatcher = run(ActionAnnounceTicketStatus(), tracker, domain)
    sent = message(dispatcher, "utter_ticket_status_changed")
    assert (sent["ticket_number"], sent["status"]) == ("1042", "en espera")
    assert events == []


def test_without_the_entities_nothing_is_said(domain):
    tracker = external("EXTERNAL_ticket_status_changed", ticket_number="1042")
    events, dispatcher = run(ActionAnnounceTicketStatus(), tracker, domain)
    assert dispatcher.messages == [] and events == []


def test_an_announcement_is_said_once_by_its_key(domain, bot_ledger):
    # the worker's first call and its retry (or a first call Rasa ran late) reach the action
    entities = dict(ticket_number="1042", priority="urgente", reference="HD-7K3M9Q",
                    announcement="announce-delivered-t1")
    first = run(ActionAnnounceTicketDelivered(), external("EXTERNAL_ticket_delivered", **entities), domain)
    again = run(ActionAnnounceTicketDelivered(), external("EXTERNAL_ticket_delivered", **entities), domain)
    assert message(first[1], "utter_ticket_delivered")["ticket_number"] == "1042"
    assert again == ([], again[1]) and again[1].messages == []
    assert bot_ledger.announcement_spoken("announce-delivered-t1") is not None
    # another announcement (a status change) has a key of its own: said
    status = external("EXTERNAL_ticket_status_changed", ticket_number="1042", status="cerrado",
                      announcement="announce-status-t1-abc")
    assert message(run(ActionAnnounceTicketStatus(), status, domain)[1], "utter_ticket_status_changed")


def test_without_the_ledger_nothing_is_said_and_the_action_fails(domain, ledger_down):
    # Rasa answers the worker 500: its retry tries again, nothing was said
    tracker = external("EXTERNAL_ticket_delivered", ticket_number="1042", reference="HD-7K3M9Q",
                       announcement="announce-delivered-t2")
    dispatcher = CollectingDispatcher()
    with pytest.raises((OSError, SQLAlchemyError)):  # the ledger's directory, its server
        asyncio.run(ActionAnnounceTicketDelivered().run(dispatcher, tracker, domain))
    assert dispatcher.messages == []
