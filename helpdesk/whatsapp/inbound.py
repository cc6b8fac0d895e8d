"""The durable inbound log: what a webhook accepted, waiting for its Rasa turn.

The webhook parses a delivery into `InboundMessage`s and calls `InboundLog.accept` for each:
one atomic Redis script dedupes on the provider message id (SET NX with a TTL), drops
messages of users who opted out (unless they opt back in), applies the per-user rate limit,
and appends the message to a Redis Stream. The webhook answers 200 after that, so nothing
slow (NLU, actions, LLMs, media downloads) is ever inside the acknowledgement.

A consumer (`connectors/whatsapp/consumer.py`, in the Rasa server process) reads the stream
through a consumer group, runs the turns and only then acknowledges and deletes the entries.
Entries a dead process read but never finished stay pending and are taken over.
"""
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from helpdesk import redis_keys

STREAM = redis_keys.inbound_stream()
GROUP = "rasa"

# KEYS: dedupe, opted-out set, rate counter, rate cool-down, stream
# ARGV: conversation id, dedupe ttl, rate limit, rate window, cool-down, message json,
#       opt word ("in", "out" or "")
_ACCEPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  return {'duplicate', ''}
end
if ARGV[7] ~= 'in' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return {'opted_out', ''}
end
if tonumber(ARGV[3]) > 0 and ARGV[7] == '' then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    return {'rate_limited', ''}
  end
  local count = redis.call('INCR', KEYS[3])
  if count == 1 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4])) end
  if count > tonumber(ARGV[3]) then
    if tonumber(ARGV[5]) > 0 then
      redis.call('SET', KEYS[4], '1', 'EX', tonumber(ARGV[5]))
    end
    redis.call('DEL', KEYS[3])
    return {'rate_limited_first', ''}
  end
end
local id = redis.call('XADD', KEYS[5], '*', 'm', ARGV[6])
return {'accepted', id}
"""

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
OPTED_OUT = "opted_out"
RATE_LIMITED = "rate_limited"  # over the limit; the user was already told
RATE_LIMITED_FIRST = "rate_limited_first"  # just went over: tell the user once


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
    kind: str  # text | media | interactive | location | unsupported
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
                 rate_cooldown: int) -> None:
        self.client = client
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
                STREAM,
            ],
            args=[conversation, self.dedupe_ttl, self.rate_messages, self.rate_window,
                  self.rate_cooldown, message.to_json(), message.opt_word or ""],
        )
        outcome, entry_id = (value.decode() if isinstance(value, bytes) else value
                             for value in result)
        return outcome, entry_id or None


async def ensure_group(client: Any) -> None:
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except Exception as error:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(error):
            raise


async def finish(client: Any, entry_ids: List[str]) -> None:
    """Acknowledge and delete finished entries, so the stream only holds open work."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.xack(STREAM, GROUP, *entry_ids)
        pipe.xdel(STREAM, *entry_ids)
        await pipe.execute()
