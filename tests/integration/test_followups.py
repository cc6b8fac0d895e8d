"""Follow-ups through the real stack: WAHA webhook -> Rasa server (the channel schedules) ->
a real RQ worker with its scheduler (`python -m helpdesk.launch worker`) -> Rasa's HTTP API
(trigger_intent) -> the action server -> the WAHA channel's output -> the fake WAHA.

The session stack's config (tests/stack.py TEST_FOLLOWUP_SETTINGS) asks again
after 2 s of silence, 3 times, then escalates; the close of a silent thread is run here as a
direct job call (its timeout is long so that it never fires by itself during the session).
"""
import os
import signal
import subprocess
import sys
import time
from typing import Iterator, List

import pytest
import redis
import requests
from rq import Queue
from rq.registry import ScheduledJobRegistry

from helpdesk import followups
from helpdesk.config import followups as followups_config
from tests.conftest import PROJECT, free_port
from tests.stack import WAHA_HMAC
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message
from tests.integration.whatsapp_fixtures import (  # noqa: F401 - fixtures
    _fresh_waha,
    client,
    number,
)

pytestmark = pytest.mark.usefixtures("stack")

REMINDER = "Sigo a la espera de su respuesta para continuar con el ticket."
LAST_REMINDER = REMINDER + " Si no responde, avisaré a una persona del equipo de soporte."
# the session stack has Chatwoot: the escalation hands the conversation to its agents
ESCALATED = ("Como no he recibido respuesta, le paso con una persona del equipo de soporte. Le "
             "escribirá por este chat; mientras tanto, el asistente queda en pausa.")
FINAL = "El ticket no pudo completarse por falta de información."
CANCELLED = "De acuerdo, he cancelado el registro del ticket. No se ha creado nada."


@pytest.fixture
def worker(stack, client, tmp_path) -> Iterator[subprocess.Popen]:
    """One worker process with RQ's scheduler, with the stack's environment, for this test.

    Follow-ups other tests' conversations left scheduled are dropped first: they would run
    now and slow this test's timings down (their conversations ended long ago)."""
    for job_id in ScheduledJobRegistry(followups.QUEUE, connection=client).get_job_ids():
        followups._drop_job(client, job_id)
    Queue(followups.QUEUE, connection=client).empty()
    port = free_port()
    log = open(tmp_path / "worker.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "helpdesk.launch", "worker"], cwd=PROJECT,
                               env={**stack.env, "WORKER_HEALTH_PORT": str(port)},
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker did not start:\n{(tmp_path / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.2)
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def say(stack, number: str, text: str) -> None:
    answer = post_waha(stack.rasa_url, waha_message(number, text), WAHA_HMAC)
    assert answer.status_code == 200, answer.text


def sent(fake_waha, number: str) -> List[dict]:
    return [r for r in fake_waha.requests if r["path"] == "/api/sendText" and not r.get("failed")
            and r["body"].get("chatId") == f"{number}@c.us"]


def wait_for_text(fake_waha, number: str, start: str, count: int = 1, timeout: float = 40) -> List[str]:
    """The texts sent to the user once `count` of them start with `start`."""
    fake_waha.wait_for(lambda seen: sum(t.startswith(start) for t in texts_to(seen, f"{number}@c.us"))
                       >= count, timeout)
    return texts_to(fake_waha.requests, f"{number}@c.us")


def settled_tracker(stack, number: str, done, timeout: float = 15) -> dict:
    """The tracker once `done(tracker)`: Rasa saves it after the replies have gone out."""
    deadline = time.monotonic() + timeout
    while True:
        tracker = stack.tracker(number)
        if done(tracker) or time.monotonic() > deadline:
            return tracker
        time.sleep(0.1)


def form_ended(tracker: dict) -> bool:
    return not (tracker.get("active_loop") or {}).get("name")


def report(stack, fake_waha, number: str) -> List[str]:
    """An incident with nothing in it: the bot says what is missing and asks for the store."""
    say(stack, number, "tengo un problema")
    texts = wait_for_text(fake_waha, number, "¿En qué tienda ocurre?", timeout=30)
    assert texts[0].startswith("Para crear el ticket necesito la siguiente información")
    return texts


def test_an_unanswered_question_is_asked_three_times_then_escalated(stack, fake_waha, worker, number,
                                                                   bot_ledger):
    opening = report(stack, fake_waha, number)
    question = opening[-1]

    texts = wait_for_text(fake_waha, number, ESCALATED, timeout=60)

    assert texts[len(opening):] == [REMINDER, question, REMINDER, question, LAST_REMINDER, question,
                                    ESCALATED]
    times = [r["at"] for r in sent(fake_waha, number)]
    reminders = [times[len(opening) - 1]] + [times[i] for i in (len(opening), len(opening) + 2,
                                                                len(opening) + 4, len(opening) + 6)]
    gaps = [later - earlier for earlier, later in zip(reminders, reminders[1:])]
    assert all(1.9 <= gap <= 6 for gap in gaps), gaps  # 2 s of silence before each step
    tracker = settled_tracker(stack, number, form_ended)
    assert form_ended(tracker)
    external = [e["parse_data"]["intent"]["name"] for e in tracker["events"]
                if e["event"] == "user" and e.get("metadata", {}).get("is_external")]
    assert external == ["EXTERNAL_followup"] * 3 + ["EXTERNAL_escalate"]
    assert [r["reason"] for r in bot_ledger.handoff_requests(number)] == ["escalation"]

    time.sleep(4.5)  # two more delays: nothing else is said
    assert texts_to(fake_waha.requests, f"{number}@c.us") == texts


def test_a_reply_cancels_the_follow_up(stack, fake_waha, worker, number, client):
    opening = report(stack, fake_waha, number)
    store_question = opening[-1]
    wait_for_text(fake_waha, number, REMINDER, timeout=30)

    # the answer moves the form on: the next question has its own wait, counted from one
    say(stack, number, "tienda 42")
    texts = wait_for_text(fake_waha, number, "¿Qué sistema o equipo está afectado?", timeout=30)
    system_question = texts[-1]
    texts = wait_for_text(fake_waha, number, system_question, count=2, timeout=30)
    assert texts[len(opening):] == [REMINDER, store_question, system_question, REMINDER, system_question]

    # the user leaves the form: nothing is pending and nothing more is said
    say(stack, number, "cancelar")
    texts = wait_for_text(fake_waha, number, CANCELLED, timeout=30)
    deadline = time.monotonic() + 10  # the channel cancels right after the turn's replies
    while followups.pending(client, number) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert followups.pending(client, number) == {}
    time.sleep(5)  # more than two delays
    assert texts_to(fake_waha.requests, f"{number}@c.us") == texts
    external = [e for e in stack.tracker(number)["events"]
                if e["event"] == "user" and e.get("metadata", {}).get("is_external")]
    assert len(external) == 2


def test_a_silent_thread_is_closed_with_the_final_message(stack, fake_waha, number, client, monkeypatch):
    from workers.followup_jobs import close_thread

    opening = report(stack, fake_waha, number)
    deadline = time.monotonic() + 10  # the channel schedules right after the turn's replies
    while not followups.pending(client, number) and time.monotonic() < deadline:
        time.sleep(0.05)
    anchor = followups.pending(client, number)["anchor"]
    for name in ("REDIS_URL", "RASA_PORT", "RASA_AUTH_TOKEN", "HELPDESK_CONFIG_DIR"):
        monkeypatch.setenv(name, stack.env[name])
    followups_config._config_at.cache_clear()
    followups._redis.cache_clear()

    assert close_thread(number, anchor) == "closed"  # the job RQ runs at thread.timeout_seconds

    texts = wait_for_text(fake_waha, number, FINAL, timeout=30)
    assert texts[len(opening):] == [FINAL + " Si el problema continúa, escríbame de nuevo para registrarlo."]
    tracker = settled_tracker(stack, number, form_ended)
    assert form_ended(tracker)
    assert tracker["slots"]["requested_slot"] is None
    assert followups.pending(client, number) == {}
    followups._redis.cache_clear()


def test_follow_ups_the_user_overtook_say_nothing_and_the_form_goes_on(stack, fake_waha, number, client,
                                                                        monkeypatch):
    """What a job that passed its Redis check just before the user's message reached Rasa
    does: Rasa runs it after the user's turn (its lock), the actions see the newer message."""
    from helpdesk.rasa_api import trigger_intent

    report(stack, fake_waha, number)
    deadline = time.monotonic() + 10
    while not followups.pending(client, number) and time.monotonic() < deadline:
        time.sleep(0.05)
    old_anchor = followups.pending(client, number)["anchor"]
    say(stack, number, "tienda 42")
    texts = wait_for_text(fake_waha, number, "¿Qué sistema o equipo está afectado?", timeout=30)
    monkeypatch.setenv("RASA_PORT", stack.env["RASA_PORT"])
    monkeypatch.setenv("RASA_AUTH_TOKEN", stack.env["RASA_AUTH_TOKEN"])

    for intent in followups.INTENTS:
        trigger_intent(number, intent, {followups.ANCHOR: old_anchor, followups.ATTEMPT: "1"}, retries=0)

    time.sleep(1.5)  # anything (wrongly) said would have reached the fake WAHA
    assert texts_to(fake_waha.requests, f"{number}@c.us") == texts
    tracker = stack.tracker(number)
    assert tracker["active_loop"]["name"] == "ticket_form"
    assert tracker["slots"]["requested_slot"] == "system"
    actions = [e["name"] for e in tracker["events"] if e["event"] == "action"]
    assert "action_default_fallback" not in actions
    assert actions[-1] == "action_listen"
    assert [a for a in actions if a.startswith("action_followup")] == [
        "action_followup_reask", "action_followup_escalate", "action_followup_close"]

    # the form still takes the answer to its question
    say(stack, number, "la impresora fiscal")
    wait_for_text(fake_waha, number, "Describa brevemente el problema", timeout=30)
