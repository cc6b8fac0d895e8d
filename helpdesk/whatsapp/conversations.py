"""Conversation ids and routes: who a Rasa conversation is, and where its replies go.

A conversation id (Rasa's sender_id) is
- a direct chat: the user's WhatsApp number as digits ("5491122334455"), or Meta's
  business-scoped user id when Meta sends no number ("US.13491208655302741918");
- a group participant: "g<group digits>-<participant digits>", so two staff members reporting
  in one group have separate conversations.

The route (channel, chat id, participant, name, phone) is written by the connector on every
inbound message and read by whoever sends to the conversation later: the channel's output,
workers (through Rasa's trigger_intent) and the Chatwoot relay.
"""
import re
from dataclasses import asdict, dataclass
from typing import Dict, Optional

from helpdesk import redis_keys

_SUFFIXES = ("@c.us", "@s.whatsapp.net", "@lid", "@g.us")
_GROUP_ID = re.compile(r"^g(\d+)-(.+)$")
ROUTE_TTL_SECONDS = 90 * 24 * 3600  # the spec's data retention


def digits(jid: str) -> str:
    """'5491122334455@c.us' / '549…:20@s.whatsapp.net' / '+54 9 11…' -> '5491122334455'."""
    user = jid.split("@", 1)[0].split(":", 1)[0]
    return re.sub(r"\D", "", user)


def is_group_jid(jid: Optional[str]) -> bool:
    return bool(jid) and jid.endswith("@g.us")


def direct_conversation_id(user: str) -> str:
    """A number (any WhatsApp spelling) becomes its digits; a Meta user id stays as it is."""
    if re.fullmatch(r"[\d+\s()-]+(@\S+)?", user) or "@" in user:
        return digits(user)
    return user


def group_conversation_id(group_jid: str, participant: str) -> str:
    return f"g{digits(group_jid)}-{digits(participant) or participant}"


def group_of(conversation_id: str) -> Optional[str]:
    """The group jid of a group conversation id, None for a direct chat."""
    match = _GROUP_ID.match(conversation_id)
    return f"{match.group(1)}@g.us" if match else None


@dataclass(frozen=True)
class Route:
    channel: str  # the Rasa input channel name: "waha" or "whatsapp"
    chat_id: str  # where to send: a WAHA chat id ("…@c.us", "…@g.us") or a Meta wa_id
    participant: Optional[str] = None  # in a group: the reporter's id (for mentions)
    name: Optional[str] = None  # WhatsApp profile name
    phone: Optional[str] = None  # the reporter's number, digits, when known

    @property
    def is_group(self) -> bool:
        return is_group_jid(self.chat_id)

    def to_hash(self) -> Dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_hash(cls, data: Dict) -> Optional["Route"]:
        decoded = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in data.items()
        }
        if not decoded.get("channel") or not decoded.get("chat_id"):
            return None
        return cls(**{name: decoded.get(name) for name in cls.__dataclass_fields__})


async def save_route(client, conversation_id: str, route: Route) -> None:
    """Async Redis (the Rasa server's loop)."""
    key = redis_keys.route(conversation_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=route.to_hash())
        pipe.expire(key, ROUTE_TTL_SECONDS)
        await pipe.execute()


async def load_route(client, conversation_id: str) -> Optional[Route]:
    return Route.from_hash(await client.hgetall(redis_keys.route(conversation_id)))


def load_route_sync(client, conversation_id: str) -> Optional[Route]:
    """Sync Redis (workers)."""
    return Route.from_hash(client.hgetall(redis_keys.route(conversation_id)))
