"""Retention's side of the tracker store (store.py): events older than the limit cut from the
head of a conversation's list. Synchronous (an RQ job) and without Rasa, which the workers do
not load."""
import json
from typing import Iterable, Tuple

import redis

from helpdesk import redis_keys

# KEYS: events, meta. ARGV: how many events to drop from the head, the JSON of the last of
# them as read (the list changed meanwhile otherwise: nothing done, returns -1). Returns the
# events left.
_TRIM = """
local count = tonumber(ARGV[1])
if redis.call('LINDEX', KEYS[1], count - 1) ~= ARGV[2] then return -1 end
redis.call('LTRIM', KEYS[1], count, -1)
redis.call('HINCRBY', KEYS[2], 'trimmed', count)
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[2]) end
return left
"""


def trim_before(client: redis.Redis, sender_id: str, cutoff: float, batch: int = 500) -> Tuple[int, int]:
    """Remove the events older than `cutoff` from the head of a conversation's list: (events
    removed, events left); the conversation is deleted when none is left. A conversation saved
    meanwhile is left for the next run: (0, -1)."""
    key = redis_keys.tracker_events(sender_id)
    count, last = 0, None
    while True:
        chunk = client.lrange(key, count, count + batch - 1)
        if not chunk:
            break
        for raw in chunk:
            if (json.loads(raw).get("timestamp") or 0) >= cutoff:
                break
            count, last = count + 1, raw
        else:
            continue
        break
    if count == 0:
        return 0, int(client.llen(key))
    left = client.eval(_TRIM, 2, key, redis_keys.tracker_meta(sender_id), count, last)
    if int(left) < 0:
        return 0, -1
    return count, int(left)


def conversations(client: redis.Redis, batch: int = 500) -> Iterable[str]:
    """The conversation ids this store holds (SCAN over the meta hashes)."""
    prefix = redis_keys.tracker_meta("")
    for key in client.scan_iter(match=redis_keys.tracker_meta_pattern(), count=batch):
        yield (key.decode() if isinstance(key, bytes) else key)[len(prefix):]
