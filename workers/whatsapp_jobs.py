"""The support team told of trouble on the WhatsApp path: a message parked by the Rasa server
(its turn kept failing, or it could not be delivered), a gateway refusing the bot's
credentials. The Rasa server queues these (helpdesk/whatsapp/notices.py); the ledger, where
notices are kept and sent from, is the workers'."""
from typing import Any, Dict, Optional

from helpdesk.config import channel_config
from helpdesk.tickets import notify_humans
from workers.zoho_resources import context


def notify(notice: str, params: Dict[str, Any], once_per: Optional[str] = None,
           once_seconds: int = 3600) -> None:
    ctx = context()
    text = channel_config().human_notices[notice].format(**params)
    notify_humans(ctx.ledger, f"whatsapp_{notice}", text, once_per=once_per,
                  once_seconds=once_seconds, client=ctx.redis)
