"""The tracker store (helpdesk/trackers/store.py) against a real Redis and the project's domain:
what Rasa saves is read back as Rasa's own stores would give it, a long session is read as a
window whose state is exact, and nothing is stored twice or lost."""
import asyncio
import json
from pathlib import Path
from typing import List

import pytest
import redis
from rasa.core.tracker_store import InMemoryTrackerStore, RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
    UserUtteranceReverted,
)
from rasa.shared.core.trackers import DialogueStateTracker

from helpdesk import redis_keys
from helpdesk.launch import redis_env
from helpdesk.trackers import EventLogTrackerStore, latest_tracker, trim_before
from helpdesk.trackers import WINDOW_MARK, legacy_key

PROJECT = Path(__file__).resolve().parents[3]
DOMAIN = Domain.load(str(PROJECT / "domain.yml"))


def store_for(redis_url: str, **options) -> EventLogTrackerStore:
    env = redis_env(redis_url)
    return EventLogTrackerStore(domain=DOMAIN, host=env["REDIS_HOST"], port=env["REDIS_PORT"],
                                db=env["REDIS_DB"], password=env["REDIS_PASSWORD"], **options)


def run(coroutine):
    return asyncio.run(coroutine)


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self, step: float = 1.0) -> float:
        self.now += step
        return self.now


def session_start(clock: Clock) -> List[Event]:
    return [ActionExecuted("action_session_start", timestamp=clock()),
            SessionStarted(timestamp=clock()), ActionExecuted("action_listen", timestamp=clock())]


def turn(clock: Clock, number: int, *extra: Event) -> List[Event]:
    """A user message, what the bot did, and listening again."""
    return [UserUttered(f"mensaje {number}", {"name": "greet", "confidence": 1.0},
                        timestamp=clock(), message_id=f"m{number}"),
            *extra,
            ActionExecuted("utter_greet", timestamp=clock()),
            BotUttered(f"respuesta {number}", timestamp=clock()),
            ActionExecuted("action_listen", timestamp=clock())]


def stored_events(client: redis.Redis, sender: str) -> List[dict]:
    return [json.loads(raw) for raw in client.lrange(redis_keys.tracker_events(sender), 0, -1)]


def dicts(events) -> List[dict]:
    return [json.loads(json.dumps(event.as_dict())) for event in events]


def state(tracker: DialogueStateTracker) -> dict:
    return {"slots": tracker.current_slot_values(), "loop": tracker.active_loop_name,
            "paused": tracker.is_paused(), "latest": tracker.latest_message.text,
            "action": tracker.latest_action_name}


async def play(store: EventLogTrackerStore, sender: str, turns: List[List[Event]]) -> DialogueStateTracker:
    """Each turn as Rasa's processor does it: read (or create), add the turn's events, save."""
    tracker = None
    for events in turns:
        tracker = await store.retrieve(sender) or store.init_tracker(sender)
        for event in events:
            tracker.update(event)
        await store.save(tracker)
    return tracker


def test_what_is_saved_is_read_back_and_stored_once(redis_url, redis_client):
    clock = Clock()
    turns = [session_start(clock)] + [turn(clock, n) for n in range(5)]
    everything = [event for events in turns for event in events]

    async def scenario():
        store = store_for(redis_url)
        await play(store, "c1", turns)
        return await store.retrieve("c1"), await store.retrieve_full_tracker("c1")

    current, full = run(scenario())
    assert dicts(current.events) == dicts(everything)
    assert dicts(full.events) == dicts(everything)
    # every event once, in order: each save appended only its own turn
    assert stored_events(redis_client, "c1") == dicts(everything)


def test_a_turn_reads_only_the_current_session(redis_url, redis_client):
    clock = Clock()
    first = [session_start(clock), turn(clock, 1, SlotSet("store", "12", timestamp=clock()))]
    second = [session_start(clock), turn(clock, 2)]

    async def scenario():
        store = store_for(redis_url)
        await play(store, "c2", first + second)
        return await store.retrieve("c2"), await store.retrieve_full_tracker("c2")

    current, full = run(scenario())
    assert [e.text for e in current.events if isinstance(e, UserUttered)] == ["mensaje 2"]
    assert [e.text for e in full.events if isinstance(e, UserUttered)] == ["mensaje 1", "mensaje 2"]
    # as Rasa's Redis store reads the same history
    reference = RedisTrackerStore(DOMAIN, **_rasa_redis(redis_url), key_prefix="reference")
    tracker = DialogueStateTracker.from_events("c2", full.events, DOMAIN.slots)
    run(reference.save(tracker))
    assert dicts(run(reference.retrieve("c2")).events) == dicts(current.events)


def _rasa_redis(redis_url: str) -> dict:
    env = redis_env(redis_url)
    return {"host": env["REDIS_HOST"], "port": int(env["REDIS_PORT"]),
            "db": int(env["REDIS_DB"]), "password": env["REDIS_PASSWORD"]}


def test_a_long_session_is_read_as_a_window_with_the_exact_state(redis_url, redis_client):
    clock = Clock()
    turns = [session_start(clock),
             turn(clock, 0, SlotSet("store", "12", timestamp=clock()),
                  SlotSet("system", "pos", timestamp=clock()))]
    turns += [turn(clock, n) for n in range(1, 150)]
    turns.append(turn(clock, 150, ActiveLoop("ticket_form", timestamp=clock()),
                      SlotSet("requested_slot", "description", timestamp=clock()),
                      SlotSet("system", "balanza", timestamp=clock())))
    turns += [turn(clock, n) for n in range(151, 200)]
    turns.append([ConversationPaused(timestamp=clock())] + turn(clock, 200))
    everything = [event for events in turns for event in events]
    whole = DialogueStateTracker.from_events("c3", everything, DOMAIN.slots)

    async def scenario():
        store = store_for(redis_url, window_events=60)
        await play(store, "c3", turns)
        fresh = store_for(redis_url, window_events=60)  # reads: nothing handed on
        return await fresh.retrieve("c3"), await fresh.retrieve_full_tracker("c3")

    window, full = run(scenario())
    assert state(window) == state(whole)
    assert window.get_slot("store") == "12"  # set 200 turns before the window
    assert window.get_slot("system") == "balanza"
    real = [event for event in window.events if not (event.metadata or {}).get(WINDOW_MARK)]
    assert len(real) <= 60
    assert isinstance(real[0], ActionExecuted) and real[0].action_name == "action_listen"
    assert dicts(real) == dicts(everything[-len(real):])
    # the whole conversation is still there for a designer, and nothing was stored twice
    assert dicts(full.events) == dicts(everything)
    assert stored_events(redis_client, "c3") == dicts(everything)


def test_a_revert_inside_the_window_keeps_the_state_exact(redis_url, redis_client):
    clock = Clock()
    turns = [session_start(clock), turn(clock, 0, SlotSet("store", "7", timestamp=clock()))]
    turns += [turn(clock, n) for n in range(1, 40)]
    turns.append([UserUttered("otra cosa", {"name": "nlu_fallback"}, timestamp=clock()),
                  SlotSet("person", "Ana", timestamp=clock()),
                  UserUtteranceReverted(timestamp=clock())])
    everything = [event for events in turns for event in events]
    whole = DialogueStateTracker.from_events("c4", everything, DOMAIN.slots)

    async def scenario():
        store = store_for(redis_url, window_events=30)
        await play(store, "c4", turns)
        return await store.retrieve("c4")

    window = run(scenario())
    assert state(window) == state(whole)
    assert window.get_slot("person") is None and window.get_slot("store") == "7"


def test_a_tracker_from_elsewhere_continues_or_replaces_the_history(redis_url, redis_client):
    """`PUT /conversations/<id>/tracker/events` and rasa interactive's undo save trackers the
    store did not read: more events continue the history, fewer replace it."""
    clock = Clock()
    turns = [session_start(clock), turn(clock, 1), turn(clock, 2)]
    everything = [event for events in turns for event in events]
    more = turn(clock, 3)

    async def scenario():
        store = store_for(redis_url)
        await play(store, "c5", turns)
        await store.save(DialogueStateTracker.from_events("c5", everything + more, DOMAIN.slots))
        continued = stored_events(redis_client, "c5")
        await store.save(DialogueStateTracker.from_events("c5", everything[:-5], DOMAIN.slots))
        return continued, stored_events(redis_client, "c5"), await store.retrieve("c5")

    continued, replaced, tracker = run(scenario())
    assert continued == dicts(everything + more)
    assert replaced == dicts(everything[:-5])
    assert dicts(tracker.events) == dicts(everything[:-5])


def test_rasa_redis_trackers_are_moved_in_on_first_read(redis_url, redis_client):
    clock = Clock()
    everything = session_start(clock) + turn(clock, 1, SlotSet("store", "3", timestamp=clock()))
    legacy = RedisTrackerStore(DOMAIN, **_rasa_redis(redis_url), key_prefix="tracker",
                               record_exp=5000)
    run(legacy.save(DialogueStateTracker.from_events("c6", everything, DOMAIN.slots)))
    assert redis_client.exists(legacy_key("tracker", "c6"))

    async def scenario():
        store = store_for(redis_url)
        assert await store.exists("c6")
        tracker = await store.retrieve("c6")
        tracker.update(UserUttered("hola", {"name": "greet"}, timestamp=clock()))
        await store.save(tracker)
        return tracker

    tracker = run(scenario())
    assert tracker.get_slot("store") == "3"
    assert not redis_client.exists(legacy_key("tracker", "c6"))
    assert stored_events(redis_client, "c6") == dicts(tracker.events)
    assert 0 < redis_client.ttl(redis_keys.tracker_events("c6")) <= 5000


def test_migrate_all_moves_every_old_conversation(redis_url, redis_client):
    clock = Clock()
    legacy = RedisTrackerStore(DOMAIN, **_rasa_redis(redis_url), key_prefix="tracker")
    for sender in ("a", "b", "c"):
        run(legacy.save(DialogueStateTracker.from_events(sender, session_start(clock), DOMAIN.slots)))

    async def scenario():
        store = store_for(redis_url)
        return await store.migrate_all(), sorted(await store.keys())

    moved, keys = run(scenario())
    assert moved == 3 and keys == ["a", "b", "c"]
    assert not list(redis_client.scan_iter(match="tracker:tracker:*"))


def test_latest_is_what_the_last_save_left_until_another_process_saves(redis_url, redis_client):
    clock = Clock()

    class Agent:
        def __init__(self, store):
            self.tracker_store = store

    async def scenario():
        here, there = store_for(redis_url), store_for(redis_url)
        saved = await play(here, "c7", [session_start(clock), turn(clock, 1)])
        same = await latest_tracker(Agent(here), "c7")
        await play(there, "c7", [turn(clock, 2)])  # another Rasa server's turn
        after = await latest_tracker(Agent(here), "c7")
        return saved, same, after

    saved, same, after = run(scenario())
    assert same is saved  # no read: nothing changed since this process saved it
    assert after is not saved
    assert [e.text for e in after.events if isinstance(e, UserUttered)] == ["mensaje 1", "mensaje 2"]


def test_the_inmemory_store_agrees_on_a_short_conversation(redis_url, redis_client):
    """Rasa's reference store and ours give the same tracker for the same turns."""
    clock = Clock()
    turns = [session_start(clock), turn(clock, 1, ActiveLoop("ticket_form", timestamp=clock())),
             [ConversationPaused(timestamp=clock()), ConversationResumed(timestamp=clock())]]

    async def scenario():
        ours, theirs = store_for(redis_url), InMemoryTrackerStore(DOMAIN)
        return await play(ours, "c9", turns), await play(theirs, "c9", turns)

    ours, theirs = run(scenario())
    assert dicts(ours.events) == dicts(theirs.events) and state(ours) == state(theirs)


def test_the_next_turn_gets_what_the_last_save_left_and_a_failed_turn_leaves_nothing(redis_url, redis_client):
    clock = Clock()

    async def scenario():
        store = store_for(redis_url)
        saved = await play(store, "c10", [session_start(clock), turn(clock, 1)])
        handed = await store.retrieve("c10")  # nothing saved since: no read
        for event in turn(clock, 2):
            handed.update(event)  # a turn that fails before Rasa saves it
        after_failure = await store.retrieve("c10")
        return saved, handed, after_failure

    saved, handed, after_failure = run(scenario())
    assert handed is saved
    assert after_failure is not handed  # read again: the failed turn's events are not there
    assert [e.text for e in after_failure.events if isinstance(e, UserUttered)] == ["mensaje 1"]
    assert len(stored_events(redis_client, "c10")) == len(after_failure.events)


def test_a_new_conversations_turn_that_stops_before_its_save_leaves_nothing(redis_url,
                                                                            redis_client):
    """Rasa saves a new conversation's tracker when it creates it, then goes on adding the
    session start and the message to that same object: a turn that stops before its own save
    (the action server out of reach) must not leave them in what `latest` or `retrieve`
    give, or the message looks handled and its re-run is skipped."""
    clock = Clock()

    class Agent:
        def __init__(self, store):
            self.tracker_store = store

    async def scenario():
        store = store_for(redis_url)
        created = await store.get_or_create_tracker("c12")  # saved, with action_listen
        for event in session_start(clock) + turn(clock, 1):
            created.update(event)  # the turn, never saved
        read = await latest_tracker(Agent(store), "c12")
        handed = await store.retrieve("c12")
        return created, read, handed

    created, read, handed = run(scenario())
    assert read is not created and handed is not created
    assert [e for e in read.events if isinstance(e, UserUttered)] == []
    assert [e for e in handed.events if isinstance(e, UserUttered)] == []
    assert len(stored_events(redis_client, "c12")) == 1  # the creation's action_listen


def test_a_long_lived_tracker_is_windowed_again(redis_url, redis_client):
    """The tracker handed from turn to turn grows; past one and a half windows it is read
    afresh."""
    clock = Clock()

    async def scenario():
        store = store_for(redis_url, window_events=30)
        await play(store, "c11", [session_start(clock)])
        seen, sizes = set(), []
        for number in range(40):
            tracker = await store.retrieve("c11")
            seen.add(id(tracker))
            sizes.append(len(tracker.events))
            for event in turn(clock, number):
                tracker.update(event)
            await store.save(tracker)
        return seen, sizes, tracker, await store.retrieve_full_tracker("c11")

    seen, sizes, last, full = run(scenario())
    assert len(seen) > 1  # read afresh now and then
    assert max(sizes) <= 1.5 * 30 + 4  # never more than REREAD_AFTER windows (and a turn)
    assert state(last) == state(full)
    assert len(stored_events(redis_client, "c11")) == 3 + 40 * 4  # each event once


def test_a_history_of_ten_thousand_events_is_saved_and_moved_whole(redis_url, redis_client):
    """One save of more events than Lua's unpack takes at once (a legacy tracker moved in, a
    replaced history)."""
    clock = Clock()
    everything = session_start(clock)
    for number in range(2600):
        everything += turn(clock, number)
    legacy = RedisTrackerStore(DOMAIN, **_rasa_redis(redis_url), key_prefix="tracker")
    run(legacy.save(DialogueStateTracker.from_events("c12", everything, DOMAIN.slots)))

    async def scenario():
        store = store_for(redis_url)
        return await store.retrieve("c12")

    window = run(scenario())
    assert len(stored_events(redis_client, "c12")) == len(everything) > 10_000
    assert window.latest_message.text == "mensaje 2599"
