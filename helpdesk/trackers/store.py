"""Rasa's tracker store for this project: each conversation's events as a Redis list, appended to.

Why not Rasa's own stores (numbers in bench/README.md, "History"): Rasa's `RedisTrackerStore`
keeps a conversation as one JSON document; every save reads it back, deserialises every event
and compares each new event with each stored one (`_merge_trackers`), synchronously on the
server's only event loop, so a turn costs more with every message the user ever sent. Rasa's
`SQLTrackerStore` reads only the current session and appends only new events, but a session
(24 hours here) of a busy chat still grows without bound, and its SQLAlchemy calls block the
loop too.

Here:
- `save` appends only the events added since the tracker was read (`RPUSH`, one Lua script
  that also records where the current session starts and the state after the last event).
- `retrieve` reads the current session, and of a long session only its last `window_events`
  events, cut at a turn's start (`action_listen`), preceded by events that restore the state
  at that point's end (slots, the active form, a pause), marked `WINDOW_MARK` in their
  metadata and never stored. Those events are the state after the *last* stored event; the
  events of the window then set again everything they change, so the tracker's state after
  the window is exact; only states older than the window (beyond every policy's history,
  MemoizationPolicy's is 4 turns) can differ from the conversation's.
- `retrieve_full_tracker` reads everything (`GET /conversations/<id>/tracker`,
  `include_events=ALL`: a designer reads a whole old conversation).
- Redis I/O is asynchronous (redis.asyncio) and turning JSON into events runs in a thread, so a
  read or a write never holds the event loop for the other conversations.
- The tracker a save leaves is kept (the last `LATEST_CACHED` conversations): while nothing
  was saved since (its version in the meta hash, checked by every read), `retrieve` hands it to
  the next turn instead of reading and parsing the window again (re-read once it holds
  `REREAD_AFTER` windows), and `latest` lends it to the channel and the follow-ups for
  reading, so in the steady state a turn loads nothing. Another process's save (several Rasa
  servers) bumps the version, and the next read loads. A kept tracker that gained events
  since (a turn that stopped before its save) is not used: the next read loads.
- A conversation Rasa's Redis store kept (`<key_prefix>:tracker:<sender>`, the layout before
  this store) is moved into the list the first time it is read (`migrate`), and
  `python -m helpdesk.trackers migrate` moves them all at once.
- Retention (workers/retention_jobs.py) removes events older than the limit from the head of
  the list (retention.py).
"""
import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Text, Tuple

import redis.asyncio as aioredis
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import TrackerStore
from rasa.shared.core.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event
from rasa.shared.core.trackers import DialogueStateTracker

from helpdesk import redis_keys

logger = logging.getLogger(__name__)

WINDOW_MARK = "helpdesk_window"  # metadata key of the state-restoring events of a window
DEFAULT_WINDOW_EVENTS = 100
# the tracker handed from turn to turn is read afresh (windowed again) once it holds this many
# windows: Rasa's cost per turn grows with the events a tracker holds (bench/README.md "History")
REREAD_AFTER = 1.5
DEFAULT_LEGACY_PREFIX = "tracker"  # endpoints.yml's key_prefix of Rasa's Redis store, before
LATEST_CACHED = 256  # trackers `latest` keeps (the last saved, per conversation)
LOADED = "_helpdesk_loaded"  # attribute set on a tracker read or saved here: (version, events)

# KEYS: events, meta. ARGV: state, expiry seconds (0: none), index of the last session start
# among the new events (-1: none), then the new events. Returns the new version.
_APPEND = """
local length = redis.call('LLEN', KEYS[1])
local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
local start = tonumber(ARGV[3])
for i = 4, #ARGV, 1000 do  -- in chunks: Lua's unpack stops at a few thousand values
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if start >= 0 then
  redis.call('HSET', KEYS[2], 'start', trimmed + length + start)
end
redis.call('HSET', KEYS[2], 'state', ARGV[1])
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
local expiry = tonumber(ARGV[2])
if expiry > 0 then
  redis.call('EXPIRE', KEYS[2], expiry)
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], expiry) end
end
return version
"""

# KEYS: events, meta. ARGV: state, expiry, index of the last session start (-1: none), then
# every event. Replaces the conversation's events. Returns the new version.
_REPLACE = """
local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
redis.call('DEL', KEYS[1])
for i = 4, #ARGV, 1000 do  -- in chunks: Lua's unpack stops at a few thousand values
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local start = tonumber(ARGV[3])
if start < 0 then start = 0 end
redis.call('HSET', KEYS[2], 'start', trimmed + start, 'state', ARGV[1])
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
local expiry = tonumber(ARGV[2])
if expiry > 0 then
  redis.call('EXPIRE', KEYS[2], expiry)
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], expiry) end
end
return version
"""

@dataclass
class Stored:
    """What the meta hash says of a conversation."""

    start: int = 0  # absolute index of the current session's first event
    trimmed: int = 0  # events removed from the head by retention
    version: int = 0
    state: Optional[Dict[str, Any]] = None

    @classmethod
    def parse(cls, values: List[Optional[bytes]]) -> "Stored":
        start, trimmed, version, state = values
        return cls(start=int(start or 0), trimmed=int(trimmed or 0), version=int(version or 0),
                   state=json.loads(state) if state else None)


def legacy_key(prefix: str, sender_id: str) -> str:
    """Where Rasa's `RedisTrackerStore` kept a conversation: "<prefix>:tracker:<sender>"
    ("tracker:<sender>" when the prefix is not alphanumeric, as Rasa does)."""
    return f"{prefix}:tracker:{sender_id}" if prefix.isalnum() else f"tracker:{sender_id}"


def state_of(tracker: DialogueStateTracker) -> Dict[str, Any]:
    """The state a window restores: slots that differ from their initial value, the active
    form, a pause."""
    slots = {name: slot.value for name, slot in tracker.slots.items()
             if slot.value != slot.initial_value}
    return {"slots": slots, "active_loop": tracker.active_loop_name,
            "paused": tracker.is_paused()}


def state_events(state: Optional[Dict[str, Any]], timestamp: float) -> List[Dict[str, Any]]:
    """Event dicts that put a tracker into `state` (marked, never stored)."""
    if not state:
        return []
    mark = {WINDOW_MARK: True}
    events: List[Dict[str, Any]] = [
        {"event": "slot", "name": name, "value": value, "timestamp": timestamp, "metadata": mark}
        for name, value in (state.get("slots") or {}).items()]
    if state.get("active_loop"):
        events.append({"event": "active_loop", "name": state["active_loop"],
                       "timestamp": timestamp, "metadata": mark})
    if state.get("paused"):
        events.append({"event": "pause", "timestamp": timestamp, "metadata": mark})
    return events


def is_window_event(event: Any) -> bool:
    metadata = event.get("metadata") if isinstance(event, dict) else getattr(event, "metadata", None)
    return bool(metadata) and bool(metadata.get(WINDOW_MARK))


def session_start_index(events: List[Dict[str, Any]]) -> int:
    """Index of the last `action_session_start` in `events`, -1 without one."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("event") == "action" and event.get("name") == ACTION_SESSION_START_NAME:
            return index
    return -1


def window_start(events: List[Dict[str, Any]]) -> int:
    """Where a window of `events` begins: its first `action_listen` (a turn's start)."""
    for index, event in enumerate(events):
        if event.get("event") == "action" and event.get("name") == ACTION_LISTEN_NAME:
            return index
    return 0


def parse_events(raw: Iterable[bytes]) -> List[Dict[str, Any]]:
    """The list's JSON objects, parsed in one call."""
    return json.loads(b"[" + b",".join(raw) + b"]")


def dump(event: Dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


class EventLogTrackerStore(TrackerStore):
    """Rasa's `TrackerStore` over a Redis list per conversation (see the module's text).

    endpoints.yml: `type: helpdesk.trackers.EventLogTrackerStore` with Rasa's Redis keys
    (`url`, `port`, `db`, `password`), `record_exp` (seconds a silent conversation is kept),
    `window_events` and `legacy_key_prefix` (the `key_prefix` Rasa's Redis store had)."""

    def __init__(self, domain: Optional[Domain] = None, host: Text = "localhost",
                 port: int = 6379, db: int = 0, password: Optional[Text] = None,
                 username: Optional[Text] = None, event_broker: Optional[EventBroker] = None,
                 record_exp: Optional[float] = None, window_events: int = DEFAULT_WINDOW_EVENTS,
                 legacy_key_prefix: Text = DEFAULT_LEGACY_PREFIX, **kwargs: Any) -> None:
        super().__init__(domain, event_broker, **kwargs)
        options = dict(host=host or "localhost", port=int(port or 6379), db=int(db or 0),
                       username=username or None, password=password or None)
        self.redis = aioredis.Redis(**options)
        self.record_exp = int(float(record_exp)) if record_exp else 0
        self.window_events = int(window_events)
        if self.window_events < 10:
            raise ValueError(f"window_events must be 10 or more, not {window_events}")
        self.legacy_prefix = str(legacy_key_prefix or DEFAULT_LEGACY_PREFIX)
        self._append = self.redis.register_script(_APPEND)
        self._replace = self.redis.register_script(_REPLACE)
        # per conversation: (version, tracker, its event count and last event when kept)
        self._latest: "OrderedDict[str, Tuple[int, DialogueStateTracker, int, Any]]" = \
            OrderedDict()

    # --- reading --------------------------------------------------------------------------
    async def _stored(self, sender_id: str) -> Tuple[Stored, int]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(redis_keys.tracker_meta(sender_id), "start", "trimmed", "version", "state")
            pipe.llen(redis_keys.tracker_events(sender_id))
            meta, length = await pipe.execute()
        return Stored.parse(meta), int(length)

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The current session; of a long one, its last `window_events` events after the
        state they start from."""
        stored, length = await self._stored(sender_id)
        cached = self._latest.get(sender_id)
        if (cached is not None and cached[0] == stored.version and length
                and _untouched(cached)
                and len(cached[1].events) <= self.window_events * REREAD_AFTER):
            # what this process's last save left, unchanged since: handed over, not copied
            # (the caller adds to it and saves it, which caches it again)
            del self._latest[sender_id]
            return cached[1]
        if length == 0:
            if not await self.migrate(sender_id):
                return None
            stored, length = await self._stored(sender_id)
        first = max(0, stored.start - stored.trimmed)
        windowed = length - first > self.window_events
        if windowed:
            first = length - self.window_events
        raw = await self.redis.lrange(redis_keys.tracker_events(sender_id), first, length - 1)
        return await asyncio.to_thread(self._build, sender_id, raw, stored, windowed)

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        """Every event kept, of every session."""
        stored, length = await self._stored(conversation_id)
        if length == 0:
            if not await self.migrate(conversation_id):
                return None
            stored, length = await self._stored(conversation_id)
        raw = await self.redis.lrange(redis_keys.tracker_events(conversation_id), 0, -1)
        return await asyncio.to_thread(self._build, conversation_id, raw, stored, False)

    def _build(self, sender_id: str, raw: List[bytes], stored: Stored,
               windowed: bool) -> Optional[DialogueStateTracker]:
        events = parse_events(raw)
        if windowed:
            events = events[window_start(events):]
            stamp = events[0].get("timestamp") if events else None
            events = state_events(stored.state, stamp or 0.0) + events
        if not events:
            return None
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots,
                                                 self.max_event_history)
        setattr(tracker, LOADED, (stored.version, len(tracker.events)))
        return tracker

    async def latest(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        """The tracker as this process last saved or read it, if nothing was saved since (by
        any process); else read. Read-only: never pass it to `save`."""
        cached = self._latest.get(sender_id)
        if cached is not None and _untouched(cached):
            version = await self.redis.hget(redis_keys.tracker_meta(sender_id), "version")
            if version is not None and int(version) == cached[0]:
                self._latest.move_to_end(sender_id)
                return cached[1]
        tracker = await self.retrieve(sender_id)
        if tracker is not None:
            self._remember(sender_id, tracker)
        return tracker

    def _remember(self, sender_id: str, tracker: DialogueStateTracker) -> None:
        version = getattr(tracker, LOADED)[0]
        events = tracker.events
        self._latest[sender_id] = (version, tracker, len(events), events[-1] if events else None)
        self._latest.move_to_end(sender_id)
        while len(self._latest) > LATEST_CACHED:
            self._latest.popitem(last=False)

    async def keys(self) -> Iterable[Text]:
        prefix = redis_keys.tracker_meta("")
        found = [key.decode()[len(prefix):] async for key in
                 self.redis.scan_iter(match=redis_keys.tracker_meta_pattern(), count=500)]
        legacy = legacy_key(self.legacy_prefix, "")
        found += [key.decode()[len(legacy):] async for key in
                  self.redis.scan_iter(match=legacy + "*", count=500)]
        return sorted(set(found))

    async def exists(self, conversation_id: Text) -> bool:
        return bool(await self.redis.exists(redis_keys.tracker_events(conversation_id),
                                            legacy_key(self.legacy_prefix, conversation_id)))

    # --- writing --------------------------------------------------------------------------
    async def save(self, tracker: DialogueStateTracker) -> None:
        """Append the events added since `tracker` was read here; a tracker from elsewhere
        (a replaced history: `PUT /conversations/<id>/tracker/events`, `rasa interactive`'s
        undo) continues after the last stored event it holds, or replaces the history."""
        sender = tracker.sender_id
        loaded = getattr(tracker, LOADED, None)
        stored, length = await self._stored(sender)
        events = list(tracker.events)
        replace = False
        if loaded is not None and loaded[0] == stored.version:
            new = events[loaded[1]:]
        elif length == 0 and not await self.migrate(sender):
            new = events
        else:
            last = await self.redis.lindex(redis_keys.tracker_events(sender), -1)
            position = _position_of(events, json.loads(last)) if last else None
            if position is None:
                logger.info("tracker history replaced", extra={"conversation_id": sender,
                                                               "events": len(events)})
                new, replace = events, True
            else:
                new = events[position + 1:]
        dicts = [event.as_dict() for event in new if not is_window_event(event)]
        state = json.dumps(state_of(tracker), ensure_ascii=False)
        args = [state, self.record_exp, session_start_index(dicts)] + [dump(e) for e in dicts]
        script = self._replace if replace else self._append
        version = await script(keys=[redis_keys.tracker_events(sender),
                                     redis_keys.tracker_meta(sender)], args=args)
        setattr(tracker, LOADED, (int(version), len(events)))
        if args[2] < 0:
            self._remember(sender, tracker)
        else:
            # a session started: the next read gives only the new one, as Rasa's stores do
            self._latest.pop(sender, None)
        if self.event_broker is not None:
            await self._stream_new_events(self.event_broker, [e for e in new if not
                                                              is_window_event(e)], sender)

    async def stream_events(self, tracker: DialogueStateTracker) -> None:
        """Done by `save`, which knows the new events without reading the tracker again."""

    # --- moving Rasa's Redis trackers in --------------------------------------------------
    async def migrate(self, sender_id: Text) -> bool:
        """Move the conversation Rasa's Redis store kept into the list; False without one."""
        key = legacy_key(self.legacy_prefix, sender_id)
        raw = await self.redis.get(key)
        if raw is None:
            return False
        events = json.loads(raw).get("events") or []
        tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        ttl = await self.redis.ttl(key)
        expiry = ttl if ttl and ttl > 0 else self.record_exp
        args = [json.dumps(state_of(tracker), ensure_ascii=False), expiry,
                session_start_index(events)] + [dump(e) for e in events]
        await self._replace(keys=[redis_keys.tracker_events(sender_id),
                                  redis_keys.tracker_meta(sender_id)], args=args)
        await self.redis.delete(key)
        logger.info("tracker moved from Rasa's Redis store",
                    extra={"conversation_id": sender_id, "events": len(events)})
        return True

    async def migrate_all(self) -> int:
        """Move every conversation Rasa's Redis store kept; how many."""
        prefix = legacy_key(self.legacy_prefix, "")
        moved = 0
        async for key in self.redis.scan_iter(match=prefix + "*", count=500):
            if await self.migrate(key.decode()[len(prefix):]):
                moved += 1
        return moved

    async def close(self) -> None:
        await self.redis.close()


def _untouched(cached: Tuple[int, DialogueStateTracker, int, Any]) -> bool:
    """Whether a kept tracker still holds only what was saved or read. Rasa goes on adding to
    the tracker it created (its store saves a new conversation's tracker, then the turn adds
    the session start and the message): a turn that stops before its save (the action server
    out of reach, an error) leaves events on it that are stored nowhere."""
    _version, tracker, count, last = cached
    events = tracker.events
    return len(events) == count and (events[-1] if events else None) is last


def _position_of(events: List[Event], stored_last: Dict[str, Any]) -> Optional[int]:
    """Index of the event equal to `stored_last` in `events`, searched from the end (the new
    events of a turn are few)."""
    for index in range(len(events) - 1, -1, -1):
        if json.loads(dump(events[index].as_dict())) == stored_last:
            return index
    return None
