"""Handing a conversation to a person and back: the "with a person" mark and the texts.

A conversation handed to Chatwoot agents is marked in Redis (`handoff_requested` key) from
the handoff until it goes back to the bot; the mark lets exactly one "resolved" hand it back.
The mark is not the only way back: a conversation whose mark expired or was never written is
still paused in Rasa, and the resume job asks Rasa (helpdesk.rasa_api.conversation_paused), so
an agent's "resolved", an operator's command or the maximum pause resumes any paused one. The note for the agent and the escalation message for the support chat are
built here from plain values (slots, recent user texts), with the wording of
`config/chatwoot.yml`.
"""
import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from helpdesk import chatwoot
from helpdesk import queues, redis_keys
from helpdesk.clock import redis_now
from helpdesk.config import chatwoot_config
from helpdesk.rasa_api import resume_conversation
from helpdesk.settings import support_escalation_chat
from helpdesk.whatsapp import digits, group_of, is_group_jid, send_text

REASONS = ("asked", "during_ticket", "escalation")
SUMMARY_FIELDS = ("store", "system", "priority", "person", "description")


# the mark ---------------------------------------------------------------------------------
def mark(client: Any, conversation_id: str, reason: str, max_seconds: int) -> float:
    """Sync Redis: the conversation is with a person from now on. Returns the time of the
    handoff (epoch seconds by the Redis server's clock, helpdesk/clock.py), which names it."""
    since = redis_now(client)
    value = json.dumps({"since": since, "reason": reason})
    client.set(redis_keys.handoff_requested(conversation_id), value, ex=max_seconds)
    return since


def is_marked(client: Any, conversation_id: str) -> bool:
    return bool(client.exists(redis_keys.handoff_requested(conversation_id)))


def marked_since(client: Any, conversation_id: str) -> Optional[float]:
    """The time of the handoff the mark records, None without a mark (or an unreadable one)."""
    raw = client.get(redis_keys.handoff_requested(conversation_id))
    if raw is None:
        return None
    try:
        return float(json.loads(raw)["since"])
    except (ValueError, KeyError, TypeError):
        return None


def clear(client: Any, conversation_id: str) -> bool:
    return bool(client.delete(redis_keys.handoff_requested(conversation_id)))


# texts ------------------------------------------------------------------------------------
def _value(value: Any) -> Optional[str]:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value if v)
    text = str(value).strip() if value not in (None, "") else ""
    return text or None


def summary_lines(texts: Mapping[str, Any], slots: Mapping[str, Any]) -> List[str]:
    """'Tienda: Tienda 9 (Belgrano)' ... for the slots that hold something."""
    labels = texts["field_labels"]
    lines = []
    for name in SUMMARY_FIELDS:
        value = _value(slots.get(name))
        if value and name in labels:
            lines.append(f"{labels[name]}: {value}")
    return lines


def handoff_note(texts: Mapping[str, Any], *, reason: str, reporter_name: Optional[str],
                 reporter_phone: Optional[str], slots: Mapping[str, Any],
                 recent_user_texts: Sequence[str]) -> str:
    """The private note the agent reads first: why, who, what the bot collected, what the
    user said last."""
    reason_text = texts["reasons"].get(reason) or texts["reasons"]["asked"]
    lines = [texts["note_title"].format(reason=reason_text)]
    unknown = texts["reporter_unknown"]
    lines.append(texts["reporter_line"].format(name=reporter_name or unknown,
                                               phone=reporter_phone or unknown))
    lines += summary_lines(texts, slots)
    recent = [t.strip() for t in recent_user_texts if t and t.strip()]
    if recent:
        lines.append(texts["recent_title"])
        lines += [texts["recent_line"].format(text=t) for t in recent]
    return "\n".join(lines)


def escalation_message(texts: Mapping[str, Any], *, support_chat: str, conversation_id: str,
                       reporter_phone: Optional[str], summary: Sequence[str]) -> Tuple[str, List[str]]:
    """The spec's escalation message for the support chat, and the numbers it mentions."""
    configured = digits(texts.get("human_support_number") or "")
    direct_number = not is_group_jid(support_chat) and not re.search(r"[A-Za-z]", support_chat.split("@")[0])
    if not configured and direct_number:
        configured = digits(support_chat)
    human_support = configured or texts["human_support_fallback"]
    user = digits(reporter_phone or "") or _conversation_number(conversation_id)
    text = texts["escalation_message"].format(human_support=human_support, user=user or conversation_id)
    if summary:
        text += "\n" + texts["escalation_summary"].format(summary="\n".join(summary))
    mentions = [number for number in (configured, user) if number]
    return text, mentions


def _conversation_number(conversation_id: str) -> str:
    """The reporter's number from a conversation id (direct: the id; group: the participant)."""
    if group_of(conversation_id):
        return digits(conversation_id.rsplit("-", 1)[-1])
    return conversation_id if conversation_id.isdigit() else ""


def recent_user_texts(events: Sequence[Mapping[str, Any]], limit: int) -> List[str]:
    """The last `limit` texts the user wrote (external intents and empty texts left out)."""
    texts = []
    for event in events:
        if event.get("event") != "user":
            continue
        text = (event.get("text") or "").strip()
        if not text or text.startswith("EXTERNAL_") or text.startswith("/"):
            continue
        texts.append(text)
    return texts[-limit:] if limit else []


def slots_for_summary(slots: Mapping[str, Any]) -> Dict[str, Any]:
    return {name: slots.get(name) for name in SUMMARY_FIELDS if slots.get(name) not in (None, "", [])}


# back to the bot ----------------------------------------------------------------------------
RESUME_JOB = queues.RESUME_CONVERSATION
RESUME_QUEUE = queues.CHATWOOT


# why a conversation goes back to the bot (workers.chatwoot_jobs.resume_conversation)
RESOLVED = "resolved"  # an agent resolved it in Chatwoot
OPERATOR = "operator"  # `python -m workers.chatwoot_jobs resume <conversation>`
EXPIRED = "expired"  # nobody resolved it within handoff.max_pause_seconds
CAUSES = (RESOLVED, OPERATOR, EXPIRED)


def enqueue_resume(client: Any, conversation_id: str, retry_intervals: Sequence[int],
                   correlation_id: Optional[str] = None, cause: str = RESOLVED) -> str:
    """Queue the hand-back of a conversation to the bot (the agent resolved it, or an
    operator asked). Sync Redis."""
    from rq import Queue, Retry

    intervals = list(retry_intervals)
    job = Queue(RESUME_QUEUE, connection=client).enqueue_call(
        RESUME_JOB,
        args=(conversation_id, cause),
        timeout=300,
        result_ttl=3600,
        failure_ttl=30 * 24 * 3600,
        retry=Retry(max=len(intervals), interval=intervals),
        meta={"correlation_id": correlation_id} if correlation_id else {},
        description="hand a conversation back to the bot",
    )
    return job.id


def schedule_expiry(client: Any, conversation_id: str, since: float, max_pause_seconds: int,
                    retry_intervals: Sequence[int], correlation_id: Optional[str] = None) -> Optional[str]:
    """Queue the bot's own return `max_pause_seconds` after the handoff made at `since` (by
    the Redis server's clock, the one RQ's scheduler reads). The job hands back only that
    handoff: a later one has its own. None when the maximum pause is 0 (never). Sync Redis."""
    if max_pause_seconds <= 0:
        return None
    from rq import Queue, Retry

    intervals = list(retry_intervals)
    job = Queue(RESUME_QUEUE, connection=client).enqueue_at(
        # RQ keeps whole seconds: rounded up, the pause is never shorter
        datetime.fromtimestamp(math.ceil(since + max_pause_seconds), timezone.utc),
        RESUME_JOB, conversation_id, EXPIRED, since,
        job_id=f"handoff-expiry-{_job_safe(conversation_id)}-{int(since * 1000)}",
        job_timeout=300,
        result_ttl=3600,
        failure_ttl=30 * 24 * 3600,
        retry=Retry(max=len(intervals), interval=intervals),
        meta={"correlation_id": correlation_id} if correlation_id else {},
        description="hand a conversation back to the bot after the maximum pause",
    )
    return job.id


def _job_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def resume_rasa_conversation(conversation_id: str, *, connect_timeout: float,
                             read_timeout: float, session: Any = None) -> None:
    """Append Rasa's `resume` event to the conversation's tracker (Rasa's HTTP API
    `POST /conversations/{id}/tracker/events`), so the bot answers the user again.
    Appending it twice is harmless. Raises helpdesk.rasa_api.RasaUnavailable/RasaRejected."""
    resume_conversation(conversation_id, session=session, connect_timeout=connect_timeout,
                        read_timeout=read_timeout)


# handing over -------------------------------------------------------------------------------
CHATWOOT = "chatwoot"
SUPPORT_CHAT = "support_chat"
RECORDED = "recorded"


def hand_over(conversation_id: str, *, reason: str, reporter_name: Optional[str],
              reporter_phone: Optional[str], slots: Mapping[str, Any],
              recent_texts: Sequence[str], correlation_id: Optional[str] = None) -> str:
    """Give the conversation to people. Blocking (Redis): async callers use a thread.

    With Chatwoot: the conversation is marked as with a person, its Chatwoot conversation
    is queued to open with the handoff labels and a private note, and the bot's own return
    after `handoff.max_pause_seconds` is scheduled; returns "chatwoot" (the caller pauses the
    Rasa conversation). Without Chatwoot but with SUPPORT_ESCALATION_CHAT:
    the spec's escalation message goes there (helpdesk.whatsapp.send.send_text); returns
    "support_chat" (the bot stays on: nobody would hand it back). Otherwise "recorded".
    Raises what Redis or the WhatsApp sender raise.
    """
    options = chatwoot_config()
    texts = options.handoff_texts
    if chatwoot.enabled():
        note = handoff_note(texts, reason=reason, reporter_name=reporter_name,
                            reporter_phone=reporter_phone, slots=slots, recent_user_texts=recent_texts)
        client = chatwoot.redis_client()
        since = mark(client, conversation_id, reason, options.handoff_max_seconds)
        try:
            chatwoot.open_handoff(conversation_id, note, correlation_id)
            schedule_expiry(client, conversation_id, since, options.handoff_max_pause_seconds,
                            options.retry_intervals, correlation_id)
        except Exception:
            clear(client, conversation_id)
            raise
        return CHATWOOT
    support_chat = support_escalation_chat()
    if support_chat:
        text, mentions = escalation_message(texts, support_chat=support_chat, conversation_id=conversation_id,
                                            reporter_phone=reporter_phone, summary=summary_lines(texts, slots))

        send_text(support_chat, text, mentions)
        return SUPPORT_CHAT
    return RECORDED
