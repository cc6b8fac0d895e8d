"""The NLU fallback action (actions/nlu_fallback.py): the LLM chooses among the domain's
intents, through a fake OpenAI-compatible server and the real client; the choice goes back
to Rasa as the user's message; without an answer nothing happens and Rasa's rules go on."""
import json

import pytest
from rasa.shared.core.events import UserUttered as RasaUserUttered

from actions.nlu_fallback import (
    ActionNluFallback,
    offered_intents,
    plain_example,
    read_training_examples,
)
from tests.actions.helpers import PROJECT, Conversation, domain_dict
from tests.actions.llm_env import CHAT_MODEL, configure, run
from tests.fakes.openai_server import FakeOpenAI, Reply

UNSURE = "se me murió el aparato de cobrar en la tienda 42"
RANKING = [{"name": "nlu_fallback", "confidence": 0.45},
           {"name": "report_incident", "confidence": 0.31}, {"name": "chatter", "confidence": 0.2}]


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def unsure(conversation: Conversation, text: str = UNSURE) -> Conversation:
    """A message the NLU was not sure about, as the FallbackClassifier leaves it."""
    conversation.user(text, "nlu_fallback")
    event = conversation.events[-1]
    event.parse_data["intent_ranking"] = RANKING
    return conversation


def test_training_examples_are_read_without_annotations():
    assert plain_example('la [caja](system) de la [tienda 42](store) no anda') == \
        "la caja de la tienda 42 no anda"
    assert plain_example('[caja]{"entity": "system", "value": "POS"} muerta') == "caja muerta"
    examples = read_training_examples(PROJECT / "data" / "nlu")
    assert "la caja no anda" in examples["report_incident"]
    assert all("[" not in e and "](" not in e for values in examples.values() for e in values)
    assert "nlu_fallback" not in examples


def test_offered_intents_are_the_domains_with_examples_minus_the_excluded():
    domain = domain_dict()
    examples = read_training_examples(PROJECT / "data" / "nlu")
    offered = offered_intents(domain, examples, ["share_file", "opt_out", "opt_in"])
    assert {"report_incident", "ask_howto", "ask_ticket_status", "greet", "inform"} <= set(offered)
    assert not {"share_file", "opt_out", "opt_in", "nlu_fallback"} & set(offered)
    assert not [name for name in offered if name.startswith("EXTERNAL_")]
    assert set(offered) <= set(domain["intents"])


def test_the_chosen_intent_goes_back_to_rasa_as_the_users_message(
        monkeypatch, tmp_path, redis_client, redis_url, fake, conversation, domain):
    configure(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json({"intent": "report_incident", "confidence": 0.9, "entities": [
        {"entity": "store", "value": "tienda 42"},
        {"entity": "system", "value": "lector"}]}))  # "lector" is not in the message: dropped
    unsure(conversation)
    original = conversation.tracker().latest_message

    events, dispatcher = run(ActionNluFallback(), conversation.tracker(), domain)

    assert dispatcher.messages == []
    assert [e["event"] for e in events] == ["rewind", "action", "user"]
    assert events[1]["name"] == "action_listen"
    user = events[2]
    assert user["text"] == UNSURE
    assert user["message_id"] == original["message_id"]
    assert user["metadata"] == original["metadata"]
    assert user["parse_data"]["intent"] == {"name": "report_incident", "confidence": 0.9}
    start = UNSURE.index("tienda 42")
    [store] = user["parse_data"]["entities"]
    assert (store["entity"], store["value"], store["start"], store["end"]) == \
        ("store", "tienda 42", start, start + len("tienda 42"))
    assert user["parse_data"]["nlu_fallback"]["intent_ranking"] == RANKING

    # Rasa applies them: the unsure message is undone, the understood one takes its place
    conversation.apply(events)
    tracker = conversation.rasa_tracker()
    users = [e for e in tracker.applied_events() if isinstance(e, RasaUserUttered)]
    assert [u.intent_name for u in users] == ["report_incident"]
    assert tracker.latest_message.intent_name == "report_incident"
    assert tracker.latest_action_name == "action_listen"
    assert tracker.latest_message.metadata == original["metadata"]

    [request] = fake.chat_requests
    assert request.model == CHAT_MODEL
    prompt = request.text()
    assert "report_incident" in prompt and "la caja no anda" in prompt and UNSURE in prompt
    for never in ("share_file", "opt_out", "EXTERNAL_"):
        assert never not in prompt
    assert "store" in prompt and "ticket_number" in prompt  # the domain's entity types


@pytest.mark.parametrize("answer", [
    Reply.json({"intent": "order_pizza", "confidence": 0.99, "entities": []}),
    Reply.json({"intent": "share_file", "confidence": 0.99, "entities": []}),  # not offered
    Reply.json({"intent": "report_incident", "confidence": 0.3, "entities": []}),  # unsure too
    Reply.json({"intent": None, "confidence": 0.9, "entities": []}),
    Reply.invalid_json(),
    Reply.refused(),
    Reply.slow(1.3, Reply.json({"intent": "greet", "confidence": 0.9, "entities": []})),
    Reply.server_error(503),
], ids=["outside-domain", "excluded", "low-confidence", "none-fits", "invalid-json", "refusal",
        "timeout", "unavailable"])
def test_without_a_usable_answer_rasas_fallback_goes_on(monkeypatch, tmp_path, redis_client,
                                                        redis_url, fake, conversation, domain,
                                                        answer):
    configure(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(answer, Reply.server_error(503))
    events, dispatcher = run(ActionNluFallback(), unsure(conversation).tracker(), domain)
    assert events == [] and dispatcher.messages == []
    assert fake.chat_requests
    if answer.delay:
        import time
        time.sleep(0.4)  # the slow answer ends before the fake stops


def test_without_an_llm_nothing_is_asked(monkeypatch, tmp_path, redis_client, redis_url,
                                         conversation, domain):
    configure(monkeypatch, tmp_path, redis_url)  # LLM_* unset
    events, dispatcher = run(ActionNluFallback(), unsure(conversation).tracker(), domain)
    assert events == [] and dispatcher.messages == []


def test_only_an_unsure_typed_message_is_sent(monkeypatch, tmp_path, redis_client, redis_url, fake,
                                              domain):
    configure(monkeypatch, tmp_path, redis_url, fake)
    understood = Conversation().user("hola", "greet")
    assert run(ActionNluFallback(), understood.tracker(), domain)[0] == []
    payload = unsure(Conversation(), '/inform{"store": "tienda 42"}')
    assert run(ActionNluFallback(), payload.tracker(), domain)[0] == []
    assert fake.chat_requests == []


def test_the_same_unsure_text_is_answered_from_the_cache(monkeypatch, tmp_path, redis_client,
                                                         redis_url, fake, domain):
    configure(monkeypatch, tmp_path, redis_url, fake)
    fake.chat.push(Reply.json({"intent": "ask_ticket_status", "confidence": 0.8, "entities": []}))
    first = run(ActionNluFallback(), unsure(Conversation(), "y lo mío cómo va").tracker(), domain)[0]
    second = run(ActionNluFallback(), unsure(Conversation(sender_id="5491100009999"),
                                             "y lo mío cómo va").tracker(), domain)[0]
    assert first[2]["parse_data"]["intent"]["name"] == "ask_ticket_status"
    assert json.dumps(second[2]["parse_data"]["intent"]) == json.dumps(first[2]["parse_data"]["intent"])
    assert len(fake.chat_requests) == 1
