"""The support team told of an inbound WhatsApp message the bot gave up on.

The Rasa server parks a message whose turn kept failing (helpdesk/whatsapp/inbound.py `park`)
and queues this job, since the ledger, where notices are kept and sent from, is the workers'.
"""
import logging

from helpdesk.config import channel_config
from helpdesk.logs import mask_phone
from helpdesk.tickets import notify_humans
from workers.zoho_resources import context

logger = logging.getLogger(__name__)


def notify_parked(parked_id: str, conversation_id: str, reason: str) -> None:
    ctx = context()
    text = channel_config().human_notices["inbound_parked"].format(
        id=parked_id, who=mask_phone(conversation_id), reason=reason)
    notify_humans(ctx.ledger, "inbound_parked", text, once_per=f"inbound_parked:{parked_id}",
                  once_seconds=7 * 24 * 3600, client=ctx.redis)
