"""Fault drills of the outbound path (issue 12, "Outbound"): the gateway refusing, failing for
a while or for ever, WAHA's session down, a poison outbox head. Through the real Rasa server:
a user's message comes in as WAHA posts it, the turn runs, the replies go out to the fake
WAHA, which fails as told.

One Rasa server for the module, on Redis database 8, with a config/ where an outbox entry is
given up after OUTBOX_MAX_AGE seconds (a day in config/channels.yml: the same code path, only
the age differs) and the outbox retries after 0.2, 0.5, then every 1 s (tests/stack.py).
Support notices are RQ jobs: no worker reads database 8, so the drills read them queued.
"""
import json
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import pytest

from helpdesk import queues, redis_keys
from helpdesk.logs import mask_phone
from tests.conftest import PROJECT
from tests.fakes.gateways import waha_error
from tests.faults.servers import drill_server, rq_jobs, sends_to
from tests.integration.whatsapp_payloads import post_waha, waha_message
from tests.stack import WAHA_HMAC

DATABASE = 8
OUTBOX_MAX_AGE = 10


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    work = tmp_path_factory.mktemp("outbound-drills")
    with drill_server(stack, work, DATABASE, {
        ("outbound", "outbox_max_age_seconds"): OUTBOX_MAX_AGE,
        ("rate_limit", "messages"): 0,
    }) as server:
        yield server


@pytest.fixture
def waha(fake_waha, server):
    fake_waha.clear()
    yield fake_waha
    fake_waha.clear()


def _say(server: Dict[str, Any], number: str, text: str) -> Dict[str, Any]:
    event = waha_message(number, text)
    answer = post_waha(server["url"], event, WAHA_HMAC)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    return event


def _wait(condition, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} did not happen in {seconds:.0f} s"
        time.sleep(0.1)


def _dead_letters(server: Dict[str, Any], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "workers.dead_letters", *args], cwd=PROJECT,
                          env=server["env"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _notices(server: Dict[str, Any], name: str) -> List[Any]:
    return [job for job in rq_jobs(server["redis"], queues.DEFAULT)
            if job.func_name == queues.NOTIFY_WHATSAPP and job.args[0] == name]


def test_a_poison_outbox_head_holds_up_no_other_chat_and_is_parked(server, waha):
    """Must hold: an outbox head that raises something other than a gateway error (a text
    message without its text: the WAHA sender's KeyError; a JSON value that is no message at
    all) delays no other chat: the healthy chat's reply goes out while the poison heads still
    wait; each poison head is retried with backoff, not every drain, and parked for a person;
    the notice to the support team is queued."""
    client = server["redis"]
    keyless = redis_keys.outbox("waha", "5491177770001@c.us")
    not_a_message = redis_keys.outbox("waha", "5491177770002@c.us")
    now = time.time()
    client.rpush(keyless, json.dumps({
        "channel": "waha", "chat_id": "5491177770001@c.us", "conversation_id": "5491177770001",
        "kind": "text", "attempt": 1, "queued_at": now}))
    client.rpush(not_a_message, json.dumps(["not", "a", "message"]))
    client.zadd(redis_keys.outbox_due(), {keyless: now, not_a_message: now})

    healthy = "5491177770003"
    _say(server, healthy, "hola")
    _wait(lambda: sends_to(waha.requests, f"{healthy}@c.us"), 60, "the healthy chat's reply")
    assert client.llen(keyless) == 1  # it went out while the poison head still waited

    _wait(lambda: client.llen(keyless) == 0 and client.llen(not_a_message) == 0,
          OUTBOX_MAX_AGE + 30, "the poison heads' parking")
    parked = json.loads(_dead_letters(server, "outbound", "--json"))
    # the command masks phone numbers
    reasons = {entry["chat_id"] or "": entry["reason"] for entry in parked}
    assert "not delivered in" in reasons.get(mask_phone("5491177770001@c.us"), ""), parked
    assert any(reason == "unreadable entry" for reason in reasons.values())
    log = server["log"].read_text(errors="replace")
    # retried with growing waits, not at every 0.5 s pass of the drainer
    assert log.count("outbox delivery failed unexpectedly") < 25
    assert _notices(server, "outbound_parked")
    assert sends_to(waha.requests, f"{healthy}@c.us")[0].startswith("Hola")


def test_waha_422_while_its_session_is_not_working_then_201_delivers_once_in_order(server,
                                                                                   waha):
    """Must hold: WAHA answering 422 (session not WORKING) is a wait, not a refusal: the
    replies of three turns wait in the outbox, are retried, and once WAHA answers 201 go out
    once each, in the order of the turns. (The issue says two minutes; a 4 s outage takes
    the same path: the transient error's outbox retries, the last wait repeated; only the
    count of retries differs.)"""
    number = "5491177770010"
    chat = f"{number}@c.us"
    waha.failure = waha_error(422, "Session status is not as expected. Try again later or "
                                   "restart the session. Status: STARTING, expected: WORKING")
    for text in ("hola", "gracias", "adiós"):
        _say(server, number, text)
    client = server["redis"]
    key = redis_keys.outbox("waha", chat)
    _wait(lambda: client.llen(key) >= 3, 60, "three replies waiting")
    time.sleep(4)
    refused = [r for r in waha.requests if r["path"] == "/api/sendText" and r.get("failed")]
    waha.failure = None
    _wait(lambda: len(sends_to(waha.requests, chat)) >= 3 and client.llen(key) == 0, 30,
          "the delivery of the waiting replies")
    time.sleep(1.5)  # a second copy would arrive now
    sent = sends_to(waha.requests, chat)
    assert len(sent) == 3
    assert sent[0].startswith("Hola")
    assert sent[1].startswith("De nada")
    assert sent[2].startswith("Hasta luego")
    assert len(refused) > 3  # retried while refused, not given up
    assert not client.xlen(redis_keys.outbox_parked()) or all(
        entry["chat_id"] != mask_phone(chat) for entry in json.loads(_dead_letters(server, "outbound",
                                                                         "--json")))


def test_a_gateway_failing_for_ever_parks_the_messages_tells_a_person_and_replays(server,
                                                                                 waha):
    """Must hold: a chat whose sends fail for ever (WAHA 500 at each try) keeps its replies
    only until they are OUTBOX_MAX_AGE old: then they are parked (the chat's outbox empties:
    bounded), a person is told, `dead_letters outbound` lists them and `replay-outbound`
    delivers one once the gateway works. A chat refused for good (400) is parked at once.
    Another chat is answered meanwhile."""
    failing, refused, healthy = "5491177770020", "5491177770021", "5491177770022"
    waha.failing_chats[f"{failing}@c.us"] = waha_error(500, "Failed to send message")
    waha.failing_chats[f"{refused}@c.us"] = waha_error(400, "chatId is not a valid WhatsApp id")
    client = server["redis"]
    key = redis_keys.outbox("waha", f"{failing}@c.us")
    _say(server, failing, "hola")
    _say(server, failing, "gracias")
    _say(server, refused, "hola")
    _say(server, healthy, "hola")
    _wait(lambda: sends_to(waha.requests, f"{healthy}@c.us"), 60, "the healthy chat's reply")
    _wait(lambda: client.llen(key) == 2, 60, "the failing chat's replies waiting")

    def parked_for(chat: str) -> List[Dict[str, Any]]:
        return [e for e in json.loads(_dead_letters(server, "outbound", "--json"))
                if e["chat_id"] == mask_phone(chat)]  # the command masks phone numbers

    assert len(parked_for(f"{refused}@c.us")) == 1  # refused for good: parked at once
    _wait(lambda: client.llen(key) == 0, OUTBOX_MAX_AGE + 30, "the failing chat's parking")
    parked = parked_for(f"{failing}@c.us")
    assert len(parked) == 2 and all("not delivered in" in e["reason"] for e in parked)
    told = {job.args[1]["id"] for job in _notices(server, "outbound_parked")}
    assert {e["id"] for e in parked} <= told
    listed = _dead_letters(server, "outbound")
    assert all(e["id"] in listed for e in parked)

    waha.failing_chats.clear()
    _dead_letters(server, "replay-outbound", parked[0]["id"])
    _wait(lambda: sends_to(waha.requests, f"{failing}@c.us"), 30, "the replayed reply")
    time.sleep(1.5)
    assert sends_to(waha.requests, f"{failing}@c.us") == [parked[0]["text"]]
    assert len(parked_for(f"{failing}@c.us")) == 1


def test_waha_session_failed_then_working_holds_replies_and_tells_once(server, waha):
    """Must hold: after WAHA reports its session FAILED (session.status webhook), replies
    wait in the outbox untried; the support team is told once for the outage, however many
    replies wait and however often WAHA repeats it; after WORKING every waiting reply goes
    out, once, in order."""
    number = "5491177770030"
    chat = f"{number}@c.us"
    client = server["redis"]
    before = len(_notices(server, "session_down_waha"))

    def status(value: str) -> None:
        event = waha_message(number, "", event="session.status")
        event["payload"] = {"name": "default", "status": value,
                            "statuses": [{"status": value, "timestamp": int(time.time() * 1000)}]}
        assert post_waha(server["url"], event, WAHA_HMAC).status_code == 200

    status("FAILED")
    for text in ("hola", "gracias"):
        _say(server, number, text)
    status("FAILED")  # WAHA repeats itself
    key = redis_keys.outbox("waha", chat)
    _wait(lambda: client.llen(key) >= 2, 60, "two replies waiting")
    time.sleep(2)  # retries would happen now
    assert [r for r in waha.requests if r["path"] == "/api/sendText"] == []  # untried
    assert len(_notices(server, "session_down_waha")) == before + 1

    status("WORKING")
    _wait(lambda: len(sends_to(waha.requests, chat)) >= 2 and client.llen(key) == 0, 30,
          "the delivery after WORKING")
    time.sleep(1.5)
    sent = sends_to(waha.requests, chat)
    assert len(sent) == 2 and sent[0].startswith("Hola") and sent[1] != sent[0]
    assert len(_notices(server, "session_down_waha")) == before + 1
