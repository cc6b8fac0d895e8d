"""A group participant's messages the bot read and did not answer, kept a few minutes for the
ticket of their next report (the spec: messages that are not incidents are stored for context,
not answered in groups).

They are not put on the Rasa tracker: in a busy group most messages are chatter, and every one
of them on the tracker would change what Rasa predicts for the participant. Instead the turn
keeps the latest `groups.context_messages` of them for `groups.context_minutes` in Redis, and
the next message of that participant that the bot answers takes them (once) into its metadata,
`group_context`; the ticket form offers them as the description's first lines, which the user
reads back and confirms (actions/ticket_form.py).
"""
import json
import time
from typing import Any, List, Optional

from helpdesk import redis_keys

MAX_TEXT_CHARS = 500  # one kept message; the description has its own limit


async def keep(client: Any, conversation_id: str, text: str, max_messages: int,
               minutes: float, now: Optional[float] = None) -> None:
    """Keep one unanswered message (async Redis, in the turn)."""
    text = " ".join((text or "").split())[:MAX_TEXT_CHARS]
    if not text or max_messages <= 0 or minutes <= 0:
        return
    key = redis_keys.group_context(conversation_id)
    entry = json.dumps({"text": text, "at": now if now is not None else time.time()},
                       ensure_ascii=False)
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(key, entry)
        pipe.ltrim(key, -max_messages, -1)
        pipe.expire(key, max(1, int(minutes * 60)))
        await pipe.execute()


async def take(client: Any, conversation_id: str, minutes: float,
               now: Optional[float] = None) -> List[str]:
    """The kept messages of the last `minutes`, oldest first, and forget them all."""
    if minutes <= 0:
        return []
    key = redis_keys.group_context(conversation_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = await pipe.execute()
    since = (now if now is not None else time.time()) - minutes * 60
    texts = []
    for item in raw:
        try:
            entry = json.loads(item)
            if float(entry["at"]) >= since and isinstance(entry["text"], str):
                texts.append(entry["text"])
        except (ValueError, KeyError, TypeError):
            continue  # not ours: skipped, never fatal
    return texts
