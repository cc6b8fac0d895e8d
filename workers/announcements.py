"""RQ jobs that tell a reporter about their ticket through Rasa's `trigger_intent`.

- `announce_delivered`: the Zoho number of a ticket whose submit turn said "Zoho no está
  disponible…" (intent EXTERNAL_ticket_delivered, entities ticket_number, priority, reference);
- `announce_status`: a status change seen by the poller (intent
  EXTERNAL_ticket_status_changed, entities ticket_number, status, reference).

The domain's rules answer these intents with its responses, through the conversation's own
channel (in a group the channel mentions the reporter). Users who opted out get nothing.
Rasa unreachable → RQ retries (config/zoho.yml `announcements`); Rasa refusing (bad token,
unknown intent) → no retries, the job is a dead letter.

Said once, whatever fails: each announcement has a key, the job's id ("announce-delivered-
<ticket>", "announce-status-<ticket>-<change>", helpdesk/zoho/queue.py), passed to Rasa as the
entity `announcement`. The action that speaks (actions/ticket_announcements.py) records the key
in the ledger's `announcements` in one atomic insert, and says nothing when it is there. A read
timeout does not mean Rasa did not speak (it may be waiting on the conversation's lock behind a
long turn, and run the call later), nor does a work horse killed between speaking and marking:
so every run, the first and each retry, looks the key up first and, when it was said, only
marks the ticket; when it was not (yet), it triggers again, and of the two calls Rasa runs only
the first to reach the action speaks. docs/reliability.md "Announcements" says what is promised.
"""
import logging
import time

from rq import get_current_job

from helpdesk.tickets import DELIVERED
from helpdesk.whatsapp import OptOutRegistry
from helpdesk.tickets import priority_label
from helpdesk.rasa_api import RasaRejected, trigger_intent
from helpdesk.zoho import announce_job_id, status_job_id
from workers.job_control import give_up
from workers.zoho_resources import Context, context

logger = logging.getLogger(__name__)

INTENT_DELIVERED = "EXTERNAL_ticket_delivered"
INTENT_STATUS_CHANGED = "EXTERNAL_ticket_status_changed"
# the entity that carries the announcement's key (actions/ticket_announcements.py)
ANNOUNCEMENT_ENTITY = "announcement"


def announce_delivered(ticket_id: str) -> str:
    ctx = context()
    record = ctx.ledger.get(ticket_id)
    if record is None or record.state != DELIVERED:
        give_up(f"no delivered ticket {ticket_id} to announce")
    if record.announced_at:
        return "already announced"
    key = _key(announce_job_id(ticket_id))
    if ctx.ledger.announcement_spoken(key):
        # said by an earlier run (killed before marking) or by a call Rasa ran late
        ctx.ledger.mark_announced(ticket_id)
        return "said before"
    if _opted_out(ctx, record.conversation_id):
        ctx.ledger.mark_announced(ticket_id)
        return "opted out"
    _speak(ctx, record.conversation_id, INTENT_DELIVERED, key, {
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
    key = _key(status_job_id(ticket_id, status, time.time()))
    if ctx.ledger.announcement_spoken(key):
        return "said before"
    if _opted_out(ctx, record.conversation_id):
        return "opted out"
    _speak(ctx, record.conversation_id, INTENT_STATUS_CHANGED, key, {
        "ticket_number": record.zoho_ticket_number,
        # the status answer's mapping (actions/ticket_status.py)
        "status": ctx.config.status_polling.label(status),
        "reference": record.reference,
    })
    return "announced"


def _key(outside_rq: str) -> str:
    """The announcement's key: the RQ job's id, the same in every retry and in a dead letter
    requeued (the poller gives each status change a job id of its own). Called outside RQ
    (by hand), each call is an announcement of its own: `outside_rq`."""
    job = get_current_job()
    return job.id if job is not None else outside_rq


def _opted_out(ctx: Context, conversation_id: str) -> bool:
    return OptOutRegistry(ctx.redis, ctx.ledger).is_opted_out(conversation_id)


def _speak(ctx: Context, conversation_id: str, intent: str, key: str, entities: dict) -> None:
    policy = ctx.config.announcements
    try:
        trigger_intent(
            conversation_id,
            intent,
            {**entities, ANNOUNCEMENT_ENTITY: key},
            settings=ctx.settings,
            connect_timeout=policy.connect_timeout,
            read_timeout=policy.read_timeout,
        )
    except RasaRejected as error:
        give_up(str(error))
