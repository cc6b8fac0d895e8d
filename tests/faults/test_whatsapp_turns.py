"""Fault drills of the inbound turn (issue 12, "Inbound"): a turn that fails once (Redis
paused under it), one that fails always, one that hangs. Through the real Rasa server: the
message comes in as WAHA posts it, the consumer runs its turn, the replies go to the fake WAHA.

One Rasa server for the module, on Redis database 9, with a config/ where a failing turn is
tried again after 0.5 s and 0.5 s (1, 5, 15 s in config/channels.yml) and a turn is given up
after TURN_TIMEOUT seconds (120): the same code paths, shorter waits.
"""
import json
import subprocess
import sys
import time
from typing import Any, Dict, Iterator

import pytest
import redis
import requests

from helpdesk import queues, redis_keys
from tests.conftest import PROJECT
from tests.faults.servers import database_url, drill_server, rq_jobs, sends_to
from tests.integration.whatsapp_payloads import post_waha, waha_message
from tests.stack import WAHA_HMAC, api_headers

DATABASE = 9
TURN_TIMEOUT = 3
PARKED_TEXT = "No pude procesar su último mensaje"  # config/channels.yml texts.message_parked


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    work = tmp_path_factory.mktemp("turn-drills")
    with drill_server(stack, work, DATABASE, {
        ("inbound", "retry_seconds"): [0.5, 0.5],
        ("inbound", "turn_timeout_seconds"): TURN_TIMEOUT,
        ("rate_limit", "messages"): 0,
    }) as server:
        yield server


@pytest.fixture
def waha(fake_waha, server):
    fake_waha.clear()
    yield fake_waha
    fake_waha.clear()


def _say(server: Dict[str, Any], number: str, text: str, **extra: Any) -> Dict[str, Any]:
    event = waha_message(number, text, **extra)
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


def _user_turns(server: Dict[str, Any], number: str) -> list:
    tracker = requests.get(f"{server['url']}/conversations/{number}/tracker",
                           headers=api_headers(), timeout=10).json()
    return [e["message_id"] for e in tracker["events"] if e["event"] == "user"]


def test_redis_paused_under_a_turn_the_turn_is_retried_and_answered_once(stack, server, waha):
    """Must hold: Redis paused (CLIENT PAUSE ALL, 7 s: longer than the channel's 5 s socket
    timeout, so its calls fail rather than wait) just as the turn of an accepted message
    starts: the turn (or the read before it) fails, is run again when Redis answers, and the
    message is answered once, recorded once."""
    number = "5491166660001"
    admin = redis.Redis.from_url(database_url(stack, DATABASE))
    event = _say(server, number, "hola")
    admin.execute_command("CLIENT", "PAUSE", 7000, "ALL")
    _wait(lambda: sends_to(waha.requests, f"{number}@c.us"), 60, "the reply")
    time.sleep(2)  # a second copy would arrive now
    assert len(sends_to(waha.requests, f"{number}@c.us")) == 1
    _wait(lambda: _user_turns(server, number) == [event["payload"]["id"]], 30, "the save")
    assert server["redis"].xlen(redis_keys.inbound_parked()) == 0
    admin.close()


def test_a_turn_failing_always_is_parked_and_the_conversation_goes_on(server, waha):
    """Must hold: a turn that raises at every attempt (the conversation's offered-buttons key
    holds a hash where the channel reads a string: Redis answers WRONGTYPE, as with a key
    written by another version) is tried 3 times and parked, not deleted: the user is told
    (texts.message_parked), the support team's notice queued, `dead_letters inbound` lists it;
    once the cause is removed the conversation's next message is answered and `replay-inbound`
    answers the parked one."""
    number = "5491166660002"
    chat = f"{number}@c.us"
    client = server["redis"]
    client.hset(redis_keys.offered_buttons(number), "broken", "1")
    stuck = _say(server, number, "hola")
    _wait(lambda: client.xlen(redis_keys.inbound_parked()) >= 1, 60, "the parking")
    _wait(lambda: any(t.startswith(PARKED_TEXT) for t in sends_to(waha.requests, chat)), 30,
          "the user's notice")
    log = server["log"].read_text(errors="replace")
    assert log.count("WRONGTYPE") >= 3  # every attempt failed
    [parked] = [e for e in json.loads(_dead_letters(server, "inbound", "--json"))
                if "WRONGTYPE" in e["reason"]]
    assert parked["text"] == "hola" and "3 attempts failed" in parked["reason"]
    told = [job for job in rq_jobs(client, queues.DEFAULT)
            if job.func_name == queues.NOTIFY_WHATSAPP and job.args[0] == "inbound_parked"]
    assert [job.args[1]["id"] for job in told] == [parked["id"]]

    # the cause resolved (the operator deletes the key), the conversation goes on: its next
    # message runs, nothing waits behind the parked one
    client.delete(redis_keys.offered_buttons(number))
    after = _say(server, number, "gracias")
    _wait(lambda: any(t.startswith("De nada") for t in sends_to(waha.requests, chat)), 60,
          "the next message's reply")
    # the reply leaves before Rasa saves the tracker: wait for the save
    _wait(lambda: _user_turns(server, number) == [after["payload"]["id"]], 30, "the save")

    _dead_letters(server, "replay-inbound", parked["id"])
    _wait(lambda: any(t.startswith("Hola") for t in sends_to(waha.requests, chat)), 60,
          "the replayed message's reply")
    _wait(lambda: _user_turns(server, number) == [after["payload"]["id"],
                                                   stuck["payload"]["id"]], 30, "the save")
    assert client.xlen(redis_keys.inbound_parked()) == 0


def test_a_hanging_turn_is_given_up_after_its_deadline_and_the_lane_moves_on(server, waha):
    """Must hold: a turn that hangs (its image's download from WAHA never ends within the
    turn: TURN_TIMEOUT is shorter than the media timeout) is cut at its deadline, tried again,
    then parked; the user is told, and the conversation's next message is answered."""
    number = "5491166660003"
    chat = f"{number}@c.us"
    path = f"/api/files/default/{number}-hang.jpg"
    waha.files[path] = (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg")
    waha.stalled_files[path] = 60
    media = {"url": f"{waha.url}{path}", "mimetype": "image/jpeg", "filename": None,
             "error": None}
    _say(server, number, "", media=media)
    client = server["redis"]
    later = _say(server, number, "gracias")  # waits behind the hanging turn
    _wait(lambda: any(t.startswith("De nada") for t in sends_to(waha.requests, chat)),
          3 * TURN_TIMEOUT + 60, "the next message's reply")
    assert any(t.startswith(PARKED_TEXT) for t in sends_to(waha.requests, chat))
    parked = [e for e in json.loads(_dead_letters(server, "inbound", "--json"))
              if "longer than" in e["reason"]]
    assert len(parked) == 1 and parked[0]["kind"] == "media"
    assert f"the turn ran longer than {TURN_TIMEOUT} s" in parked[0]["reason"]
    _wait(lambda: _user_turns(server, number)[-1:] == [later["payload"]["id"]], 30, "the save")
    assert client.xlen(redis_keys.inbound_parked()) >= 1
