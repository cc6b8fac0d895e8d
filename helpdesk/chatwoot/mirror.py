"""The mirror of WhatsApp conversations in Chatwoot: what the rest of the bot calls.

- `mirror_message(conversation_id, direction, text, attachments, correlation_id)`: every
  user message ("incoming") and every bot reply ("outgoing"), called by the WhatsApp channel.
- `note_ticket(conversation_id, ticket_id)`: a private note with the ticket summary, its
  labels and custom attributes, when a ticket is recorded or delivered.
- `open_handoff(...)`: the conversation goes to the agents (status, labels, private note).
- `set_status(conversation_id, status)`.

Each call only appends to the conversation's Chatwoot outbox and enqueues a job (one Redis
transaction, about a millisecond); the `chatwoot` queue's workers write to Chatwoot, in
order, with retries (helpdesk/chatwoot/outbox.py, workers/chatwoot_jobs.py). Sync, for
workers and threads; async code uses the `*_async` variants (a thread each). Without
Chatwoot configured every call returns None and does nothing.

The directory below keeps which Chatwoot contact and conversation mirror a WhatsApp
conversation (one each), and the reverse, for the agent webhook.
"""
import asyncio
import logging
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence

import redis

from helpdesk import redis_keys
from helpdesk.chatwoot.client import ChatwootClient, e164
from helpdesk.config import ChatwootConfig, chatwoot_config
from helpdesk.chatwoot.outbox import ChatwootOutbox
from helpdesk.whatsapp import ROUTE_TTL_SECONDS, digits, group_of, load_route_sync
from helpdesk.settings import load_chatwoot, load_settings

logger = logging.getLogger(__name__)

DIRECTIONS = ("incoming", "outgoing")
SOURCE_PREFIX = "helpdesk:"  # source_id of every message we create in Chatwoot


@lru_cache(maxsize=8)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_client() -> redis.Redis:
    """The process's sync Redis client (thread-safe pool), for the configured REDIS_URL."""
    return _redis(load_settings().redis_url)


def enabled() -> bool:
    return load_chatwoot() is not None


def _outbox() -> ChatwootOutbox:
    return ChatwootOutbox(redis_client(), chatwoot_config())


# public API -------------------------------------------------------------------------------
def mirror_message(conversation_id: str, direction: str, text: Optional[str],
                   attachments: Optional[Sequence[Dict[str, Any]]] = None,
                   correlation_id: Optional[str] = None) -> Optional[str]:
    """Record a WhatsApp message for Chatwoot. Returns the outbox entry id, None when
    Chatwoot is not configured or there is nothing to mirror. Raises redis errors."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if not enabled():
        return None
    files = [_attachment(a) for a in attachments or ()]
    if not (text and text.strip()) and not files:
        return None
    entry = {"kind": "message", "direction": direction, "text": text or "", "attachments": files}
    return _outbox().append(conversation_id, entry, correlation_id)


async def mirror_message_async(conversation_id: str, direction: str, text: Optional[str],
                               attachments: Optional[Sequence[Dict[str, Any]]] = None,
                               correlation_id: Optional[str] = None) -> Optional[str]:
    return await asyncio.to_thread(mirror_message, conversation_id, direction, text,
                                   attachments, correlation_id)


def note_ticket(conversation_id: str, ticket_id: str,
                correlation_id: Optional[str] = None) -> Optional[str]:
    """Queue the private note, labels and custom attributes of a ledger ticket. Call it when
    the ticket is recorded and again when Zoho gives it a number: one note per number."""
    if not enabled():
        return None
    return _outbox().append(conversation_id, {"kind": "ticket", "ticket_id": ticket_id}, correlation_id)


def open_handoff(conversation_id: str, note: str, correlation_id: Optional[str] = None) -> Optional[str]:
    """Queue the handoff: the conversation opened to agents with the handoff labels, then the
    private note. Returns the entry id, None without Chatwoot."""
    if not enabled():
        return None
    options = chatwoot_config()
    entry = {"kind": "handoff", "status": options.handoff_status,
             "labels": list(options.handoff_labels), "team_id": options.handoff_team_id, "note": note}
    return _outbox().append(conversation_id, entry, correlation_id)


def set_status(conversation_id: str, status: str, correlation_id: Optional[str] = None) -> Optional[str]:
    if not enabled():
        return None
    return _outbox().append(conversation_id, {"kind": "status", "status": status}, correlation_id)


def _attachment(value: Dict[str, Any]) -> Dict[str, Any]:
    """A stored media file (helpdesk.whatsapp.media.StoredMedia.to_dict()): what the worker needs."""
    if not isinstance(value, dict) or not value.get("path"):
        raise ValueError("an attachment is a dict with at least 'path' (helpdesk.whatsapp.media.StoredMedia)")
    return {key: value.get(key) for key in ("path", "mime_type", "filename") if value.get(key)}


# the directory ----------------------------------------------------------------------------
class ChatwootDirectory:
    """WhatsApp conversation <-> Chatwoot contact and conversation, kept in Redis."""

    def __init__(self, client: redis.Redis, options: Optional[ChatwootConfig] = None) -> None:
        self.client = client
        self.options = options

    def lookup(self, conversation_id: str) -> Optional[Dict[str, str]]:
        data = self.client.hgetall(redis_keys.chatwoot_conversation(conversation_id))
        decoded = {_text(k): _text(v) for k, v in data.items()}
        return decoded if decoded.get("conversation") else None

    def owner_of(self, chatwoot_conversation_id: Any) -> Optional[str]:
        value = self.client.get(redis_keys.chatwoot_owner(chatwoot_conversation_id))
        return _text(value) if value else None

    def remember(self, conversation_id: str, contact_id: Any, chatwoot_conversation_id: Any) -> None:
        key = redis_keys.chatwoot_conversation(conversation_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"contact": str(contact_id), "conversation": str(chatwoot_conversation_id)})
            pipe.expire(key, ROUTE_TTL_SECONDS)
            pipe.set(redis_keys.chatwoot_owner(chatwoot_conversation_id), conversation_id, ex=ROUTE_TTL_SECONDS)
            pipe.execute()

    def last_confirmed(self, conversation_id: str) -> int:
        value = self.client.hget(redis_keys.chatwoot_conversation(conversation_id), "last_message")
        return int(value) if value else 0

    def confirm_message(self, conversation_id: str, message: Dict[str, Any], ttl: int) -> None:
        """A message Chatwoot holds: its webhook echo is ours, later checks start after it."""
        message_id = int(message["id"])
        key = redis_keys.chatwoot_conversation(conversation_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(redis_keys.chatwoot_posted(message_id), "1", ex=ttl)
            pipe.hset(key, "last_message", str(max(message_id, self.last_confirmed(conversation_id))))
            sender = message.get("sender") or {}
            # who our token writes as (incoming messages are the contact's)
            if isinstance(sender, dict) and sender.get("id") is not None \
                    and sender.get("type") in ("user", "agent_bot"):
                pipe.hset(redis_keys.chatwoot_self(),
                          mapping={"type": sender["type"], "id": str(sender["id"])})
            pipe.execute()

    def forget(self, conversation_id: str) -> None:
        """The Chatwoot conversation is gone (deleted): the next write makes a new one."""
        known = self.lookup(conversation_id)
        keys = [redis_keys.chatwoot_conversation(conversation_id)]
        if known:
            keys.append(redis_keys.chatwoot_owner(known["conversation"]))
        self.client.delete(*keys)

    def ensure(self, chatwoot: ChatwootClient, conversation_id: str) -> int:
        """The Chatwoot conversation id mirroring this WhatsApp conversation, made (with its
        contact) the first time. Call it under the conversation's outbox claim."""
        known = self.lookup(conversation_id)
        if known:
            return int(known["conversation"])
        route = load_route_sync(self.client, conversation_id)
        phone = e164(route.phone if route and route.phone else _number_of(conversation_id))
        name = route.name if route and route.name else None
        contact = chatwoot.find_or_create_contact(phone=phone, identifier=conversation_id, name=name)
        source_id = None
        for contact_inbox in contact.get("contact_inboxes") or []:
            inbox = (contact_inbox or {}).get("inbox") or {}
            if str(inbox.get("id")) == str(chatwoot.settings.inbox_id):
                source_id = contact_inbox.get("source_id")
        status = self.options.status_while_bot if self.options else "pending"
        conversation = chatwoot.create_conversation(contact_id=contact["id"], status=status, source_id=source_id)
        self.remember(conversation_id, contact["id"], conversation["id"])
        logger.info("chatwoot conversation created",
                    extra={"conversation_id": conversation_id, "chatwoot_conversation": conversation["id"]})
        return int(conversation["id"])

    def self_sender(self) -> Optional[Dict[str, str]]:
        data = self.client.hgetall(redis_keys.chatwoot_self())
        decoded = {_text(k): _text(v) for k, v in data.items()}
        return decoded if decoded.get("id") else None

    def posted_by_us(self, chatwoot_message_id: Any) -> bool:
        return bool(self.client.exists(redis_keys.chatwoot_posted(chatwoot_message_id)))


def _number_of(conversation_id: str) -> Optional[str]:
    if group_of(conversation_id):
        return digits(conversation_id.rsplit("-", 1)[-1]) or None
    return conversation_id if conversation_id.isdigit() else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def source_id_for(entry_id: str) -> str:
    return f"{SOURCE_PREFIX}{entry_id}"


__all__: List[str] = [
    "mirror_message", "mirror_message_async", "note_ticket", "open_handoff", "set_status",
    "enabled", "ChatwootDirectory", "source_id_for", "SOURCE_PREFIX",
]
