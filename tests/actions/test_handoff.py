"""action_request_human: the ledger record, then Chatwoot (pause + queued handoff), or the
support chat (the spec's escalation message), or the record alone. Real ledger (SQLite file
of the test), the session's real Redis, the real queue of helpdesk.whatsapp.send."""
import json

import pytest
from rq import Queue

from actions.handoff import ActionRequestHuman
from helpdesk import handoff, redis_keys
from helpdesk.config import chatwoot_config
from helpdesk.chatwoot import ChatwootOutbox
from tests.actions.helpers import (
    SENDER,
    FRESH_TICKET_SLOTS,
    Conversation,
    in_ticket_form,
    rendered,
    responses,
    run,
    slot_events,
)
from tests.conftest import free_port

REPORTER = {"sender_name": "Ana Pérez", "sender_phone": "5491122334455"}


@pytest.fixture
def with_chatwoot(monkeypatch, redis_url, redis_client):
    for name, value in {"CHATWOOT_URL": "http://127.0.0.1:9", "CHATWOOT_API_TOKEN": "t",
                        "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_INBOX_ID": "5", "REDIS_URL": redis_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUPPORT_ESCALATION_CHAT", raising=False)
    return redis_client


@pytest.fixture
def without_chatwoot(monkeypatch, redis_url, redis_client):
    monkeypatch.delenv("CHATWOOT_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("WAHA_BASE_URL", "http://127.0.0.1:9")  # a WhatsApp channel exists
    return redis_client


def handoff_entries(redis_client):
    return [e for e in ChatwootOutbox(redis_client, chatwoot_config()).pending(SENDER) if e["kind"] == "handoff"]


def in_form() -> Conversation:
    conversation = Conversation(metadata=REPORTER)
    conversation.user("la impresora fiscal tira error en la tienda 9", "report_incident",
                      [("system", "impresora fiscal"), ("store", "tienda 9")],
                      system="impresora fiscal", store="Tienda 9 (Belgrano)")
    conversation.activate_form().form_asks("description")
    conversation.user("quiero hablar con una persona", "request_human")
    return conversation


def test_with_chatwoot_the_conversation_is_paused_and_handed_over(bot_ledger, domain, with_chatwoot):
    conversation = Conversation(metadata=REPORTER)
    conversation.user("no me funciona el sistema", "report_incident").bot("¿En qué tienda ocurre?")
    conversation.user("quiero hablar con una persona", "request_human")

    events, dispatcher = run(ActionRequestHuman(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_started"]
    assert events[-1] == {"event": "pause", "timestamp": None}
    assert slot_events(events) == FRESH_TICKET_SLOTS
    assert [r["reason"] for r in bot_ledger.handoff_requests(SENDER)] == ["asked"]
    assert handoff.is_marked(with_chatwoot, SENDER)
    [entry] = handoff_entries(with_chatwoot)
    assert (entry["status"], entry["labels"]) == ("open", ["escalated"])
    assert entry["note"] == (
        "Traspaso a una persona: el usuario pidió hablar con una persona.\n"
        "Usuario: Ana Pérez (5491122334455)\n"
        "Últimos mensajes del usuario:\n"
        "- no me funciona el sistema\n"
        "- quiero hablar con una persona"
    )
    assert entry["correlation_id"] == conversation.tracker().latest_message["metadata"]["correlation_id"]
    jobs = Queue("chatwoot", connection=with_chatwoot).get_jobs()
    assert [(j.func_name, j.args) for j in jobs] == [("workers.chatwoot_jobs.drain_outbox", (SENDER,))]


def test_with_chatwoot_during_the_form_the_form_ends_and_the_note_has_what_was_collected(
        bot_ledger, domain, with_chatwoot):
    events, dispatcher = run(ActionRequestHuman(), in_form().tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_started"]
    assert events[-3:] == [{"event": "active_loop", "name": None, "timestamp": None},
                           {"event": "slot", "name": "requested_slot", "value": None, "timestamp": None},
                           {"event": "pause", "timestamp": None}]
    [entry] = handoff_entries(with_chatwoot)
    lines = entry["note"].split("\n")
    assert lines[0] == ("Traspaso a una persona: el usuario pidió hablar con una persona mientras "
                        "registraba un ticket.")
    assert "Tienda: Tienda 9 (Belgrano)" in lines and "Sistema: impresora fiscal" in lines
    assert [r["reason"] for r in bot_ledger.handoff_requests(SENDER)] == ["during_ticket"]


def test_an_escalation_from_a_worker_is_recorded_as_such(bot_ledger, domain, with_chatwoot):
    conversation = Conversation(metadata=REPORTER)
    conversation.user("la caja no abre", "report_incident").bot("¿En qué tienda ocurre?")
    conversation.user("/EXTERNAL_escalate", "EXTERNAL_escalate")

    run(ActionRequestHuman(), conversation.tracker(), domain)

    [entry] = handoff_entries(with_chatwoot)
    assert entry["note"].startswith("Traspaso a una persona: escalado automáticamente")
    assert "- la caja no abre" in entry["note"] and "EXTERNAL" not in entry["note"]
    assert [r["reason"] for r in bot_ledger.handoff_requests(SENDER)] == ["escalation"]


def test_with_chatwoot_but_redis_down_the_request_is_still_recorded(bot_ledger, domain, monkeypatch):
    for name, value in {"CHATWOOT_URL": "http://127.0.0.1:9", "CHATWOOT_API_TOKEN": "t",
                        "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_INBOX_ID": "5",
                        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}.items():
        monkeypatch.setenv(name, value)

    events, dispatcher = run(ActionRequestHuman(), in_form().tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_requested"]
    assert all(e["event"] != "pause" for e in events)  # nobody could hand it back
    assert len(bot_ledger.handoff_requests(SENDER)) == 1


@pytest.mark.parametrize("support_chat, chat_id, human_support", [
    ("120363000000000009@g.us", "120363000000000009@g.us", "soporte"),
    ("5491100000000", "5491100000000@c.us", "5491100000000"),
])
def test_without_chatwoot_the_support_chat_gets_the_escalation_message(
        bot_ledger, domain, without_chatwoot, monkeypatch, support_chat, chat_id, human_support):
    monkeypatch.setenv("SUPPORT_ESCALATION_CHAT", support_chat)

    events, dispatcher = run(ActionRequestHuman(), in_form().tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_requested"]
    assert all(e["event"] != "pause" for e in events)
    queued = [json.loads(raw) for raw in without_chatwoot.lrange(redis_keys.outbox("waha", chat_id), 0, -1)]
    assert len(queued) == 1
    assert queued[0]["text"] == (
        f"@{human_support} Se requiere intervención manual para el incidente reportado por @5491122334455\n"
        "Resumen:\nTienda: Tienda 9 (Belgrano)\nSistema: impresora fiscal"
    )
    expected_mentions = ["5491122334455@c.us"] if human_support == "soporte" else [
        f"{human_support}@c.us", "5491122334455@c.us"]
    assert queued[0]["mentions"] == expected_mentions
    assert not handoff.is_marked(without_chatwoot, SENDER)


def test_without_chatwoot_or_support_chat_the_request_is_recorded(bot_ledger, domain, without_chatwoot,
                                                                  monkeypatch):
    monkeypatch.delenv("SUPPORT_ESCALATION_CHAT", raising=False)

    events, dispatcher = run(ActionRequestHuman(), Conversation().user(
        "quiero hablar con una persona", "request_human").tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_requested"]
    assert slot_events(events) == FRESH_TICKET_SLOTS
    assert without_chatwoot.keys("*") == []
    assert len(bot_ledger.handoff_requests(SENDER)) == 1


# recorded in the ledger, during the form or not ------------------------------------------------
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


# never twice for one message, and the bot's own return ------------------------------------------
def handed_over_then(conversation: Conversation, events) -> Conversation:
    """The handoff ran for the latest message and Rasa applied its events."""
    conversation.action("action_request_human").apply(events)
    return conversation


def test_a_message_already_handed_over_is_not_handed_over_again(bot_ledger, domain, with_chatwoot):
    """Rasa's fallback reverted the resume intent and predicted again from "quiero hablar con
    una persona" (issue 15): nothing happens a second time."""
    conversation = Conversation(metadata=REPORTER)
    conversation.user("quiero hablar con una persona", "request_human")
    events, _ = run(ActionRequestHuman(), conversation.tracker(), domain)
    handed_over_then(conversation, events).apply([{"event": "resume"}])
    with_chatwoot.delete(redis_keys.handoff_requested(SENDER))

    again, dispatcher = run(ActionRequestHuman(), conversation.tracker(), domain)

    assert again == [] and responses(dispatcher) == []
    assert not handoff.is_marked(with_chatwoot, SENDER)
    assert len(bot_ledger.handoff_requests(SENDER)) == 1


def test_a_message_written_while_paused_does_not_start_a_handoff(bot_ledger, domain, with_chatwoot):
    conversation = Conversation(metadata=REPORTER)
    conversation.user("quiero hablar con una persona", "request_human")
    events, _ = run(ActionRequestHuman(), conversation.tracker(), domain)
    handed_over_then(conversation, events)
    conversation.user("quiero hablar con una persona ya", "request_human")  # to the agent, paused
    conversation.apply([{"event": "resume"}])

    again, dispatcher = run(ActionRequestHuman(), conversation.tracker(), domain)

    assert again == [] and responses(dispatcher) == []
    assert len(bot_ledger.handoff_requests(SENDER)) == 1


def test_after_the_resume_a_new_request_is_handed_over(bot_ledger, domain, with_chatwoot):
    conversation = Conversation(metadata=REPORTER)
    conversation.user("quiero hablar con una persona", "request_human")
    events, _ = run(ActionRequestHuman(), conversation.tracker(), domain)
    handed_over_then(conversation, events).apply([{"event": "resume"}])
    conversation.action("action_listen").user("quiero hablar con una persona otra vez", "request_human")

    again, dispatcher = run(ActionRequestHuman(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_handoff_started"]
    assert again[-1]["event"] == "pause"
    assert len(bot_ledger.handoff_requests(SENDER)) == 2


def test_the_handoff_schedules_the_bot_back_after_the_maximum_pause(bot_ledger, domain, with_chatwoot):
    from rq.registry import ScheduledJobRegistry

    conversation = Conversation(metadata=REPORTER)
    conversation.user("quiero hablar con una persona", "request_human")
    run(ActionRequestHuman(), conversation.tracker(), domain)

    since = handoff.marked_since(with_chatwoot, SENDER)
    registry = ScheduledJobRegistry("chatwoot", connection=with_chatwoot)
    [job_id] = [j for j in registry.get_job_ids() if j.startswith("handoff-expiry-")]
    job = Queue("chatwoot", connection=with_chatwoot).fetch_job(job_id)
    assert (job.func_name, job.args) == ("workers.chatwoot_jobs.resume_conversation",
                                         (SENDER, "expired", since))
    due = registry.get_scheduled_time(job_id).timestamp()
    assert 0 <= due - (since + chatwoot_config().handoff_max_pause_seconds) < 1
