"""helpdesk/rasa_api.py against a fake Rasa HTTP API on loopback that records the calls."""
import time

import pytest

from helpdesk.launch import free_port
from helpdesk.rasa_api import RasaRejected, RasaUnavailable, trigger_intent
from helpdesk.settings import load_settings
from tests.fakes.rasa_trigger import FakeRasa


@pytest.fixture
def rasa(monkeypatch):
    fake = FakeRasa(token="s3cret", intents={"EXTERNAL_ticket_delivered"}).start()
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    yield fake
    fake.stop()


def test_the_intent_with_its_entities_on_the_latest_channel_with_the_token(rasa):
    answer = trigger_intent("g1203630@g.us-549110000", "EXTERNAL_ticket_delivered",
                            {"ticket_number": "1042", "priority": "urgente", "reference": None})
    [call] = rasa.triggered()
    assert call.conversation_id == "g1203630@g.us-549110000"  # quoted in the path, read back whole
    assert call.intent == "EXTERNAL_ticket_delivered"
    assert call.entities == {"ticket_number": "1042", "priority": "urgente"}
    assert call.output_channel == "latest"
    # a Bearer JWT with Rasa's admin role, signed with RASA_AUTH_TOKEN; nothing in the query
    assert call.token is None and call.claims["user"]["role"] == "admin"
    assert answer["tracker"]["sender_id"] == "g1203630@g.us-549110000"


def test_503_is_retried_then_answered(rasa):
    rasa.fail(2, status=503)
    trigger_intent("5491122334455", "EXTERNAL_ticket_delivered", {"ticket_number": "1"}, backoff=0.05)
    assert len(rasa.triggered()) == 1


def test_500_is_not_retried_it_may_have_spoken(rasa):
    rasa.fail(1, status=500)
    with pytest.raises(RasaUnavailable):
        trigger_intent("5491122334455", "EXTERNAL_ticket_delivered", {"ticket_number": "1"}, backoff=0.05)
    assert rasa.triggered() == [] and rasa.failures == 0


def test_a_wrong_token_or_an_unknown_intent_is_rejected(rasa, monkeypatch):
    with pytest.raises(RasaRejected, match="400"):
        trigger_intent("5491122334455", "EXTERNAL_unknown", {})
    monkeypatch.setenv("RASA_AUTH_TOKEN", "wrong")
    with pytest.raises(RasaRejected, match="401"):
        trigger_intent("5491122334455", "EXTERNAL_ticket_delivered", {})
    assert rasa.triggered() == []


def test_rasa_down_is_unavailable_after_the_retries(monkeypatch):
    monkeypatch.setenv("RASA_PORT", str(free_port()))
    started = time.monotonic()
    with pytest.raises(RasaUnavailable):
        trigger_intent("5491122334455", "EXTERNAL_ticket_delivered", {}, retries=2, backoff=0.05)
    assert time.monotonic() - started < 2


def test_a_slow_rasa_times_out(rasa):
    original = rasa.handle

    def slow(path, body, headers=None):
        time.sleep(1.0)
        return original(path, body, headers)

    rasa.handle = slow
    with pytest.raises(RasaUnavailable, match="no answer"):
        trigger_intent("5491122334455", "EXTERNAL_ticket_delivered", {}, read_timeout=0.3,
                       settings=load_settings())


# back from a person ---------------------------------------------------------------------------
@pytest.fixture
def tracker_api(monkeypatch):
    from tests.fakes.rasa_http import FakeRasa as FakeTrackerApi

    with FakeTrackerApi(token="tracker-secret-0123456789abcdef") as fake:
        monkeypatch.setenv("RASA_PORT", str(fake.port))
        monkeypatch.setenv("RASA_AUTH_TOKEN", "tracker-secret-0123456789abcdef")
        yield fake


def test_the_resume_ends_the_pause_with_a_listen(tracker_api):
    """After the pause Rasa predicted nothing for what the user wrote: the `action_listen`
    makes the next intent a fresh turn (issue 15)."""
    from helpdesk.rasa_api import conversation_paused, resume_conversation

    tracker_api.events["549110000"] = [{"event": "pause"}, {"event": "user", "text": "gracias, espero"}]
    assert conversation_paused("549110000") is True

    resume_conversation("549110000")

    assert tracker_api.events["549110000"][-2:] == [{"event": "resume"},
                                                     {"event": "action", "name": "action_listen"}]
    assert conversation_paused("549110000") is False
    assert conversation_paused("549119999") is False  # a conversation Rasa never saw


def test_the_paused_question_fails_like_the_other_calls(tracker_api):
    from helpdesk.rasa_api import conversation_paused

    tracker_api.fail(503)
    with pytest.raises(RasaUnavailable):
        conversation_paused("549110000")
    tracker_api.token = "another-secret-0123456789abcdef"
    with pytest.raises(RasaRejected):
        conversation_paused("549110000")
