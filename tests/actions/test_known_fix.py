"""Known fixes (actions/known_fix.py through validate_ticket_form): a strong knowledge match
is suggested before the confirmation; solved, no ticket and one deflection counted in Redis;
declined, the ticket as before. Against an index of the project's articles (built once per
session in a temporary directory) and the session's real Redis."""
import time

import pytest

from actions.known_fix import ActionAskKnownFix, deflections
from actions.ticket_submit import ActionSubmitTicket
from tests.actions.helpers import Conversation, message, rendered, slot_events
from tests.actions.llm_env import configure, form_turn, run, run_async
from tests.knowledge.support import articles_index  # noqa: F401 - a session fixture

JAM = "se trabó el papel en la impresora fiscal"
JAM_ARTICLE = "impresora-fiscal-errores-frecuentes.md"
WEAK = "la impresora fiscal de la tienda 15 no imprime nada"


@pytest.fixture
def index(monkeypatch, tmp_path, redis_client, redis_url, articles_index):  # noqa: F811
    configure(monkeypatch, tmp_path, redis_url, knowledge_index=articles_index)
    return articles_index


def reported(conversation: Conversation, text: str = JAM) -> Conversation:
    """The incident (with its system), then the store the form asked for."""
    conversation.user(text, "report_incident", [("system", "impresora fiscal")],
                      system="impresora fiscal")
    form_turn(conversation)
    conversation.form_asks("store")
    conversation.user("tienda 42", "inform", [("store", "tienda 42")], store="tienda 42")
    return conversation


def month() -> str:
    return time.strftime("%Y-%m", time.gmtime())


def test_a_strong_match_is_suggested_and_solving_opens_no_ticket(index, conversation, domain,
                                                                 bot_ledger):
    events, _ = form_turn(reported(conversation))
    assert slot_events(events)["requested_slot"] == "known_fix"

    events, dispatcher = run(ActionAskKnownFix(), conversation.tracker(), domain)
    suggestion = message(dispatcher, "utter_known_fix")
    text = rendered(suggestion)["text"]
    assert text.startswith(f"¿Ya probó esto? Según el artículo «{suggestion['title']}»:")
    assert text.endswith("¿Se solucionó el problema?")
    assert [b["payload"] for b in rendered(suggestion)["buttons"]] == ["/affirm", "/deny"]
    assert suggestion["source_articles"][0]["path"] == JAM_ARTICLE

    conversation.form_asks("known_fix", text)
    conversation.user("/affirm", "affirm")
    events, dispatcher = form_turn(conversation)
    assert slot_events(events)["known_fix"] == "solved"
    assert slot_events(events)["requested_slot"] is None  # the form ends here
    message(dispatcher, "utter_known_fix_solved")
    assert run_async(deflections(month())) == {"total": 1, JAM_ARTICLE: 1}

    conversation.deactivate_form()
    events, dispatcher = run(ActionSubmitTicket(), conversation.tracker(), domain)
    assert bot_ledger.recent_for(conversation.sender_id, 5) == []
    assert dispatcher.messages == []
    assert slot_events(events)["description"] is None  # the ticket's slots are cleared


def test_declining_goes_on_to_the_ticket(index, conversation, domain, bot_ledger):
    form_turn(reported(conversation))
    conversation.form_asks("known_fix")
    conversation.user("/deny", "deny")
    events, _ = form_turn(conversation)
    assert slot_events(events)["known_fix"] == "declined"
    assert slot_events(events)["requested_slot"] == "confirm_ticket"
    conversation.form_asks("confirm_ticket")
    conversation.user("sí", "affirm")
    form_turn(conversation)
    conversation.deactivate_form()

    run(ActionSubmitTicket(), conversation.tracker(), domain)

    [record] = bot_ledger.recent_for(conversation.sender_id, 5)
    assert record.description == JAM
    assert run_async(deflections(month())) == {}


@pytest.mark.parametrize("text", [
    WEAK,  # relevance 0.70 but a weak dense match
    JAM + ", no podemos vender",  # urgent: straight to the ticket
], ids=["weak-match", "urgent"])
def test_no_suggestion_leaves_the_form_as_it_was(index, conversation, text):
    events, _ = form_turn(reported(conversation, text))
    assert "known_fix" not in slot_events(events)
    # the form's slots are the domain's: Rasa picks the confirmation, as before
    assert "requested_slot" not in slot_events(events)


def test_suggestions_can_be_turned_off(monkeypatch, tmp_path, redis_client, redis_url,
                                       articles_index, conversation):  # noqa: F811
    configure(monkeypatch, tmp_path, redis_url, knowledge_index=articles_index,
              known_fixes={"enabled": False})
    events, _ = form_turn(reported(conversation))
    assert "requested_slot" not in slot_events(events)


def test_without_the_index_nothing_is_suggested(monkeypatch, tmp_path, redis_client, redis_url,
                                                conversation, caplog):
    configure(monkeypatch, tmp_path, redis_url, knowledge_index=tmp_path / "no-index")
    events, _ = form_turn(reported(conversation))
    assert "requested_slot" not in slot_events(events)
    assert "knowledge search failed" in caplog.text


def test_a_solved_suggestion_of_an_earlier_ticket_does_not_end_the_next(index, conversation,
                                                                        domain, bot_ledger):
    # an earlier ticket was solved by a suggestion, and a reset missed the slot
    conversation.user(JAM, "report_incident").activate_form()
    conversation.slot("known_fix", "solved").deactivate_form()
    conversation.action("action_listen")
    conversation.user("se cayó el POS en la tienda 42, no podemos vender", "report_incident",
                      [("store", "tienda 42"), ("system", "POS")], store="tienda 42",
                      system="POS")
    events, _ = form_turn(conversation)
    conversation.form_asks("confirm_ticket")
    conversation.user("sí", "affirm")
    events, _ = form_turn(conversation)
    assert slot_events(events)["confirm_ticket"] is True
    conversation.deactivate_form()

    run(ActionSubmitTicket(), conversation.tracker(), domain)

    assert len(bot_ledger.recent_for(conversation.sender_id, 5)) == 1
