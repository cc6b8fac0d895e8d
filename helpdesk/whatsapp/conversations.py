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
from helpdesk.text import ascii_digits, only_digits

_SUFFIXES = ("@c.us", "@s.whatsapp.net", "@lid", "@g.us")
_GROUP_ID = re.compile(r"^g(\d+)-(.+)$")
ROUTE_TTL_SECONDS = 90 * 24 * 3600  # the spec's data retention
# the longest identifiers a gateway really sends: a phone number has at most 15 digits
# (E.164); a WhatsApp group id ("120363419669512474", 18) or @lid number (14-15) fewer than
# 20 per part; a provider message id or a Meta business-scoped user id a few dozen characters
MAX_PHONE_DIGITS = 15
MAX_JID_PART_DIGITS = 20
MAX_ID_CHARS = 128
_USER_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_GROUP_USER = re.compile(r"^\d+(-\d+)?$")


class BadId(ValueError):
    """An identifier no gateway sends: too long, empty, or not of a known shape."""


def digits(jid: str) -> str:
    """'5491122334455@c.us' / '549…:20@s.whatsapp.net' / '+54 9 11…' -> '5491122334455'.
    Digits of any script count as their ASCII digit ('５４９…', '٥٤٩…' -> '549…')."""
    user = jid.split("@", 1)[0].split(":", 1)[0]
    return only_digits(user)


def phone_number(raw: str) -> str:
    """A phone number (any spelling, any script's digits) as ASCII digits; BadId when it has
    none or more than E.164 allows."""
    number = digits(str(raw))
    if not number or len(number) > MAX_PHONE_DIGITS:
        raise BadId(f"not a phone number ({len(number)} digits)")
    return number


def chat_jid(jid: str) -> str:
    """A WAHA chat or participant id in its one spelling, or BadId: `<digits>@c.us` (a phone
    number), `<digits>@lid`, `<digits>@g.us` or `<digits>-<digits>@g.us`,
    `<digits>[:device]@s.whatsapp.net` (the device dropped); digits of any script made ASCII."""
    if not isinstance(jid, str) or jid.count("@") != 1 or len(jid) > MAX_ID_CHARS:
        raise BadId("not a chat id")
    user, suffix = ascii_digits(jid).split("@")
    if suffix == "c.us":
        return f"{phone_number(user)}@c.us"
    if suffix == "s.whatsapp.net":
        return f"{phone_number(user.split(':', 1)[0])}@s.whatsapp.net"
    if suffix == "lid" and user.isascii() and user.isdigit() and len(user) <= MAX_JID_PART_DIGITS:
        return f"{user}@lid"
    if suffix == "g.us" and _GROUP_USER.match(user) and user.isascii() and all(
            len(part) <= MAX_JID_PART_DIGITS for part in user.split("-")):
        return f"{user}@g.us"
    raise BadId("not a chat id of a known shape")


def user_id(raw: str) -> str:
    """A Meta business-scoped user id ("US.13491208655302741918"), digits made ASCII, or BadId."""
    value = ascii_digits(str(raw))
    if len(value) > MAX_ID_CHARS or not _USER_ID.match(value) or not value.isascii():
        raise BadId("not a user id")
    return value


def message_id(raw: object, max_chars: int = MAX_ID_CHARS) -> str:
    """A provider message id as it is (the dedupe key is built from it), or BadId."""
    if not isinstance(raw, str) or not raw:
        raise BadId("missing message id")
    if len(raw) > max_chars:
        raise BadId(f"message id of {len(raw)} characters")
    return raw


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
