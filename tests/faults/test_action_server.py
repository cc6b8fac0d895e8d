"""Drill: the action server stopped while store staff write on WhatsApp.

Must hold: a message whose turn needs the action server is neither answered as if nothing
happened nor dropped. The user hears once that it waits (texts.actions_unavailable), nothing
of the turn is saved, later messages of the conversation wait behind it, and when the action
server is back every message is handled by itself, in order, once.

Before connectors/whatsapp/outage.py, Rasa logged "Encountered an exception while running
action", saved the tracker with the message on it, and the user got no answer at all: the
incident was never opened.

The session's real Rasa server and WAHA channel; the session's action server is stopped and
started again on its port (and always restarted, also when the drill fails).
"""
import time

import pytest
import redis
import requests

from helpdesk import redis_keys
from helpdesk.config import channel_config
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message
from tests.stack import WAHA_HMAC, _start, _stop, _wait_http, api_headers


def _user_texts(stack, number):
    tracker = requests.get(f"{stack.rasa_url}/conversations/{number}/tracker",
                           headers=api_headers(), timeout=30)
    if tracker.status_code == 404:
        return []
    tracker.raise_for_status()
    return [e.get("text") for e in tracker.json()["events"] if e["event"] == "user"]


def _restart_actions(stack):
    process = stack.processes["actions"]
    if process.poll() is None:
        return
    stack.processes["actions"] = _start("actions", stack.env, stack.logs["actions"])
    _wait_http(f"http://127.0.0.1:{stack.actions_port}/health", 90,
               stack.processes["actions"], stack.logs["actions"])


@pytest.fixture
def actions_stopped(stack):
    _stop(stack.processes["actions"])
    try:
        yield
    finally:
        _restart_actions(stack)


def test_messages_wait_for_the_action_server_and_run_when_it_is_back(
        stack, fake_waha, actions_stopped):
    number = "5491166610001"  # a direct chat: the conversation id is the number
    chat = f"{number}@c.us"
    waiting = channel_config().text("actions_unavailable")
    fake_waha.clear()
    client = redis.Redis.from_url(stack.redis_url)
    client.delete(redis_keys.actions_outage_told(number))

    first = post_waha(stack.rasa_url, waha_message(
        number, "se cayó el POS en la tienda 42, no podemos vender"), WAHA_HMAC)
    assert first.status_code == 200
    fake_waha.wait_for(lambda seen: waiting in texts_to(seen, chat), 60)
    # a second message of the same conversation queues behind the first
    second = post_waha(stack.rasa_url, waha_message(number, "¿me escuchan?"), WAHA_HMAC)
    assert second.status_code == 200
    time.sleep(12)  # two retries of the turn (outage_retry_seconds: 5) while it is down
    assert texts_to(fake_waha.requests, chat) == [waiting]  # told once, nothing else said
    assert _user_texts(stack, number) == []  # nothing of the turn was saved
    rasa_log = stack.log_text("rasa")
    assert "the action server is out of reach" in rasa_log

    _restart_actions(stack)
    deadline = time.monotonic() + 90
    while len(_user_texts(stack, number)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _user_texts(stack, number) == ["se cayó el POS en la tienda 42, no podemos vender",
                                          "¿me escuchan?"]  # each once, in order
    time.sleep(2)  # the last replies, and anything (wrongly) still on its way
    said = texts_to(fake_waha.requests, chat)
    assert said[0] == waiting and said.count(waiting) == 1
    assert "Tienda 42" in "\n".join(said[1:])  # the incident's turn ran as it would have
    assert not client.exists(redis_keys.actions_outage_told(number))
    client.close()
