"""The REST channel against bad input, its health route, and the logs it leaves."""
import json

import pytest
import requests

from tests.stack import REST_HEADERS, json_lines


def post_raw(stack, body: bytes, content_type="application/json"):
    return requests.post(
        f"{stack.rasa_url}/webhooks/rest/webhook",
        data=body,
        headers={"Content-Type": content_type, **REST_HEADERS},
        timeout=60,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        "😀😀😀",
        "?!?!...",
        "my printer is broken, can you help me?",
        "Ich brauche Hilfe mit der Kasse",
    ],
    ids=["empty", "blank", "null", "emoji-only", "punctuation", "english", "german"],
)
def test_odd_messages_get_a_sensible_answer(stack, sender, text):
    messages = stack.say(sender, text)
    assert messages, "the bot must answer"
    assert all(m.get("text") for m in messages)


def test_empty_message_gets_the_help_menu(stack, sender):
    texts = stack.texts(sender, "")
    assert texts[0].startswith("Puedo ayudarle con")


def test_ten_thousand_characters(stack, sender, bot_ledger):
    long_text = ("la caja de la tienda 42 no funciona y no podemos vender. " * 200)[:10_000]
    messages = stack.say(sender, long_text)
    assert messages
    readback = "\n".join(m["text"] for m in messages)
    assert "Tienda 42" in readback
    # the description was cut to the configured maximum
    description = stack.tracker(sender)["slots"]["description"]
    assert description is not None and len(description) <= 4000


def test_unknown_store_in_first_message(stack, sender):
    texts = stack.texts(sender, "en la tienda 999 se cayó el sistema de caja")
    assert "No encuentro la tienda" in texts[0]
    assert texts[-1].startswith("¿En qué tienda ocurre?")


def test_malformed_json_is_400(stack):
    answer = post_raw(stack, b'{"sender": "x", "message": ')
    assert answer.status_code == 400
    assert "JSON" in answer.json()["error"]


def test_non_object_json_is_400(stack):
    assert post_raw(stack, b'["hola"]').status_code == 400


def test_missing_sender_is_400(stack):
    answer = post_raw(stack, json.dumps({"message": "hola"}).encode())
    assert answer.status_code == 400
    assert "sender" in answer.json()["error"]


def test_message_of_wrong_type_is_400(stack, sender):
    answer = post_raw(stack, json.dumps({"sender": sender, "message": {"text": "hola"}}).encode())
    assert answer.status_code == 400


def test_oversized_body_is_413(stack, sender):
    body = json.dumps({"sender": sender, "message": "a" * 70_000}).encode()
    assert post_raw(stack, body).status_code == 413


def test_bot_still_answers_after_bad_requests(stack, sender):
    post_raw(stack, b"not json at all")
    assert stack.texts(sender, "hola")[0].startswith("Hola")


def test_stream_mode_used_by_the_console(stack, sender):
    answer = requests.post(
        f"{stack.rasa_url}/webhooks/rest/webhook",
        params={"stream": "true"},
        json={"sender": sender, "message": "hola"},
        headers=REST_HEADERS,
        timeout=60,
    )
    assert answer.ok
    lines = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
    assert lines and lines[0]["text"].startswith("Hola")


def test_health_reports_dependencies(stack):
    answer = requests.get(f"{stack.rasa_url}/webhooks/rest/health", timeout=10)
    assert answer.status_code == 200
    report = answer.json()
    assert report["status"] == "ok"
    assert set(report["checks"]) == {"redis", "ledger", "action_server"}
    assert all(check["status"] == "ok" for check in report["checks"].values())
    actions = requests.get(f"http://127.0.0.1:{stack.actions_port}/health", timeout=10)
    assert actions.status_code == 200


def test_http_api_requires_the_auth_token(stack, sender):
    answer = requests.get(f"{stack.rasa_url}/conversations/{sender}/tracker", timeout=10)
    assert answer.status_code == 401


def test_one_correlation_id_across_rasa_and_actions_and_masked_numbers(stack, bot_ledger):
    phone_sender = "5491122334455"
    stack.say(phone_sender, "el posnet de la tienda 11 no anda")
    stack.say(phone_sender, "sí")
    record = bot_ledger.recent_for(phone_sender, 1)[0]
    correlation_id = record.correlation_id
    assert correlation_id

    rasa_lines = [e for e in json_lines(stack.log_text("rasa")) if e.get("correlation_id") == correlation_id]
    action_lines = [e for e in json_lines(stack.log_text("actions")) if e.get("correlation_id") == correlation_id]
    assert any(e["msg"] == "message received" for e in rasa_lines)
    assert any(e["msg"] == "ticket recorded" for e in action_lines)
    for name in ("rasa", "actions"):
        assert phone_sender not in stack.log_text(name)
    assert any(e.get("conversation_id") == "549****55" for e in action_lines + rasa_lines)
