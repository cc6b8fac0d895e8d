"""The follow-up actions (actions/followups.py) on trackers built the way Rasa builds them,
with the external user event trigger_intent adds: the anchor check, the re-ask through the
form, the escalation through action_request_human, the close of a silent thread."""
import json

import pytest
from rasa.shared.core.events import ActiveLoop, SessionStarted, UserUttered

from actions.common import TICKET_SLOTS as FRESH_TICKET_SLOTS
from actions.followups import ActionFollowupClose, ActionFollowupEscalate, ActionFollowupReask
from helpdesk import followups, handoff, redis_keys
from tests.actions.helpers import SENDER, Conversation, rendered, responses, run, slot_events

REPORTER = {"sender_name": "Ana Pérez", "sender_phone": "5491122334455"}


def waiting_for_store() -> Conversation:
    """The user reported an incident; the form asked for the store and waits."""
    conversation = Conversation(metadata=REPORTER, input_channel="waha")
    conversation.user("la impresora fiscal no imprime", "report_incident",
                      [("system", "impresora fiscal")], system="impresora fiscal")
    conversation.activate_form().form_asks("store", "¿En qué tienda ocurre?")
    return conversation


def anchor_of(conversation: Conversation) -> str:
    anchor = followups.last_user_message_id(conversation.tracker().events)
    assert anchor and anchor.startswith("wamid.")
    return anchor


def trigger(conversation: Conversation, intent: str, **entities: str) -> Conversation:
    """What Rasa's trigger_intent adds before the action runs: the external user event."""
    event = UserUttered.create_external(
        intent, [{"entity": k, "value": v} for k, v in entities.items()], conversation.input_channel)
    event.timestamp = conversation.tick()
    conversation.events.append(event)
    return conversation


def reask(conversation: Conversation, anchor: str, attempt: int, final: bool = False) -> Conversation:
    entities = {followups.ANCHOR: anchor, followups.ATTEMPT: str(attempt)}
    if final:
        entities[followups.FINAL] = "1"
    return trigger(conversation, followups.REASK_INTENT, **entities)


# --- asking again --------------------------------------------------------------------------
def test_the_reminder_comes_first_then_the_form_asks_its_question_again(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)

    events, dispatcher = run(ActionFollowupReask(), reask(conversation, anchor, 1).tracker(), domain)

    assert responses(dispatcher) == ["utter_followup_reminder"]
    assert rendered(dispatcher.messages[0])["text"] == (
        "Sigo a la espera de su respuesta para continuar con el ticket.")
    assert events == [{"event": "followup", "name": "ticket_form", "timestamp": None}]


def test_the_last_reminder_says_a_person_comes_next(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)

    events, dispatcher = run(ActionFollowupReask(), reask(conversation, anchor, 3, final=True).tracker(),
                             domain)

    assert responses(dispatcher) == ["utter_followup_last_reminder"]
    assert "avisaré a una persona" in rendered(dispatcher.messages[0])["text"]
    assert events[0]["name"] == "ticket_form"


def test_a_user_message_handled_first_makes_the_reminder_say_nothing(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    conversation.action("action_listen")
    conversation.user("tienda 42", "inform", [("store", "42")], store="Tienda 42 (Centro)")
    conversation.form_asks("description")

    events, dispatcher = run(ActionFollowupReask(), reask(conversation, anchor, 1).tracker(), domain)

    assert (events, dispatcher.messages) == ([], [])


def test_no_form_waiting_no_reminder(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    conversation.deactivate_form()

    events, dispatcher = run(ActionFollowupReask(), reask(conversation, anchor, 1).tracker(), domain)

    assert (events, dispatcher.messages) == ([], [])


def test_a_retried_step_does_not_ask_twice_but_the_next_one_asks(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    reask(conversation, anchor, 1).action("action_followup_reask").bot("reminder")
    conversation.action("ticket_form").bot("¿En qué tienda ocurre?").action("action_listen")

    again, dispatcher = run(ActionFollowupReask(), reask(conversation, anchor, 1).tracker(), domain)
    assert (again, dispatcher.messages) == ([], [])

    conversation.action("action_followup_reask").action("action_listen")
    events, dispatcher = run(ActionFollowupReask(), reask(conversation, anchor, 2).tracker(), domain)
    assert responses(dispatcher) == ["utter_followup_reminder"]
    assert events[0]["event"] == "followup"


def test_reminders_and_other_workers_messages_do_not_count_as_the_user_writing(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    trigger(conversation, "EXTERNAL_ticket_delivered", reference="#1042").bot("ticket delivered")
    reask(conversation, anchor, 1).bot("reminder")

    assert followups.anchor_is_latest(conversation.tracker().events, anchor)


# --- escalating ------------------------------------------------------------------------------
@pytest.fixture
def without_chatwoot(monkeypatch, redis_url, redis_client):
    monkeypatch.delenv("CHATWOOT_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WAHA_BASE_URL", "http://127.0.0.1:9")  # a WhatsApp channel exists
    return redis_client


def test_the_escalation_tells_the_support_chat_and_ends_the_form(bot_ledger, domain, without_chatwoot,
                                                                 monkeypatch):
    monkeypatch.setenv("SUPPORT_ESCALATION_CHAT", "5491100000000")
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    trigger(conversation, followups.ESCALATE_INTENT, **{followups.ANCHOR: anchor, followups.ATTEMPT: "4"})

    events, dispatcher = run(ActionFollowupEscalate(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_followup_escalated"]
    assert rendered(dispatcher.messages[0])["text"].startswith("Como no he recibido respuesta")
    assert [r["reason"] for r in bot_ledger.handoff_requests(SENDER)] == ["escalation"]
    [queued] = [json.loads(raw) for raw in
                without_chatwoot.lrange(redis_keys.outbox("waha", "5491100000000@c.us"), 0, -1)]
    assert queued["text"].startswith(
        "@5491100000000 Se requiere intervención manual para el incidente reportado por @5491122334455")
    assert "Sistema: impresora fiscal" in queued["text"]
    assert events[-2:] == [{"event": "active_loop", "name": None, "timestamp": None},
                           {"event": "slot", "name": "requested_slot", "value": None, "timestamp": None}]
    assert slot_events(events)["system"] is None  # the handoff dropped what was collected


def test_with_chatwoot_the_escalation_pauses_the_bot(bot_ledger, domain, monkeypatch, redis_url,
                                                     redis_client):
    for name, value in {"CHATWOOT_URL": "http://127.0.0.1:9", "CHATWOOT_API_TOKEN": "t",
                        "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_INBOX_ID": "5", "REDIS_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    trigger(conversation, followups.ESCALATE_INTENT, **{followups.ANCHOR: anchor})

    events, dispatcher = run(ActionFollowupEscalate(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_followup_escalated_paused"]
    assert events[-1] == {"event": "pause", "timestamp": None}
    assert sum(e["event"] == "active_loop" for e in events) == 1
    assert handoff.is_marked(redis_client, SENDER)


def test_an_escalation_the_user_overtook_does_nothing(bot_ledger, domain, without_chatwoot):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    conversation.action("action_listen").user("es la tienda 42", "inform", [("store", "42")])
    trigger(conversation, followups.ESCALATE_INTENT, **{followups.ANCHOR: anchor})

    events, dispatcher = run(ActionFollowupEscalate(), conversation.tracker(), domain)

    assert (events, dispatcher.messages) == ([], [])
    assert bot_ledger.handoff_requests(SENDER) == []


# --- closing a silent thread -------------------------------------------------------------------
def close(conversation: Conversation, anchor: str) -> Conversation:
    return trigger(conversation, followups.CLOSE_INTENT, **{followups.ANCHOR: anchor})


def test_a_silent_thread_gets_the_final_message_and_the_form_ends(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    reask(conversation, anchor, 1).bot("reminder")

    events, dispatcher = run(ActionFollowupClose(), close(conversation, anchor).tracker(), domain)

    assert responses(dispatcher) == ["utter_thread_timeout"]
    assert rendered(dispatcher.messages[0])["text"].startswith(
        "El ticket no pudo completarse por falta de información.")
    assert events[:2] == [{"event": "active_loop", "name": None, "timestamp": None},
                          {"event": "slot", "name": "requested_slot", "value": None, "timestamp": None}]
    assert slot_events(events) == {"requested_slot": None, **FRESH_TICKET_SLOTS}


def test_a_thread_whose_session_expired_first_still_gets_the_final_message(domain):
    conversation = waiting_for_store()
    anchor = anchor_of(conversation)
    # trigger_intent found the session expired: a new one started, without the form
    conversation.action("action_session_start")
    conversation.events.append(SessionStarted(timestamp=conversation.tick()))
    conversation.action("action_listen")

    events, dispatcher = run(ActionFollowupClose(), close(conversation, anchor).tracker(), domain)

    assert responses(dispatcher) == ["utter_thread_timeout"]
    assert events == []


def test_no_final_message_after_an_escalation_or_a_user_message(domain):
    escalated = waiting_for_store()
    anchor = anchor_of(escalated)
    trigger(escalated, followups.ESCALATE_INTENT, **{followups.ANCHOR: anchor})
    escalated.events.append(ActiveLoop(None, timestamp=escalated.tick()))
    events, dispatcher = run(ActionFollowupClose(), close(escalated, anchor).tracker(), domain)
    assert (events, dispatcher.messages) == ([], [])

    answered = waiting_for_store()
    anchor = anchor_of(answered)
    answered.action("action_listen").user("tienda 42", "inform", [("store", "42")])
    events, dispatcher = run(ActionFollowupClose(), close(answered, anchor).tracker(), domain)
    assert (events, dispatcher.messages) == ([], [])
