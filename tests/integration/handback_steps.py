"""The steps of a handoff and the way back through the real stack (tests/stack.py), shared by
tests/integration/test_handback.py and tests/faults/test_handoff_mark_lost.py."""
import subprocess
import sys
import time
from typing import List

from helpdesk import handoff
from tests.conftest import PROJECT
from tests.fakes.chatwoot import FakeChatwoot
from tests.integration.whatsapp_payloads import post_waha, texts_to, waha_message
from tests.stack import CHATWOOT_WEBHOOK_TOKEN, WAHA_HMAC

STARTED = "Le paso con una persona del equipo de soporte."
RESUMED = "La persona de soporte ha cerrado la conversación. El asistente vuelve a atenderle"
EXPIRED = "Ha pasado un tiempo sin que el equipo de soporte cerrara la conversación"
WELCOME = "De nada. Quedo atento si necesita algo más."


def say(stack, number: str, text: str) -> None:
    answer = post_waha(stack.rasa_url, waha_message(number, text), WAHA_HMAC)
    assert answer.status_code == 200, answer.text


def texts(fake_waha, number: str) -> List[str]:
    return texts_to(fake_waha.requests, f"{number}@c.us")


def wait_for_texts(fake_waha, number: str, count: int, timeout: float = 60) -> List[str]:
    fake_waha.wait_for(lambda seen: len(texts_to(seen, f"{number}@c.us")) >= count, timeout)
    return texts(fake_waha, number)


def tracker_when(stack, number: str, done, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        tracker = stack.tracker(number)
        if done(tracker) or time.monotonic() > deadline:
            return tracker
        time.sleep(0.1)


def user_texts(tracker: dict) -> List[str]:
    return [e.get("text") for e in tracker["events"] if e["event"] == "user"]


def run_worker(stack) -> subprocess.CompletedProcess:
    """One real RQ worker with its scheduler, in burst mode: the queues' jobs, then it exits."""
    finished = subprocess.run([sys.executable, "-m", "workers.worker", "--burst"], cwd=PROJECT,
                              env={**stack.env, "WORKER_HEALTH_PORT": "0"}, capture_output=True,
                              text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def hand_over(stack, fake_waha, fake_chatwoot, client, number: str) -> dict:
    """The user asks for a person: paused, marked, and open in Chatwoot for the agents."""
    say(stack, number, "quiero hablar con una persona")
    [started] = wait_for_texts(fake_waha, number, 1)
    assert started.startswith(STARTED)
    assert tracker_when(stack, number, lambda t: t["paused"])["paused"]
    assert handoff.is_marked(client, number)
    run_worker(stack)  # the mirror and the handoff reach Chatwoot
    conversation = fake_chatwoot.conversation_of(f"+{number}")
    assert conversation["status"] == "open" and "escalated" in conversation["labels"]
    return conversation


def write_while_paused(stack, fake_waha, number: str, meanwhile: List[str]) -> None:
    """What the user writes to the agent: on the tracker, in Chatwoot, and the bot silent."""
    for text in meanwhile:
        say(stack, number, text)
    tracker = tracker_when(stack, number, lambda t: all(m in user_texts(t) for m in meanwhile))
    assert all(m in user_texts(tracker) for m in meanwhile) and tracker["paused"]
    time.sleep(1.0)
    assert len(texts(fake_waha, number)) == 1  # nothing but the handoff message


def resolve(stack, fake_chatwoot, conversation: dict, expected: str = "resuming") -> None:
    fake_chatwoot.agent_sets_status(conversation["id"], "resolved")
    url = f"{stack.rasa_url}/webhooks/chatwoot/webhook?token={CHATWOOT_WEBHOOK_TOKEN}"
    status, body = FakeChatwoot.deliver(fake_chatwoot.status_webhook(conversation["id"]), url)
    assert (status, body) == (200, {"result": expected})


def assert_back_with_the_bot(stack, fake_waha, client, bot_ledger, number: str, told: str) -> None:
    """Told once, not paused, not handed over again; and the bot answers the next message."""
    said = wait_for_texts(fake_waha, number, 2)
    assert said[1].startswith(told), said
    tracker = tracker_when(stack, number, lambda t: not t["paused"])
    assert not tracker["paused"]
    assert not handoff.is_marked(client, number)
    time.sleep(1.0)  # a second handoff would have spoken by now
    assert len(texts(fake_waha, number)) == 2, texts(fake_waha, number)
    assert len(bot_ledger.handoff_requests(number)) == 1

    say(stack, number, "gracias")
    assert wait_for_texts(fake_waha, number, 3)[2] == WELCOME
    assert not stack.tracker(number)["paused"]


def operator_resume(stack, number: str) -> None:
    finished = subprocess.run([sys.executable, "-m", "workers.chatwoot_jobs", "resume", number],
                              cwd=PROJECT, env=stack.env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip() == f"{number}: resumed"
