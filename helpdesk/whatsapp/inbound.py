"""The durable inbound log: what a webhook accepted, waiting for its Rasa turn.

The webhook parses a delivery into `InboundMessage`s and calls `InboundLog.accept` for each:
one atomic Redis script dedupes on the provider message id (SET NX with a TTL), drops
messages of users who opted out (unless they opt back in), applies the per-user rate limit,
and appends the message to a Redis Stream (a message over the limit too, marked: its turn
records it without answering). The webhook answers 200 after that, so nothing
slow (NLU, actions, LLMs, media downloads) is ever inside the acknowledgement.

The log is split into partitions (`config/channels.yml` inbound.partitions), one stream
each; a conversation always lands in the same one (CRC-32 of its id). A consumer
(`connectors/whatsapp/consumer.py`, in the Rasa server process) holds a lease on each partition
it reads (`Leases`), reads it through a consumer group, runs the turns and only then
acknowledges and deletes the entries. One reader per partition is what keeps a conversation's
messages in order with several Rasa servers. Entries a dead server read but never finished stay
pending, and whoever takes its lease over runs them first.
"""
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from helpdesk import redis_keys

GROUP = "rasa"
LEGACY = -1  # the single stream of versions before partitions, read until it is drained
LEGACY_STREAM = redis_keys.inbound_stream()


def partition_of(conversation_id: str, partitions: int) -> int:
    """The partition a conversation's messages always go to."""
    return zlib.crc32(conversation_id.encode("utf-8")) % partitions


def stream(partition: int) -> str:
    return LEGACY_STREAM if partition == LEGACY else redis_keys.inbound_partition(partition)


def lease_key(partition: int) -> str:
    return redis_keys.inbound_lease("legacy" if partition == LEGACY else str(partition))


# KEYS: leases to renew; ARGV: owner, lease ms. Returns 1 per lease still ours, else 0.
_RENEW = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, tonumber(ARGV[2]))
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

# KEYS: lease; ARGV: owner
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: servers sorted set; ARGV: server name, time to live ms ("" = leave).
# Scored by Redis' own clock, so servers on hosts whose clocks differ still agree.
_BEAT = """
if ARGV[2] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return redis.call('ZCARD', KEYS[1])
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""


class Leases:
    """Who reads which partition: a lease per partition (SET NX PX), renewed while its
    server runs, and the running servers by heartbeat, to share the partitions evenly."""

    def __init__(self, client: Any, owner: str, lease_seconds: float) -> None:
        self.client = client
        self.owner = owner
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._beat = client.register_script(_BEAT)

    async def acquire(self, partition: int) -> bool:
        return bool(await self.client.set(lease_key(partition), self.owner, nx=True,
                                          px=self.lease_ms))

    async def renew(self, partitions: List[int]) -> List[int]:
        """Renew these leases; the ones no longer held (expired, taken) are returned."""
        if not partitions:
            return []
        held = await self._renew(keys=[lease_key(p) for p in partitions],
                                 args=[self.owner, self.lease_ms])
        return [p for p, ours in zip(partitions, held) if not ours]

    async def holds(self, partition: int) -> bool:
        owner = await self.client.get(lease_key(partition))
        return owner is not None and owner.decode() == self.owner

    async def release(self, partition: int) -> None:
        await self._release(keys=[lease_key(partition)], args=[self.owner])

    async def beat(self) -> int:
        """Say this server runs; how many run (this one included)."""
        return int(await self._beat(keys=[redis_keys.inbound_servers()],
                                    args=[self.owner, self.lease_ms]))

    async def leave(self) -> None:
        await self._beat(keys=[redis_keys.inbound_servers()], args=[self.owner, ""])

    async def running(self) -> List[str]:
        names = await self.client.zrange(redis_keys.inbound_servers(), 0, -1)
        return [n.decode() if isinstance(n, bytes) else n for n in names]

# KEYS: dedupe, opted-out set, rate counter, rate cool-down, stream, counters hash
# ARGV: conversation id, dedupe ttl, rate limit, rate window, cool-down, message json,
#       opt word ("in", "out" or ""), the counter field of a recorded message
#       (`received_<channel>`: messages_received_total, helpdesk/metrics/recording.py)
_ACCEPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  return {'duplicate', ''}
end
if ARGV[7] ~= 'in' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {'opted_out', ''}
end
if tonumber(ARGV[3]) > 0 and ARGV[7] == '' then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
    return {'rate_limited', redis.call('XADD', KEYS[5], '*', 'm', ARGV[6], 'r', '1')}
  end
  local count = redis.call('INCR', KEYS[3])
  if count == 1 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4])) end
  if count > tonumber(ARGV[3]) then
    if tonumber(ARGV[5]) > 0 then
      redis.call('SET', KEYS[4], '1', 'EX', tonumber(ARGV[5]))
    end
    redis.call('DEL', KEYS[3])
    redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
    return {'rate_limited_first', redis.call('XADD', KEYS[5], '*', 'm', ARGV[6], 'r', '1')}
  end
end
local id = redis.call('XADD', KEYS[5], '*', 'm', ARGV[6])
redis.call('HINCRBY', KEYS[6], ARGV[8], 1)
return {'accepted', id}
"""

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
OPTED_OUT = "opted_out"
# over the limit: recorded (stream field r=1: kept on the tracker and shown to agents), not
# answered; the user was already told
RATE_LIMITED = "rate_limited"
RATE_LIMITED_FIRST = "rate_limited_first"  # just went over: recorded, and the user told once
RECORDED = (ACCEPTED, RATE_LIMITED, RATE_LIMITED_FIRST)  # outcomes with a stream entry


@dataclass
class Media:
    kind: str  # image | document | audio | voice | video | sticker
    mime_type: Optional[str] = None
    url: Optional[str] = None  # WAHA: media.url
    media_id: Optional[str] = None  # Meta: the media id for the two-step fetch
    filename: Optional[str] = None
    error: Optional[str] = None  # the gateway could not fetch it (WAHA media.error / null)


@dataclass
class InboundMessage:
    """One user message, whatever the gateway, as the consumer needs it."""

    channel: str  # Rasa input channel name: "waha" | "whatsapp"
    message_id: str  # provider id: WAHA payload.id, Meta wamid
    conversation_id: str
    chat_id: str  # where replies go (WAHA chat id, Meta wa_id)
    kind: str  # text | media | interactive | location | unsupported | edit | revoke
    text: str = ""
    participant: Optional[str] = None  # group sender jid
    phone: Optional[str] = None  # the sender's number (digits) when known
    name: Optional[str] = None  # WhatsApp profile name
    is_group: bool = False
    mentions_bot: bool = False
    payload: Optional[str] = None  # button / list / template reply id
    media: Optional[Media] = None
    location: Optional[Dict[str, Any]] = None
    lid: Optional[str] = None  # WAHA "@lid" sender still to resolve to a number
    opt_word: Optional[str] = None  # "out" | "in" when the text is an opt word
    rate_limited: bool = False  # recorded over the rate limit: kept, not answered
    original_id: Optional[str] = None  # edit / revoke: the provider id of the message changed
    timestamp: float = field(default_factory=time.time)
    received_at: float = field(default_factory=time.time)
    correlation_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> "InboundMessage":
        data = json.loads(raw)
        media = data.pop("media", None)
        # fields written by a newer version are ignored, not fatal (rolling upgrades)
        message = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        message.media = Media(**{k: v for k, v in media.items()
                                 if k in Media.__dataclass_fields__}) if media else None
        return message


class InboundLog:
    """Accepting messages into the stream (the webhook's side). Async Redis client."""

    def __init__(self, client: Any, dedupe_ttl: int, rate_messages: int, rate_window: int,
                 rate_cooldown: int, partitions: int) -> None:
        self.client = client
        self.partitions = partitions
        self.dedupe_ttl = dedupe_ttl
        self.rate_messages = rate_messages
        self.rate_window = rate_window
        self.rate_cooldown = rate_cooldown
        self._script = client.register_script(_ACCEPT)

    async def accept(self, message: InboundMessage) -> Tuple[str, Optional[str]]:
        """(outcome, stream entry id). Outcomes: ACCEPTED, DUPLICATE, OPTED_OUT, RATE_*."""
        conversation = message.conversation_id
        result = await self._script(
            keys=[
                redis_keys.inbound_seen(message.channel, message.message_id),
                redis_keys.opted_out_set(),
                redis_keys.rate_counter(conversation),
                redis_keys.rate_cooldown(conversation),
                stream(partition_of(conversation, self.partitions)),
                redis_keys.counters(),
            ],
            args=[conversation, self.dedupe_ttl, self.rate_messages, self.rate_window,
                  self.rate_cooldown, message.to_json(), message.opt_word or "",
                  f"received_{message.channel}"],
        )
        outcome, entry_id = (value.decode() if isinstance(value, bytes) else value
                             for value in result)
        if outcome == ACCEPTED and message.kind == "edit" and message.original_id \
                and message.text:
            # the original's turn, if it has not run yet, takes this text instead of its own
            await self.client.set(redis_keys.inbound_edit(message.channel, message.original_id),
                                  message.text, ex=self.dedupe_ttl)
        return outcome, entry_id or None


async def ensure_group(client: Any, partition: int) -> None:
    try:
        await client.xgroup_create(stream(partition), GROUP, id="0", mkstream=True)
    except Exception as error:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(error):
            raise


async def finish(client: Any, partition: int, entry_ids: List[str]) -> None:
    """Acknowledge and delete finished entries, so the stream only holds open work."""
    name = stream(partition)
    async with client.pipeline(transaction=True) as pipe:
        pipe.xack(name, GROUP, *entry_ids)
        pipe.xdel(name, *entry_ids)
        pipe.hdel(redis_keys.inbound_starts(partition), *entry_ids)
        await pipe.execute()


async def count_start(client: Any, partition: int, entry_ids: List[str]) -> int:
    """Count one more start of these entries' turn; the most any of them was started."""
    async with client.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.hincrby(redis_keys.inbound_starts(partition), entry_id, 1)
        return max(await pipe.execute())


async def park(client: Any, partition: int, entry_id: str, raw: Any, reason: str) -> str:
    """Move an entry whose turn kept failing to the parked log, in one step; its id there."""
    name = stream(partition)
    async with client.pipeline(transaction=True) as pipe:
        pipe.xadd(redis_keys.inbound_parked(), {
            "m": raw if raw is not None else "", "reason": reason[:500],
            "partition": str(partition), "entry": entry_id, "parked_at": f"{time.time():.3f}",
        })
        pipe.xack(name, GROUP, entry_id)
        pipe.xdel(name, entry_id)
        pipe.hdel(redis_keys.inbound_starts(partition), entry_id)
        parked_id, *_ = await pipe.execute()
    return parked_id.decode() if isinstance(parked_id, bytes) else parked_id


def parked(client: Any, count: int = 1000) -> List[Dict[str, Any]]:
    """The parked log, oldest first (sync Redis: the operator's command)."""
    entries = []
    for parked_id, fields in client.xrange(redis_keys.inbound_parked(), count=count):
        values = {_text(k): _text(v) for k, v in fields.items()}
        try:
            message: Optional[InboundMessage] = InboundMessage.from_json(values.get("m", ""))
        except Exception:
            message = None
        entries.append({
            "id": _text(parked_id), "reason": values.get("reason", ""),
            "parked_at": float(values.get("parked_at") or 0), "entry": values.get("entry"),
            "conversation_id": message.conversation_id if message else None,
            "channel": message.channel if message else None,
            "kind": message.kind if message else None,
            "text": message.text if message else values.get("m", "")[:200],
            "readable": message is not None,
        })
    return entries


def replay(client: Any, parked_id: str, partitions: int) -> str:
    """Put a parked message back at the end of its conversation's partition (sync Redis);
    the new entry id. The dedupe key does not apply: the message was accepted once already."""
    found = client.xrange(redis_keys.inbound_parked(), min=parked_id, max=parked_id)
    if not found:
        raise LookupError(f"no parked message '{parked_id}'")
    raw = found[0][1].get(b"m") or found[0][1].get("m")
    message = InboundMessage.from_json(raw)  # an unreadable one cannot be run again
    pipe = client.pipeline(transaction=True)
    pipe.xadd(stream(partition_of(message.conversation_id, partitions)), {"m": raw})
    pipe.xdel(redis_keys.inbound_parked(), parked_id)
    new_id, _ = pipe.execute()
    return _text(new_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def backlog(client: Any, partitions: int) -> int:
    """Entries waiting in (or being handled from) the whole inbound log."""
    async with client.pipeline(transaction=False) as pipe:
        for partition in [LEGACY, *range(partitions)]:
            pipe.xlen(stream(partition))
        return sum(await pipe.execute())
