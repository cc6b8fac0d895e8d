"""RQ jobs of the follow-ups (queue `followups`, scheduled by helpdesk/followups.py).

- `followup_step(conversation_id, anchor, step)`: steps 1..max_reasks ask the pending question
  again (`EXTERNAL_followup`); the step after them escalates to a person
  (`EXTERNAL_escalate`, the handoff path of action_request_human). A reminder that leaves the
  form still waiting schedules the next step.
- `close_thread(conversation_id, anchor)`: the thread was silent for `thread.timeout_seconds`
  with the form unfinished: the spec's final message, the form ended (`EXTERNAL_thread_timeout`).

A job whose anchor is not the conversation's any more (the user wrote, or the follow-ups were
cancelled) does nothing; so does one for a conversation a person has (handoff) or a user who
opted out (BAJA): both end the conversation's follow-ups. Rasa down or
answering 5xx: the job fails and RQ runs it again (`jobs.retry_intervals`); the action knows
a step it already ran, so a retry after a lost answer does not ask twice. Rasa refusing (4xx:
bad token, intent missing from the domain) is logged and not retried.
"""
import logging
from typing import Any, Dict, Optional

from rq import get_current_job

from helpdesk import followups, handoff
from helpdesk.config import FollowupConfig, followup_config
from helpdesk.logs import mask_phone
from helpdesk.whatsapp import OptOutRegistry
from helpdesk.rasa_api import RasaRejected, trigger_intent

logger = logging.getLogger(__name__)

STALE = "stale"
WITH_PERSON = "with_person"
OPTED_OUT = "opted_out"
REJECTED = "rejected"


def _correlation_id() -> Optional[str]:
    job = get_current_job()
    return (job.meta or {}).get("correlation_id") if job else None


def _trigger(conversation_id: str, intent: str, entities: Dict[str, Any],
             options: FollowupConfig) -> Optional[Dict[str, Any]]:
    """The intent on the conversation through Rasa's HTTP API; Rasa's answer, or None when
    Rasa refused it for good. RasaUnavailable propagates (RQ retries the job)."""
    try:
        # no waiting retries inside the job: RQ runs it again later (jobs.retry_intervals), and
        # a worker is never held up by Rasa being down while other queues wait
        return trigger_intent(conversation_id, intent, entities, retries=0,
                              connect_timeout=options.rasa_connect_timeout,
                              read_timeout=options.rasa_read_timeout)
    except RasaRejected as error:
        logger.error("follow-up refused by Rasa; not retried", extra={
            "intent": intent, "conversation": mask_phone(conversation_id), "error": str(error)[:300],
        })
        return None


def _skip(client: Any, conversation_id: str, anchor: str) -> Optional[str]:
    if not followups.is_current(client, conversation_id, anchor):
        return STALE
    if handoff.is_marked(client, conversation_id):
        followups.end_chain(client, conversation_id, anchor, thread_closed=True)
        return WITH_PERSON
    if OptOutRegistry(client).is_opted_out(conversation_id):
        followups.end_chain(client, conversation_id, anchor, thread_closed=True)
        return OPTED_OUT
    return None


def followup_step(conversation_id: str, anchor: str, step: int) -> str:
    """Ask again (steps 1..max_reasks) or escalate (the step after). Returns what happened:
    "asked" (next step scheduled or none left), "answered" (the form stopped waiting),
    "escalated", "stale", "with_person", "opted_out", "rejected"."""
    options = followup_config()
    client = followups.redis_client()
    skipped = _skip(client, conversation_id, anchor)
    if skipped:
        logger.info("follow-up not sent", extra={"reason": skipped, "step": step})
        return skipped
    escalating = step > options.max_reasks
    intent = followups.ESCALATE_INTENT if escalating else followups.REASK_INTENT
    entities = {followups.ANCHOR: anchor, followups.ATTEMPT: str(step)}
    if not escalating and step == options.max_reasks and options.escalate:
        entities[followups.FINAL] = "1"  # the reminder says a person comes next
    answer = _trigger(conversation_id, intent, entities, options)
    if answer is None:
        followups.end_chain(client, conversation_id, anchor)
        return REJECTED
    if escalating:
        followups.end_chain(client, conversation_id, anchor)
        logger.info("follow-ups escalated to a person", extra={"step": step})
        return "escalated"
    if not followups.tracker_waits(answer.get("tracker"), anchor):
        followups.end_chain(client, conversation_id, anchor)
        logger.info("follow-ups ended: the form no longer waits", extra={"step": step})
        return "answered"
    next_job = followups.schedule_step(client, conversation_id, anchor, step + 1,
                                       correlation_id=_correlation_id(), options=options)
    logger.info("question asked again", extra={"step": step, "next_job": next_job})
    return "asked"


def close_thread(conversation_id: str, anchor: str) -> str:
    """The final message to a thread left silent with its form unfinished. Returns "closed"
    (Rasa ran the close; the action decides whether anything was left open), "stale",
    "with_person" or "rejected"."""
    options = followup_config()
    client = followups.redis_client()
    skipped = _skip(client, conversation_id, anchor)
    if skipped:
        logger.info("thread close not sent", extra={"reason": skipped})
        return skipped
    answer = _trigger(conversation_id, followups.CLOSE_INTENT, {followups.ANCHOR: anchor}, options)
    followups.end_chain(client, conversation_id, anchor, thread_closed=True)
    if answer is None:
        return REJECTED
    logger.info("silent thread closed")
    return "closed"
