"""The per-chat ordered outbox: WhatsApp messages waiting to be delivered.

A message that cannot be sent now (gateway down, 5xx, rate limit) waits here, behind any
older message for the same chat, and is retried with growing waits until delivered. Anyone
may enqueue (the channel after failed quick retries, workers and actions through
`helpdesk.whatsapp.send`); the Rasa server's drainer delivers (connectors/whatsapp/output.py).

Layout: one Redis list per chat (oldest first) plus one sorted set of lists by the time of
their next attempt. A lock per chat makes one drainer deliver a chat at a time, whatever
the number of processes. Scripts keep "append + schedule" and "remove + unschedule if
empty" atomic, so no message is ever left in an unscheduled list.
"""
import json
import time
import uuid
from typing import Any, Dict, List, Optional

from helpdesk import redis_keys

# KEYS: list, due zset.  ARGV: message json, now
_PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[2]), KEYS[1])
return redis.call('LLEN', KEYS[1])
"""
# KEYS: list, due zset.  ARGV: the message json expected at the head
_POP = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], KEYS[1]) end
return redis.call('LLEN', KEYS[1])
"""
# KEYS: list.  ARGV: old head json, new head json (the head with its attempt count raised)
_REPLACE_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LSET', KEYS[1], 0, ARGV[2]) end
return 1
"""

# KEYS: lock.  ARGV: token, seconds
_EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""
# KEYS: lock.  ARGV: token
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
LOCK_SECONDS = 60

# KEYS: list, due zset, parked stream.  ARGV: the message json expected at the head, reason,
# now. The head moves to the parked log in one step; nil when the head is another message.
_PARK_HEAD = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return false end
redis.call('LPOP', KEYS[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], KEYS[1]) end
return redis.call('XADD', KEYS[3], '*', 'm', ARGV[1], 'reason', ARGV[2], 'parked_at', ARGV[3])
"""


def encode(message: Dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def outbox_key(message: Dict[str, Any]) -> str:
    return redis_keys.outbox(message["channel"], message["chat_id"])


class AsyncOutbox:
    def __init__(self, client: Any) -> None:
        self.client = client
        self._push = client.register_script(_PUSH)
        self._pop = client.register_script(_POP)
        self._replace = client.register_script(_REPLACE_HEAD)
        self._extend = client.register_script(_EXTEND_LOCK)
        self._release = client.register_script(_RELEASE_LOCK)
        self._park_head = client.register_script(_PARK_HEAD)

    async def push(self, message: Dict[str, Any]) -> int:
        return await self._push(keys=[outbox_key(message), redis_keys.outbox_due()],
                                args=[encode(message), time.time()])

    async def pending(self, channel: str, chat_id: str) -> int:
        return await self.client.llen(redis_keys.outbox(channel, chat_id))

    async def due(self, limit: int = 20) -> List[str]:
        keys = await self.client.zrangebyscore(redis_keys.outbox_due(), "-inf", time.time(),
                                               start=0, num=limit)
        return [k.decode() if isinstance(k, bytes) else k for k in keys]

    async def head(self, key: str) -> Optional[str]:
        raw = await self.client.lindex(key, 0)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def delivered(self, key: str, raw: str) -> int:
        return await self._pop(keys=[key, redis_keys.outbox_due()], args=[raw])

    async def retry_later(self, key: str, raw: str, message: Dict[str, Any],
                          delay_seconds: float) -> None:
        await self._replace(keys=[key], args=[raw, encode(message)])
        await self.client.zadd(redis_keys.outbox_due(), {key: time.time() + delay_seconds})

    async def park_head(self, key: str, raw: str, reason: str) -> Optional[str]:
        """Move the chat's head message to the parked log (undeliverable); its id there."""
        parked_id = await self._park_head(
            keys=[key, redis_keys.outbox_due(), redis_keys.outbox_parked()],
            args=[raw, reason[:500], f"{time.time():.3f}"])
        return parked_id.decode() if isinstance(parked_id, bytes) else parked_id

    async def park(self, message: Dict[str, Any], reason: str) -> str:
        """Keep a message that was never queued (refused at its first send) in the parked log."""
        parked_id = await self.client.xadd(redis_keys.outbox_parked(), {
            "m": encode(message), "reason": reason[:500], "parked_at": f"{time.time():.3f}"})
        return parked_id.decode() if isinstance(parked_id, bytes) else parked_id

    async def lock(self, key: str, seconds: int = LOCK_SECONDS) -> Optional[str]:
        """A token when this process now delivers the chat, None when another one does."""
        token = uuid.uuid4().hex
        taken = await self.client.set(redis_keys.outbox_lock(key), token, nx=True, ex=seconds)
        return token if taken else None

    async def keep_lock(self, key: str, token: str, seconds: int = LOCK_SECONDS) -> None:
        """Extend our lock before each message, so a long drain never loses it midway."""
        await self._extend(keys=[redis_keys.outbox_lock(key)], args=[token, seconds])

    async def unlock(self, key: str, token: str) -> None:
        """Release only our own lock (it may have expired and been taken by another)."""
        await self._release(keys=[redis_keys.outbox_lock(key)], args=[token])


def push_sync(client: Any, message: Dict[str, Any]) -> int:
    """For processes without an event loop (RQ workers)."""
    return client.eval(_PUSH, 2, outbox_key(message), redis_keys.outbox_due(),
                       encode(message), time.time())


def undelivered(client: Any, count: int = 1000) -> List[Dict[str, Any]]:
    """Messages the bot could not deliver, oldest first (sync Redis: the operator's command)."""
    entries = []
    for parked_id, fields in client.xrange(redis_keys.outbox_parked(), count=count):
        values = {_text(k): _text(v) for k, v in fields.items()}
        try:
            message = json.loads(values.get("m", ""))
        except ValueError:
            message = {}
        if not isinstance(message, dict):  # parked as unreadable: JSON, but no message
            message = {"text": values.get("m", "")[:200]}
        entries.append({
            "id": _text(parked_id), "reason": values.get("reason", ""),
            "parked_at": float(values.get("parked_at") or 0),
            "channel": message.get("channel"), "chat_id": message.get("chat_id"),
            "conversation_id": message.get("conversation_id"), "kind": message.get("kind"),
            "text": message.get("text") or "", "attempts": message.get("attempt", 0),
        })
    return entries


def resend(client: Any, parked_id: str) -> None:
    """Queue a parked message again, at the end of its chat's outbox, as new (sync Redis)."""
    found = client.xrange(redis_keys.outbox_parked(), min=parked_id, max=parked_id)
    if not found:
        raise LookupError(f"no parked outgoing message '{parked_id}'")
    message = json.loads(found[0][1].get(b"m") or found[0][1].get("m"))
    push_sync(client, dict(message, attempt=0, queued_at=time.time()))
    client.xdel(redis_keys.outbox_parked(), parked_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
