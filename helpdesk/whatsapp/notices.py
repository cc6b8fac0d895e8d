"""Notices for the support team from the WhatsApp path (a message parked, a gateway refusing
the bot's credentials), queued for a worker: the ledger, where notices are kept and sent
from, is the workers'. Texts in config/channels.yml `human_notices`."""
import asyncio
from typing import Any, Dict, Optional

import redis

from helpdesk import queues
from helpdesk.settings import load_settings

NOTICE_RETRIES = [10, 60, 300]


def enqueue_notice(client: Any, notice: str, params: Dict[str, Any],
                   once_per: Optional[str] = None, once_seconds: int = 3600) -> None:
    """Queue notice `notice` (a key of human_notices) filled with `params` (sync Redis).
    `once_per`: the same condition is told once within `once_seconds`."""
    from rq import Queue, Retry  # here: only this path of the Rasa server needs RQ

    Queue(queues.DEFAULT, connection=client).enqueue_call(
        queues.NOTIFY_WHATSAPP, args=(notice, params, once_per, once_seconds),
        result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600,
        retry=Retry(max=len(NOTICE_RETRIES), interval=NOTICE_RETRIES),
    )


async def tell_support(notice: str, params: Dict[str, Any], once_per: Optional[str] = None,
                       once_seconds: int = 3600) -> None:
    """`enqueue_notice` from async code, with a connection of its own, off the event loop."""
    def enqueue() -> None:
        client = redis.Redis.from_url(load_settings().redis_url, socket_timeout=5,
                                      socket_connect_timeout=2)
        try:
            enqueue_notice(client, notice, params, once_per, once_seconds)
        finally:
            client.close()

    await asyncio.to_thread(enqueue)
