"""Retention on the tracker store's lists (helpdesk/trackers/retention.py): the head older than
the limit goes, the current session still reads right, an emptied conversation is deleted."""
from helpdesk import redis_keys
from helpdesk.trackers import trim_before
from rasa.shared.core.events import SlotSet, UserUttered

from tests.helpdesk.trackers.test_store import Clock, play, run, session_start, store_for, turn


def test_retention_trims_the_head_and_the_session_still_reads_right(redis_url, redis_client):
    clock = Clock()
    old = [session_start(clock), turn(clock, 1)]
    clock.now += 100 * 86400
    cutoff = clock.now
    young = [session_start(clock), turn(clock, 2, SlotSet("store", "9", timestamp=clock())), turn(clock, 3)]

    async def scenario(store):
        await play(store, "c8", old + young)

    store = store_for(redis_url)
    run(scenario(store))
    removed, left = trim_before(redis_client, "c8", cutoff)
    old_count = sum(len(events) for events in old)
    assert (removed, left) == (old_count, sum(len(events) for events in young))

    async def read():
        store = store_for(redis_url)
        tracker = await store.retrieve("c8")
        tracker.update(UserUttered("de nuevo", {"name": "greet"}, timestamp=clock()))
        await store.save(tracker)
        return tracker, await store.retrieve_full_tracker("c8")

    tracker, full = run(read())
    assert [e.text for e in tracker.events if isinstance(e, UserUttered)] == [
        "mensaje 2", "mensaje 3", "de nuevo"]
    assert tracker.get_slot("store") == "9"
    assert [e.text for e in full.events if isinstance(e, UserUttered)] == [
        "mensaje 2", "mensaje 3", "de nuevo"]
    # all of it old: the conversation is gone
    assert trim_before(redis_client, "c8", clock() + 1)[1] == 0
    assert not redis_client.exists(redis_keys.tracker_events("c8"), redis_keys.tracker_meta("c8"))
