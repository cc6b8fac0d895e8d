"""RQ jobs that tell a reporter about their ticket through Rasa's `trigger_intent`.

- `announce_delivered`: the Zoho number of a ticket whose submit turn said "Zoho no está
  disponible…" (intent EXTERNAL_ticket_delivered, entities ticket_number, priority, reference);
- `announce_status`: a status change seen by the poller (intent
  EXTERNAL_ticket_status_changed, entities ticket_number, status, reference).

The domain's rules answer these intents with its responses, through the conversation's own
channel (in a group the channel mentions the reporter). Users who opted out get nothing.
Rasa unreachable → RQ retries (config/zoho.yml `announcements`); Rasa refusing (bad token,
unknown intent) → no retries, the job is a dead letter.
"""
import logging

from helpdesk.tickets import DELIVERED
from helpdesk.whatsapp import OptOutRegistry
from helpdesk.tickets import priority_label
from helpdesk.rasa_api import RasaRejected, trigger_intent
from workers.job_control import give_up
from workers.zoho_resources import Context, context

logger = logging.getLogger(__name__)

INTENT_DELIVERED = "EXTERNAL_ticket_delivered"
INTENT_STATUS_CHANGED = "EXTERNAL_ticket_status_changed"


def announce_delivered(ticket_id: str) -> str:
    ctx = context()
    record = ctx.ledger.get(ticket_id)
    if record is None or record.state != DELIVERED:
        give_up(f"no delivered ticket {ticket_id} to announce")
    if record.announced_at:
        return "already announced"
    if _opted_out(ctx, record.conversation_id):
        ctx.ledger.mark_announced(ticket_id)
        return "opted out"
    _speak(ctx, record.conversation_id, INTENT_DELIVERED, {
        "ticket_number": record.zoho_ticket_number,
        "priority": priority_label(ctx.catalog.priority, record.priority),
        "reference": record.reference,
    })
    ctx.ledger.mark_announced(ticket_id)
    return "announced"


def announce_status(ticket_id: str, status: str) -> str:
    """`status` is Zoho's status name; the user reads its label from config/zoho.yml."""
    ctx = context()
    record = ctx.ledger.get(ticket_id)
    if record is None:
        give_up(f"no ticket {ticket_id} to announce")
    if _opted_out(ctx, record.conversation_id):
        return "opted out"
    _speak(ctx, record.conversation_id, INTENT_STATUS_CHANGED, {
        "ticket_number": record.zoho_ticket_number,
        # the status answer's mapping (actions/ticket_status.py)
        "status": ctx.config.status_polling.label(status),
        "reference": record.reference,
    })
    return "announced"


def _opted_out(ctx: Context, conversation_id: str) -> bool:
    return OptOutRegistry(ctx.redis, ctx.ledger).is_opted_out(conversation_id)


def _speak(ctx: Context, conversation_id: str, intent: str, entities: dict) -> None:
    policy = ctx.config.announcements
    try:
        trigger_intent(
            conversation_id,
            intent,
            entities,
            settings=ctx.settings,
            connect_timeout=policy.connect_timeout,
            read_timeout=policy.read_timeout,
        )
    except RasaRejected as error:
        give_up(str(error))
