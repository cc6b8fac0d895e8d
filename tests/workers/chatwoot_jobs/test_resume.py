"""Handing a conversation back to the bot: the resume job in a real RQ worker against the fake
Rasa HTTP API (tracker events, trigger_intent, auth token) and the fake Chatwoot."""
import pytest

from helpdesk import handoff, redis_keys
from helpdesk.chatwoot import mirror as chatwoot_mirror
from helpdesk.whatsapp import Route
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes import rasa_auth
from tests.fakes.rasa_http import FakeRasa
from tests.workers.chatwoot_support import config_dir, run_worker, save_route, use_env

CONVERSATION = "5491122334455"
PHONE = "+5491122334455"
TOKEN = "rasa-test-token"
BACK = "El asistente vuelve a atenderle. ¿En qué más puedo ayudarle?"
INTENT = "EXTERNAL_handoff_resumed"


@pytest.fixture
def chatwoot():
    with FakeChatwoot() as server:
        yield server


@pytest.fixture
def rasa():
    with FakeRasa(token=TOKEN, responses={INTENT: BACK}) as server:
        server.events[CONVERSATION] = [{"event": "pause"}]  # what the handoff action left
        yield server


@pytest.fixture
def env(chatwoot, rasa, redis_url, redis_client, tmp_path, monkeypatch, database_url):
    values = {**chatwoot.env(), "REDIS_URL": redis_url, "HELPDESK_CONFIG_DIR": str(config_dir(tmp_path)),
              "DATABASE_URL": database_url, "RASA_PORT": str(rasa.port), "RASA_AUTH_TOKEN": TOKEN}
    save_route(redis_client, CONVERSATION, Route(channel="waha", chat_id=f"{CONVERSATION}@c.us",
                                                 phone=CONVERSATION))
    return use_env(monkeypatch, values)


@pytest.fixture
def handed_over(env, chatwoot, redis_client):
    """The conversation is mirrored, handed to agents, and an agent resolved it."""
    chatwoot_mirror.mirror_message(CONVERSATION, "incoming", "quiero hablar con una persona")
    chatwoot_mirror.open_handoff(CONVERSATION, "Traspaso a una persona.")
    handoff.mark(redis_client, CONVERSATION, "asked", 3600)
    run_worker(env)
    conversation = chatwoot.conversation_of(PHONE)
    assert conversation["status"] == "open"
    chatwoot.agent_sets_status(conversation["id"], "resolved")
    return conversation


def resume(redis_client):
    handoff.enqueue_resume(redis_client, CONVERSATION, [0] * 10)


def test_resolved_conversation_goes_back_to_the_bot(env, rasa, redis_client, handed_over):
    resume(redis_client)

    run_worker(env)

    assert rasa.events[CONVERSATION][:2] == [{"event": "pause"}, {"event": "resume"}]
    assert not rasa.paused(CONVERSATION)
    # told on the user's own channel, through the domain's response
    assert rasa.sent == [(CONVERSATION, "waha", BACK)]
    # every call authenticated with a Bearer JWT signed with RASA_AUTH_TOKEN, none in the URL
    assert all(call["authorization"].startswith("Bearer ") and "token" not in call["query"]
               for call in rasa.calls)
    assert all(rasa_auth.claims_of({"Authorization": call["authorization"]}, TOKEN)
               for call in rasa.calls)
    assert not handoff.is_marked(redis_client, CONVERSATION)
    # the Chatwoot conversation is back in the bot's queue
    assert handed_over["status"] == "pending"
    assert not redis_client.exists(redis_keys.handoff_resume_claim(CONVERSATION))


def test_rasa_down_for_a_moment_resumes_once(env, rasa, redis_client, handed_over):
    rasa.fail(503, times=1)
    resume(redis_client)

    run_worker(env)

    assert [e["event"] for e in rasa.events[CONVERSATION]].count("resume") == 1
    assert rasa.sent == [(CONVERSATION, "waha", BACK)]
    assert not handoff.is_marked(redis_client, CONVERSATION)


def test_a_second_resolve_does_nothing(env, rasa, redis_client, handed_over):
    resume(redis_client)
    resume(redis_client)  # Chatwoot sent the event twice, or the agent reopened and resolved

    run_worker(env)

    assert rasa.sent == [(CONVERSATION, "waha", BACK)]
    assert [e["event"] for e in rasa.events[CONVERSATION]].count("resume") == 1


def test_domain_without_the_resume_intent_still_resumes(env, rasa, redis_client, handed_over):
    rasa.responses.clear()
    resume(redis_client)

    finished = run_worker(env)

    assert not rasa.paused(CONVERSATION)
    assert rasa.sent == []
    assert not handoff.is_marked(redis_client, CONVERSATION)
    assert "the user was not told" in finished.stderr


def test_wrong_rasa_token_keeps_the_conversation_with_people(env, rasa, redis_client, handed_over, monkeypatch):
    rasa.token = "another-token"
    resume(redis_client)

    run_worker(env)

    assert rasa.paused(CONVERSATION)
    assert handoff.is_marked(redis_client, CONVERSATION)


# a paused conversation whose mark is gone (issue 13) ---------------------------------------------
EXPIRED_TEXT = "Ha pasado un tiempo sin que el equipo de soporte cerrara la conversación."
EXPIRED_INTENT = "EXTERNAL_handoff_expired"


def test_a_resolve_without_the_mark_resumes_a_conversation_paused_in_rasa(env, rasa, redis_client,
                                                                         handed_over):
    redis_client.delete(redis_keys.handoff_requested(CONVERSATION))  # expired, or never written
    resume(redis_client)

    run_worker(env)

    assert not rasa.paused(CONVERSATION)
    assert rasa.sent == [(CONVERSATION, "waha", BACK)]
    assert handed_over["status"] == "pending"


def test_a_resolve_of_a_conversation_nobody_paused_does_nothing(env, rasa, redis_client, handed_over):
    redis_client.delete(redis_keys.handoff_requested(CONVERSATION))
    rasa.events[CONVERSATION] = []  # the bot has it: the agent closed a conversation it never took
    resume(redis_client)

    run_worker(env)

    assert [e["event"] for e in rasa.events[CONVERSATION]] == [] and rasa.sent == []
    assert [c["method"] for c in rasa.calls] == ["GET"]


def test_the_operator_command_resumes_a_paused_conversation_without_the_mark(env, rasa, redis_client):
    import subprocess
    import sys

    from tests.conftest import PROJECT

    command = [sys.executable, "-m", "workers.chatwoot_jobs", "resume", CONVERSATION]
    finished = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)

    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.strip() == f"{CONVERSATION}: resumed"
    assert not rasa.paused(CONVERSATION)
    assert rasa.sent == [(CONVERSATION, "waha", BACK)]

    again = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() == f"{CONVERSATION}: not with a person" and rasa.sent == [
        (CONVERSATION, "waha", BACK)]

    rasa.token = "another-token"
    refused = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "not resumed" in refused.stderr


def test_the_maximum_pause_resumes_without_the_mark_and_says_so(env, rasa, redis_client, handed_over):
    rasa.responses[EXPIRED_INTENT] = EXPIRED_TEXT
    since = handoff.marked_since(redis_client, CONVERSATION)
    redis_client.delete(redis_keys.handoff_requested(CONVERSATION))
    handoff.schedule_expiry(redis_client, CONVERSATION, since - 3600, 1, [0])  # due long ago

    run_worker(env)  # the worker's scheduler moves the due job to the queue, then runs it

    assert not rasa.paused(CONVERSATION)
    assert rasa.sent == [(CONVERSATION, "waha", EXPIRED_TEXT)]


def test_the_maximum_pause_of_an_earlier_handoff_leaves_a_later_one_alone(env, rasa, redis_client,
                                                                         handed_over):
    rasa.responses[EXPIRED_INTENT] = EXPIRED_TEXT
    since = handoff.marked_since(redis_client, CONVERSATION)
    handoff.schedule_expiry(redis_client, CONVERSATION, since - 3600, 1, [0])  # another handoff's

    run_worker(env)

    assert rasa.paused(CONVERSATION) and rasa.sent == []
    assert handoff.is_marked(redis_client, CONVERSATION)
