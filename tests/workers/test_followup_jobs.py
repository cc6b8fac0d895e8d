"""Follow-ups through real RQ workers (with RQ's scheduler) on the session's real Redis,
against a recording fake of Rasa's HTTP API that runs this project's follow-up actions.

The fake (`DialogueRasa`, on tests/fakes/rasa_http.py) keeps each conversation's tracker the
way Rasa serialises it (events, active loop, slots, paused). A triggered EXTERNAL_* intent is
logged as Rasa logs it (an external user event) and runs the real action of its rule
(actions/followups.py) with the project's domain; what the action says is "sent" and
recorded, its events are applied, and its FollowupAction makes the form ask its requested
slot again, as Rasa's form would. Timings come from a copy of config/ with seconds.
"""
import asyncio
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml
from rq.job import Job
from rq.registry import ScheduledJobRegistry

import actions.common
from actions.followups import ActionFollowupClose, ActionFollowupEscalate, ActionFollowupReask
from helpdesk import followups, handoff, redis_keys
from helpdesk.config import followups as followups_config
from tests.actions.helpers import domain_dict, sdk_tracker
from tests.conftest import PROJECT, free_port
from tests.fakes.rasa_http import FakeRasa
from tests.workers.zoho_support import BackgroundWorker, run_burst, wait_until

TOKEN = "rasa-test-token"
CONVERSATION = "5491122334455"
ACTIONS = {
    followups.REASK_INTENT: ActionFollowupReask,
    followups.ESCALATE_INTENT: ActionFollowupEscalate,
    followups.CLOSE_INTENT: ActionFollowupClose,
}


class DialogueRasa(FakeRasa):
    """Rasa's HTTP API for the follow-up intents, with this project's rules and actions."""

    def __init__(self, token: str, intents: Tuple[str, ...] = followups.INTENTS) -> None:
        super().__init__(token=token, responses={name: "" for name in intents})
        self.trackers: Dict[str, Dict[str, Any]] = {}
        self.said: List[Tuple[str, str, str]] = []  # (conversation, output channel, response)
        self.triggers: List[Dict[str, Any]] = []
        self.clock = 1_700_000_000.0

    # the conversation ------------------------------------------------------------------
    def _tick(self) -> float:
        self.clock += 0.5
        return self.clock

    def user_writes(self, conversation_id: str, message_id: str, asks: Optional[str] = "store") -> None:
        """The user's message and the bot's answer: the form asking `asks`, or no form."""
        with self.lock:
            tracker = self.trackers.setdefault(conversation_id, {
                "events": [], "active_loop": None, "slots": {}, "paused": False})
            tracker["events"] += [
                {"event": "user", "text": "mensaje del usuario", "message_id": message_id,
                 "parse_data": {"intent": {"name": "inform"}, "entities": []},
                 "metadata": {}, "input_channel": "waha", "timestamp": self._tick()},
                {"event": "action", "name": "ticket_form", "timestamp": self._tick()},
            ]
            tracker["active_loop"] = "ticket_form" if asks else None
            tracker["slots"]["requested_slot"] = asks
            if asks:
                self._say(conversation_id, "waha", f"utter_ask_{asks}")
            tracker["events"].append({"event": "action", "name": "action_listen", "timestamp": self._tick()})

    def said_to(self, conversation_id: str) -> List[str]:
        with self.lock:
            return [response for conversation, _, response in self.said if conversation == conversation_id]

    def triggered(self, intent: Optional[str] = None) -> List[Dict[str, Any]]:
        with self.lock:
            return [t for t in self.triggers if intent is None or t["intent"] == intent]

    def _say(self, conversation_id: str, channel: str, response: str) -> None:
        self.trackers[conversation_id]["events"].append(
            {"event": "bot", "text": response, "metadata": {"utter_action": response},
             "timestamp": self._tick()})
        self.said.append((conversation_id, channel, response))

    def state(self, conversation_id: str) -> Dict[str, Any]:
        tracker = self.trackers.setdefault(conversation_id, {
            "events": [], "active_loop": None, "slots": {}, "paused": False})
        users = [e for e in tracker["events"] if e["event"] == "user"]
        return {
            "sender_id": conversation_id, "slots": dict(tracker["slots"]),
            "latest_message": users[-1].get("parse_data", {}) if users else {},
            "events": [dict(e) for e in tracker["events"]], "paused": tracker["paused"],
            "followup_action": None, "latest_action_name": None,
            "active_loop": {"name": tracker["active_loop"]} if tracker["active_loop"] else {},
        }

    # the HTTP API --------------------------------------------------------------------------
    def _handle(self, raw_path: str, raw: bytes) -> Tuple[int, Any]:
        from urllib.parse import parse_qs, unquote, urlparse

        parsed = urlparse(raw_path)
        if not parsed.path.endswith("/trigger_intent"):
            return super()._handle(raw_path, raw)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        body = json.loads(raw) if raw else {}
        with self.lock:
            self.calls.append({"path": parsed.path, "query": query, "json": body})
            if self.failures:
                return self._error(self.failures.pop(0), "ServerError", "injected failure")
            if query.get("token") != self.token:
                return self._error(401, "NotAuthenticated", "User is not authenticated.")
            intent = body.get("name")
            if intent not in self.responses:
                return self._error(404, "NotFound", f"The intent {intent} does not exist in the domain.")
            conversation_id = unquote(parsed.path.split("/")[2])
            entities = [{"entity": k, "value": v} for k, v in (body.get("entities") or {}).items()]
            self.triggers.append({"conversation": conversation_id, "intent": intent, "at": time.time(),
                                  "entities": dict(body.get("entities") or {}),
                                  "output_channel": query.get("output_channel")})
            tracker = self.trackers.setdefault(conversation_id, {
                "events": [], "active_loop": None, "slots": {}, "paused": False})
            tracker["events"].append({
                "event": "user", "text": f"EXTERNAL: {intent}", "message_id": None,
                "parse_data": {"intent": {"name": intent}, "entities": entities},
                "metadata": {"is_external": True}, "input_channel": "waha", "timestamp": self._tick()})
            if not tracker["paused"]:
                self._run_rule(conversation_id, intent, query.get("output_channel", ""))
            return 200, {"tracker": self.state(conversation_id)}

    def _run_rule(self, conversation_id: str, intent: str, channel: str) -> None:
        from rasa_sdk.executor import CollectingDispatcher

        tracker = self.trackers[conversation_id]
        action = ACTIONS[intent]()
        dispatcher = CollectingDispatcher()
        events = asyncio.run(action.run(dispatcher, sdk_tracker(self.state(conversation_id)), domain_dict()))
        tracker["events"].append({"event": "action", "name": action.name(), "timestamp": self._tick()})
        for message in dispatcher.messages:
            self._say(conversation_id, channel, message["response"])
        for event in events:
            kind = event["event"]
            if kind == "active_loop":
                tracker["active_loop"] = event["name"]
            elif kind == "slot":
                tracker["slots"][event["name"]] = event["value"]
            elif kind == "pause":
                tracker["paused"] = True
            elif kind == "followup":  # the form asks its requested slot again
                self._say(conversation_id, channel, f"utter_ask_{tracker['slots']['requested_slot']}")
            tracker["events"].append(dict(event, timestamp=self._tick()))


# --- fixtures ----------------------------------------------------------------------------------
def write_config(tmp_path: Path, **sections: Dict[str, Any]) -> Path:
    target = tmp_path / "config"
    if not target.exists():
        import shutil

        shutil.copytree(PROJECT / "config", target)
    data = yaml.safe_load((PROJECT / "config" / "followups.yml").read_text(encoding="utf-8"))
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    (target / "followups.yml").write_text(yaml.safe_dump(data), encoding="utf-8")
    followups_config._config_at.cache_clear()
    return target


def forget_caches() -> None:
    followups_config._config_at.cache_clear()
    followups._redis.cache_clear()
    if actions.common.get_ledger.cache_info().currsize:
        actions.common.get_ledger().engine.dispose()
    actions.common.get_ledger.cache_clear()


@pytest.fixture
def rasa():
    server = DialogueRasa(TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def env(rasa, redis_url, redis_client, tmp_path, monkeypatch, database_url) -> Dict[str, str]:
    """This process and the workers it starts: the fake Rasa, the real Redis, a config with
    seconds (reminders every second, the close far away unless a test says otherwise)."""
    config = write_config(tmp_path, reask={"delay_seconds": 1, "max_reasks": 3, "escalate": True},
                          thread={"timeout_seconds": 600}, jobs={"retry_intervals": [0, 0]},
                          rasa={"connect_timeout_seconds": 1, "read_timeout_seconds": 5})
    values = {"REDIS_URL": redis_url, "RASA_PORT": str(rasa.port), "RASA_AUTH_TOKEN": TOKEN,
              "HELPDESK_CONFIG_DIR": str(config), "DATABASE_URL": database_url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHATWOOT_URL", raising=False)
    monkeypatch.delenv("SUPPORT_ESCALATION_CHAT", raising=False)
    forget_caches()
    yield {**os.environ, "PYTHONPATH": str(PROJECT), "WORKER_HEALTH_PORT": "0", "LOG_LEVEL": "INFO"}
    forget_caches()


@pytest.fixture
def worker(env, tmp_path):
    """`python -m workers.worker` (RQ's scheduler on) until the test ends."""
    process = BackgroundWorker(env, tmp_path / "worker.log").start()
    yield process
    process.stop()


def scheduled(redis_client) -> Dict[str, float]:
    registry = ScheduledJobRegistry(followups.QUEUE, connection=redis_client)
    return {job_id: registry.get_expiration_time(Job.fetch(job_id, connection=redis_client)).timestamp()
            for job_id in registry.get_job_ids()}


def sleep_until_due(redis_client, job_id: str) -> None:
    """Until RQ's scheduler would move the job to its queue."""
    time.sleep(max(0.0, scheduled(redis_client)[job_id] - time.time()) + 0.05)


def question_waits(rasa: DialogueRasa, redis_client, message_id: str = "wamid.A", asks: str = "store") -> str:
    """The user wrote, the form asked, the channel scheduled the follow-ups."""
    rasa.user_writes(CONVERSATION, message_id, asks)
    assert followups.after_turn(redis_client, CONVERSATION, message_id, True) == "scheduled"
    return message_id


# --- scheduling ---------------------------------------------------------------------------------
def test_a_waiting_question_schedules_one_reminder_and_the_close(env, redis_client):
    before = time.time()
    assert followups.after_turn(redis_client, CONVERSATION, "wamid.A", True) == "scheduled"

    jobs = scheduled(redis_client)
    first = followups.step_job_id(CONVERSATION, "wamid.A", 1)
    close = followups.close_job_id(CONVERSATION, "wamid.A")
    assert set(jobs) == {first, close}
    # whole seconds in RQ's registry, never earlier than the delay
    assert before + 1 <= jobs[first] <= time.time() + 2
    assert before + 600 <= jobs[close] <= time.time() + 601
    assert Job.fetch(first, connection=redis_client).args == (CONVERSATION, "wamid.A", 1)
    state = followups.pending(redis_client, CONVERSATION)
    assert (state["anchor"], state["job"], state["close_job"]) == ("wamid.A", first, close)
    assert 0 < redis_client.ttl(redis_keys.followup_state(CONVERSATION)) <= 600 + 24 * 3600


def test_the_next_user_turn_replaces_them_at_most_one_pending(env, redis_client):
    followups.after_turn(redis_client, CONVERSATION, "wamid.A", True)
    followups.after_turn(redis_client, CONVERSATION, "wamid.B", True)

    assert set(scheduled(redis_client)) == {followups.step_job_id(CONVERSATION, "wamid.B", 1),
                                            followups.close_job_id(CONVERSATION, "wamid.B")}
    assert not redis_client.exists(Job.key_for(followups.step_job_id(CONVERSATION, "wamid.A", 1)))

    assert followups.after_turn(redis_client, CONVERSATION, "wamid.C", False) == "cancelled"
    assert scheduled(redis_client) == {}
    assert followups.pending(redis_client, CONVERSATION) == {}
    assert followups.after_turn(redis_client, CONVERSATION, "wamid.D", False) == "idle"


def test_the_channel_hook_reads_the_conversation_from_the_tracker_store(env, redis_client):
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.events import ActionExecuted, ActiveLoop, ConversationPaused, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker
    from tests.actions.helpers import rasa_domain

    store = InMemoryTrackerStore(rasa_domain())
    agent = SimpleNamespace(tracker_store=store)
    tracker = DialogueStateTracker.from_events(CONVERSATION, [
        ActionExecuted("action_listen"),
        UserUttered("no anda la caja", {"name": "report_incident"}, message_id="wamid.A"),
        ActionExecuted("ticket_form"), ActiveLoop("ticket_form"), ActionExecuted("action_listen"),
        UserUttered.create_external("EXTERNAL_ticket_delivered"),  # a worker's, not the user's
    ], slots=rasa_domain().slots)
    asyncio.run(store.save(tracker))

    assert asyncio.run(followups.after_user_turn(agent, CONVERSATION, "corr-1")) == "scheduled"
    assert followups.pending(redis_client, CONVERSATION)["anchor"] == "wamid.A"
    assert Job.fetch(followups.step_job_id(CONVERSATION, "wamid.A", 1),
                     connection=redis_client).meta["correlation_id"] == "corr-1"

    tracker.update(ConversationPaused())  # a person has the conversation
    asyncio.run(store.save(tracker))
    assert asyncio.run(followups.after_user_turn(agent, CONVERSATION)) == "cancelled"
    assert scheduled(redis_client) == {}
    # no tracker store (or Redis down): the turn goes on, nothing scheduled
    assert asyncio.run(followups.after_user_turn(SimpleNamespace(), CONVERSATION)) is None


# --- the chain through a real worker ---------------------------------------------------------
def test_an_unanswered_question_is_asked_three_times_then_escalated(env, rasa, redis_client, worker,
                                                                   tmp_path):
    write_config(tmp_path, reask={"delay_seconds": 2})  # read by each job (a fresh work horse)
    started = time.time()
    anchor = question_waits(rasa, redis_client)

    wait_until(lambda: rasa.triggered(followups.ESCALATE_INTENT), 60, what="the escalation")

    calls = rasa.triggered()
    assert [(c["intent"], c["entities"].get(followups.ATTEMPT), c["entities"].get(followups.FINAL))
            for c in calls] == [(followups.REASK_INTENT, "1", None), (followups.REASK_INTENT, "2", None),
                                (followups.REASK_INTENT, "3", "1"), (followups.ESCALATE_INTENT, "4", None)]
    assert all(c["entities"][followups.ANCHOR] == anchor and c["output_channel"] == "latest" for c in calls)
    # one delay (2 s) of silence before each; RQ's scheduler looks once a second
    gaps = [later["at"] - earlier["at"] for earlier, later in zip([{"at": started}] + calls, calls)]
    assert all(2 <= gap <= 4.5 for gap in gaps), gaps
    assert rasa.said_to(CONVERSATION) == [
        "utter_ask_store",
        "utter_followup_reminder", "utter_ask_store",
        "utter_followup_reminder", "utter_ask_store",
        "utter_followup_last_reminder", "utter_ask_store",
        "utter_followup_escalated",
    ]
    assert rasa.trackers[CONVERSATION]["active_loop"] is None
    time.sleep(2.5)  # nothing is scheduled after the escalation
    assert len(rasa.triggered()) == 4
    assert set(scheduled(redis_client)) == {followups.close_job_id(CONVERSATION, anchor)}


def test_a_reply_cancels_the_follow_up(env, rasa, redis_client, worker):
    question_waits(rasa, redis_client, "wamid.A")
    wait_until(lambda: rasa.triggered(), 20, what="the first reminder")

    # the user answers; the form asks the next question: a new wait, counted from one again
    rasa.user_writes(CONVERSATION, "wamid.B", asks="system")
    followups.after_turn(redis_client, CONVERSATION, "wamid.B", True)
    wait_until(lambda: len(rasa.triggered()) >= 2, 20, what="the reminder of the new question")
    second = rasa.triggered()[1]
    assert (second["entities"][followups.ANCHOR], second["entities"][followups.ATTEMPT]) == ("wamid.B", "1")

    # the user's next message ends the form: nothing is pending, nothing more is said
    rasa.user_writes(CONVERSATION, "wamid.C", asks=None)
    assert followups.after_turn(redis_client, CONVERSATION, "wamid.C", False) == "cancelled"
    said = rasa.said_to(CONVERSATION)
    time.sleep(4)
    assert len(rasa.triggered()) == 2
    assert rasa.said_to(CONVERSATION) == said
    assert said == ["utter_ask_store", "utter_followup_reminder", "utter_ask_store",
                    "utter_ask_system", "utter_followup_reminder", "utter_ask_system"]
    assert scheduled(redis_client) == {}


# --- races: a cancel that comes too late still sends nothing -----------------------------------
def test_a_job_started_before_the_cancel_sends_nothing(env, rasa, redis_client):
    from workers.followup_jobs import followup_step

    question_waits(rasa, redis_client, "wamid.A")
    # the job was already running when the user wrote and the channel moved the anchor on
    rasa.user_writes(CONVERSATION, "wamid.B", asks="system")
    followups.after_turn(redis_client, CONVERSATION, "wamid.B", True)

    assert followup_step(CONVERSATION, "wamid.A", 1) == "stale"
    assert rasa.triggered() == []


def test_a_job_that_reaches_rasa_after_the_user_says_nothing_and_stops(env, rasa, redis_client):
    from workers.followup_jobs import followup_step

    question_waits(rasa, redis_client, "wamid.A")
    # the user's message is on the tracker, the channel has not updated Redis yet
    rasa.user_writes(CONVERSATION, "wamid.B", asks="system")

    assert followup_step(CONVERSATION, "wamid.A", 1) == "answered"
    assert len(rasa.triggered()) == 1
    assert rasa.said_to(CONVERSATION) == ["utter_ask_store", "utter_ask_system"]
    assert followups.pending(redis_client, CONVERSATION)["job"] == ""
    assert followups.step_job_id(CONVERSATION, "wamid.A", 2) not in scheduled(redis_client)


# --- Rasa failing, a person in charge -----------------------------------------------------------
def test_rasa_down_the_job_runs_again_and_asks_once(env, rasa, redis_client):
    question_waits(rasa, redis_client, "wamid.A")
    rasa.fail(503, times=2)  # two runs of the job fail; RQ runs it again at once (retry_intervals 0, 0)
    sleep_until_due(redis_client, followups.step_job_id(CONVERSATION, "wamid.A", 1))

    started = time.monotonic()
    run_burst(env)

    assert time.monotonic() - started < 20  # no waiting inside the job
    assert len([c for c in rasa.calls if c["path"].endswith("trigger_intent")]) == 3
    assert rasa.said_to(CONVERSATION) == ["utter_ask_store", "utter_followup_reminder", "utter_ask_store"]
    job = Job.fetch(followups.step_job_id(CONVERSATION, "wamid.A", 1), connection=redis_client)
    assert job.get_status() == "finished" and job.result == "asked"
    assert followups.step_job_id(CONVERSATION, "wamid.A", 2) in scheduled(redis_client)


def test_rasa_down_for_good_the_job_ends_in_the_failed_registry(env, redis_client, monkeypatch):
    from rq.registry import FailedJobRegistry

    monkeypatch.setenv("RASA_PORT", str(free_port()))  # nothing listens there
    followups.after_turn(redis_client, CONVERSATION, "wamid.A", True)
    sleep_until_due(redis_client, followups.step_job_id(CONVERSATION, "wamid.A", 1))

    run_burst({**env, "RASA_PORT": os.environ["RASA_PORT"]})

    job_id = followups.step_job_id(CONVERSATION, "wamid.A", 1)
    assert job_id in FailedJobRegistry(followups.QUEUE, connection=redis_client).get_job_ids()
    assert "RasaUnavailable" in Job.fetch(job_id, connection=redis_client).exc_info


def test_rasa_refusing_the_intent_ends_the_chain_without_retries(env, redis_client, monkeypatch):
    refusing = DialogueRasa(TOKEN, intents=(followups.CLOSE_INTENT,)).start()  # no EXTERNAL_followup
    try:
        monkeypatch.setenv("RASA_PORT", str(refusing.port))
        followups.after_turn(redis_client, CONVERSATION, "wamid.A", True)
        sleep_until_due(redis_client, followups.step_job_id(CONVERSATION, "wamid.A", 1))

        run_burst({**env, "RASA_PORT": str(refusing.port)})

        job = Job.fetch(followups.step_job_id(CONVERSATION, "wamid.A", 1), connection=redis_client)
        assert (job.get_status(), job.result) == ("finished", "rejected")
        assert len(refusing.calls) == 1
        assert followups.pending(redis_client, CONVERSATION)["job"] == ""
    finally:
        refusing.stop()


def test_no_follow_up_while_a_person_has_the_conversation(env, rasa, redis_client):
    from workers.followup_jobs import close_thread, followup_step

    question_waits(rasa, redis_client, "wamid.A")
    handoff.mark(redis_client, CONVERSATION, "asked", 3600)

    assert followup_step(CONVERSATION, "wamid.A", 1) == "with_person"
    assert close_thread(CONVERSATION, "wamid.A") == "stale"  # the state went with the first
    assert rasa.triggered() == []
    assert scheduled(redis_client) == {}


def test_no_follow_up_to_a_user_who_opted_out(env, rasa, redis_client):
    from helpdesk.whatsapp import OptOutRegistry
    from workers.followup_jobs import followup_step

    question_waits(rasa, redis_client, "wamid.A")
    OptOutRegistry(redis_client).opt_out(CONVERSATION)

    assert followup_step(CONVERSATION, "wamid.A", 1) == "opted_out"
    assert rasa.triggered() == []
    assert scheduled(redis_client) == {} and followups.pending(redis_client, CONVERSATION) == {}


# --- the close of a silent thread ----------------------------------------------------------------
def test_a_silent_thread_is_closed_with_the_final_message(env, rasa, redis_client, tmp_path):
    write_config(tmp_path, reask={"max_reasks": 0, "escalate": False}, thread={"timeout_seconds": 1})
    question_waits(rasa, redis_client, "wamid.A")
    assert set(scheduled(redis_client)) == {followups.close_job_id(CONVERSATION, "wamid.A")}
    sleep_until_due(redis_client, followups.close_job_id(CONVERSATION, "wamid.A"))

    run_burst(env)

    [call] = rasa.triggered()
    assert (call["intent"], call["entities"], call["output_channel"]) == (
        followups.CLOSE_INTENT, {followups.ANCHOR: "wamid.A"}, "latest")
    assert rasa.said_to(CONVERSATION) == ["utter_ask_store", "utter_thread_timeout"]
    tracker = rasa.trackers[CONVERSATION]
    assert tracker["active_loop"] is None
    assert tracker["slots"]["requested_slot"] is None and tracker["slots"]["store"] is None
    assert followups.pending(redis_client, CONVERSATION) == {}


def test_the_close_after_an_answered_thread_sends_nothing(env, rasa, redis_client):
    from workers.followup_jobs import close_thread

    question_waits(rasa, redis_client, "wamid.A")
    rasa.user_writes(CONVERSATION, "wamid.B", asks=None)  # on the tracker, Redis not updated yet

    assert close_thread(CONVERSATION, "wamid.A") == "closed"
    assert rasa.said_to(CONVERSATION) == ["utter_ask_store"]
    assert followups.pending(redis_client, CONVERSATION) == {}
