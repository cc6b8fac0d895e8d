"""Sending a WhatsApp text from anywhere (workers, actions, the Chatwoot relay).

The message goes into the per-chat outbox (helpdesk/whatsapp/outbox.py); the Rasa server's drainer
delivers it through the right gateway, in order, with retries. Nothing here talks to a
gateway, so the caller never waits for WhatsApp and a gateway outage loses nothing.

`target` is a conversation id (its stored route says the channel and chat), or a chat id
written by an operator (`SUPPORT_ESCALATION_CHAT`: "5491122334455", "…@c.us", "…@g.us"),
sent through WAHA when it is configured, else Meta. `mentions` are numbers or conversation
ids to mention: the caller writes "@<number>" in the text, the channel adds WAHA's
`mentions` list.
"""
import time
from typing import Any, Dict, Iterable, List, Optional

import redis

from helpdesk.whatsapp import outbox
from helpdesk.whatsapp.conversations import (
    Route,
    digits,
    direct_conversation_id,
    group_of,
    is_group_jid,
    load_route,
    load_route_sync,
)
from helpdesk.errors import ConfigError
from helpdesk.settings import load_meta, load_settings, load_waha


class NoRoute(Exception):
    """No channel is known for the target (never wrote to us, and no gateway set up)."""


def _default_channel() -> str:
    if load_waha():
        return "waha"
    if load_meta():
        return "whatsapp"
    raise NoRoute("no WhatsApp channel is configured (WAHA_BASE_URL or META_ACCESS_TOKEN)")


def _chat_route(target: str) -> Route:
    if group_of(target):
        # a group conversation whose route expired: its digits are not a chat to write to
        raise NoRoute(f"no stored route for the group conversation {target}")
    channel = _default_channel()
    if channel == "waha":
        chat_id = target if "@" in target else f"{digits(target)}@c.us"
    else:
        if is_group_jid(target):
            raise NoRoute("Meta's channel cannot send to a WAHA group id")
        chat_id = digits(target) or target
    return Route(channel=channel, chat_id=chat_id)


def mention_ids(mentions: Optional[Iterable[str]]) -> List[str]:
    """Numbers or conversation ids as WAHA mention jids ("5491…@c.us")."""
    found = []
    for mention in mentions or ():
        number = mention.rsplit("-", 1)[-1] if group_of(mention) else mention
        number = digits(number)
        if number:
            found.append(f"{number}@c.us")
    return found


def build_message(route: Route, conversation_id: Optional[str], text: str,
                  mentions: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    return {
        "channel": route.channel,
        "chat_id": route.chat_id,
        "conversation_id": conversation_id,
        "kind": "text",
        "text": text,
        "mentions": mention_ids(mentions),
        "proactive": True,
        "attempt": 0,
        "queued_at": time.time(),
    }


def _person_of(target: str) -> Optional[str]:
    """The conversation id of a person's chat ("549…@c.us" → "549…"), so an opt-out is
    honoured even without a stored route; None for a group chat."""
    if is_group_jid(target):
        return None
    return direct_conversation_id(target)


def _looks_like_chat(target: str) -> bool:
    return "@" in target


def send_text(target: str, text: str, mentions: Optional[Iterable[str]] = None,
              client: Optional[redis.Redis] = None) -> Dict[str, Any]:
    """Queue a text (sync, for workers). Returns the queued message. Raises NoRoute."""
    if not text or not text.strip():
        raise ValueError("text is empty")
    own = client is None
    client = client or redis.Redis.from_url(load_settings().redis_url, socket_timeout=5)
    try:
        route = None if _looks_like_chat(target) else load_route_sync(client, target)
        conversation_id = target if route is not None else _person_of(target)
        route = route or _chat_route(target)
        message = build_message(route, conversation_id, text, mentions)
        outbox.push_sync(client, message)
        return message
    finally:
        if own:
            client.close()


async def async_send_text(client: Any, target: str, text: str,
                          mentions: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Queue a text from async code (action server, Rasa server), with an async Redis."""
    if not text or not text.strip():
        raise ValueError("text is empty")
    route = None if _looks_like_chat(target) else await load_route(client, target)
    conversation_id = target if route is not None else _person_of(target)
    route = route or _chat_route(target)
    message = build_message(route, conversation_id, text, mentions)
    await outbox.AsyncOutbox(client).push(message)
    return message


def send_reaction(conversation_id: str, message_id: str, emoji: str,
                  client: redis.Redis) -> Optional[Dict[str, Any]]:
    """Queue the bot's reaction on a message of a group conversation (sync: actions call it in a
    thread). WAHA only: Meta's channel has no groups. Returns the queued message, or None when
    the conversation is not a WAHA group with a stored route."""
    if not emoji or not message_id:
        raise ValueError("a reaction needs a message id and an emoji")
    route = load_route_sync(client, conversation_id)
    if route is None or route.channel != "waha" or not route.is_group:
        return None
    message = {
        "channel": route.channel, "chat_id": route.chat_id, "conversation_id": conversation_id,
        "kind": "reaction", "message_id": message_id, "emoji": emoji, "mentions": [],
        "proactive": False, "attempt": 0, "queued_at": time.time(),
    }
    outbox.push_sync(client, message)
    return message


__all__ = ["send_text", "async_send_text", "send_reaction", "NoRoute", "ConfigError",
           "mention_ids"]
