"""Chatwoot: the one client of its Application API (client.py), the mirror of WhatsApp
conversations the rest of the bot calls (mirror.py) and the ordered per-conversation outbox of
what must still be written (outbox.py). Other code imports from this package only.
"""
from helpdesk.chatwoot.client import (  # noqa: F401
    ChatwootAuthError,
    ChatwootClient,
    ChatwootNotFound,
    ChatwootRejected,
    ChatwootUnavailable,
    MESSAGE_TYPES,
    e164,
)
from helpdesk.chatwoot.mirror import (  # noqa: F401
    ChatwootDirectory,
    SOURCE_PREFIX,
    enabled,
    mirror_message_async,
    note_ticket,
    open_handoff,
    redis_client,
    set_status,
    source_id_for,
)
from helpdesk.chatwoot.outbox import (  # noqa: F401
    LIVE as DRAIN_LIVE,
    ChatwootOutbox,
    PermanentFailure,
)

__all__ = [
    "ChatwootAuthError",
    "ChatwootClient",
    "ChatwootDirectory",
    "ChatwootNotFound",
    "ChatwootOutbox",
    "DRAIN_LIVE",
    "ChatwootRejected",
    "ChatwootUnavailable",
    "MESSAGE_TYPES",
    "PermanentFailure",
    "SOURCE_PREFIX",
    "e164",
    "enabled",
    "mirror_message_async",
    "note_ticket",
    "open_handoff",
    "redis_client",
    "set_status",
    "source_id_for",
]
