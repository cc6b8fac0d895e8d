"""WhatsApp: the two gateway clients, the only code that builds their URLs (waha.py, meta.py,
with what they share in gateway.py), conversation ids and routes (conversations.py), the durable
inbound log (inbound.py), the per-chat outbox (outbox.py), opt-outs (optout.py), stored media
(media.py), sending a text or a reaction from anywhere (send.py) and a group participant's
unanswered messages kept for their next report (group_context.py). Other code imports from this package only.
"""
from helpdesk.whatsapp.conversations import (  # noqa: F401
    MAX_ID_CHARS,
    ROUTE_TTL_SECONDS,
    BadId,
    Route,
    chat_jid,
    digits,
    direct_conversation_id,
    group_conversation_id,
    group_of,
    is_group_jid,
    load_route,
    load_route_sync,
    message_id,
    phone_number,
    save_route,
    user_id,
)
from helpdesk.whatsapp.gateway import (  # noqa: F401
    GatewayError,
    MediaError,
)
from helpdesk.whatsapp.group_context import (  # noqa: F401
    keep as keep_group_context,
    take as take_group_context,
)
from helpdesk.whatsapp.inbound import (  # noqa: F401
    ACCEPTED,
    GROUP,
    InboundLog,
    InboundMessage,
    LEGACY,
    Leases,
    Media,
    RATE_LIMITED,
    RATE_LIMITED_FIRST,
    RECORDED,
    backlog,
    count_start,
    ensure_group,
    finish,
    park,
    parked,
    replay,
    partition_of,
    stream,
)
from helpdesk.whatsapp.notices import (  # noqa: F401
    enqueue_notice,
    tell_support,
)
from helpdesk.whatsapp.media import (  # noqa: F401
    identify,
    kind_for,
    in_media_dir,
    media_dir,
    store,
)
from helpdesk.whatsapp.meta import (  # noqa: F401
    MetaClient,
    REENGAGEMENT_CODE,
)
from helpdesk.whatsapp.optout import (  # noqa: F401
    AsyncOptOutRegistry,
    OptOutRegistry,
    restore_opt_outs,
)
from helpdesk.whatsapp.outbox import (  # noqa: F401
    AsyncOutbox,
    resend,
    undelivered,
)
from helpdesk.whatsapp.session import (  # noqa: F401
    DOWN as SESSION_DOWN,
    record_status,
    session_down,
)
from helpdesk.whatsapp.send import (  # noqa: F401
    NoRoute,
    async_send_text,
    mention_ids,
    send_reaction,
    send_text,
)
from helpdesk.whatsapp.waha import (  # noqa: F401
    WahaClient,
)

__all__ = [
    "ACCEPTED",
    "AsyncOptOutRegistry",
    "AsyncOutbox",
    "record_status",
    "SESSION_DOWN",
    "session_down",
    "resend",
    "undelivered",
    "BadId",
    "MAX_ID_CHARS",
    "GROUP",
    "GatewayError",
    "InboundLog",
    "InboundMessage",
    "Media",
    "MediaError",
    "MetaClient",
    "NoRoute",
    "OptOutRegistry",
    "RATE_LIMITED",
    "RATE_LIMITED_FIRST",
    "RECORDED",
    "REENGAGEMENT_CODE",
    "ROUTE_TTL_SECONDS",
    "Route",
    "WahaClient",
    "async_send_text",
    "chat_jid",
    "digits",
    "direct_conversation_id",
    "ensure_group",
    "finish",
    "partition_of",
    "stream",
    "backlog",
    "Leases",
    "LEGACY",
    "count_start",
    "enqueue_notice",
    "tell_support",
    "park",
    "parked",
    "replay",
    "group_conversation_id",
    "group_of",
    "identify",
    "in_media_dir",
    "is_group_jid",
    "keep_group_context",
    "kind_for",
    "load_route",
    "load_route_sync",
    "media_dir",
    "mention_ids",
    "message_id",
    "phone_number",
    "restore_opt_outs",
    "save_route",
    "send_reaction",
    "send_text",
    "store",
    "take_group_context",
    "user_id",
]
