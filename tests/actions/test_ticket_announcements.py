"""The actions that pass a worker's trigger_intent entities to the responses
(actions/ticket_announcements.py), on trackers built as Rasa builds them for an external intent."""
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
