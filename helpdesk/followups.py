"""Follow-ups: a question the user leaves unanswered is asked again, then a person is asked to
step in, and a thread left silent is closed (the spec's 30 minutes, 3 times, 24 hours).

After every WhatsApp turn the channel calls `after_user_turn`: when the conversation's form is
still waiting for an answer, two durable RQ jobs are scheduled (RQ's scheduler, queue
`followups`): the first reminder after `reask.delay_seconds`, and the close after
`thread.timeout_seconds`; otherwise whatever was pending is cancelled. Each reminder job
schedules the next one (reminder 1..max, then the escalation) while the form still waits.

Every job carries an *anchor*: the provider message id of the user's last message when it
was scheduled. A job whose anchor is no longer the conversation's latest user message is
stale and says nothing. That is checked three times: the state hash in Redis (a cancel that
raced with the job), the tracker inside the action under Rasa's conversation lock (a user
message being handled while the job called Rasa), and the tracker Rasa answers with (no
next step).

Workers speak through Rasa's HTTP API (`trigger_intent`, output channel "latest"), so every
text comes from the domain and is on the tracker. Times and counts: `config/followups.yml`.
"""
import asyncio
import hashlib
import logging
import math
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from helpdesk import queues, redis_keys
from helpdesk.clock import redis_now
from helpdesk.config import FollowupConfig, followup_config
from helpdesk.settings import load_settings

logger = logging.getLogger(__name__)

QUEUE = queues.FOLLOWUPS
STEP_JOB = queues.FOLLOWUP_STEP
CLOSE_JOB = queues.CLOSE_THREAD

# intents the jobs trigger (domain.yml), and the entities they carry
REASK_INTENT = "EXTERNAL_followup"
ESCALATE_INTENT = "EXTERNAL_escalate"
CLOSE_INTENT = "EXTERNAL_thread_timeout"
INTENTS = (REASK_INTENT, ESCALATE_INTENT, CLOSE_INTENT)
ANCHOR = "followup_anchor"
ATTEMPT = "followup_attempt"
FINAL = "followup_final"

EXTERNAL_PREFIX = "EXTERNAL: "  # Rasa's text of a triggered intent
_LOCK_SECONDS = 10


@lru_cache(maxsize=4)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def redis_client() -> Any:
    """The process's sync Redis client (thread-safe pool) for REDIS_URL."""
    return _redis(load_settings().redis_url)


# --- reading a tracker (event dicts, as Rasa's HTTP API and the action server give them) -----
def is_external(event: Mapping[str, Any]) -> bool:
    """A user event made by trigger_intent (a worker), not by the user."""
    return bool((event.get("metadata") or {}).get("is_external")) or str(
        event.get("text") or ""
    ).startswith(EXTERNAL_PREFIX)


def last_user_message_id(events: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """The provider message id of the user's latest own message (triggered intents skipped)."""
    for event in reversed(list(events)):
        if event.get("event") == "user" and not is_external(event):
            return event.get("message_id")
    return None


def anchor_is_latest(events: Iterable[Mapping[str, Any]], anchor: Optional[str]) -> bool:
    """True while the user has written nothing since the message `anchor`."""
    return bool(anchor) and last_user_message_id(events) == anchor


def step_seen_before(events: List[Mapping[str, Any]], anchor: str, intent: str, attempt: str) -> bool:
    """Whether this step (intent and attempt for this anchor) was already triggered before the
    latest message: a retried job after a timeout whose first call did get through."""
    latest = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=0)
    found_anchor = False
    for event in events[:latest]:
        if event.get("event") != "user":
            continue
        if not is_external(event):
            found_anchor = event.get("message_id") == anchor
            continue
        if found_anchor and _intent(event) == intent and str(entity_value(event, ATTEMPT)) == str(attempt):
            return True
    return False


def thread_left_open(events: List[Mapping[str, Any]], anchor: str, active_loop: Optional[str]) -> Optional[str]:
    """How the form that waited after the anchor message stands now:
    "open" (still active), "expired" (its session ended while it waited: Rasa already dropped
    it, the user was not told), or None (it ended: finished, cancelled, escalated, closed)."""
    start = None
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.get("event") == "user" and not is_external(event):
            if event.get("message_id") == anchor:
                start = index
            break
    if start is None:
        return None
    loop: Optional[str] = "waiting"  # the channel scheduled the close: the form waited
    for event in events[start + 1:]:
        kind = event.get("event")
        if kind == "active_loop":
            loop = event.get("name")
        elif kind == "session_started":
            return "expired" if loop else None
    return "open" if loop and active_loop else None


def tracker_waits(tracker: Optional[Mapping[str, Any]], anchor: str) -> bool:
    """From a tracker state Rasa answered with: the form still waits for an answer to the
    question asked after the anchor message (nobody wrote, not paused, a form active)."""
    if not tracker:
        return False
    if tracker.get("paused"):
        return False
    if not (tracker.get("active_loop") or {}).get("name"):
        return False
    return anchor_is_latest(tracker.get("events") or [], anchor)


def entity_value(event: Mapping[str, Any], name: str) -> Any:
    parse = event.get("parse_data") or event
    for item in parse.get("entities") or []:
        if item.get("entity") == name:
            return item.get("value")
    return None


def _intent(event: Mapping[str, Any]) -> Optional[str]:
    parse = event.get("parse_data") or event
    return (parse.get("intent") or {}).get("name")


# --- scheduling (sync Redis; the channel calls it through a thread) ---------------------------
def _digest(value: str, size: int) -> str:
    return hashlib.sha1(value.encode("utf-8")).hexdigest()[:size]


def step_job_id(conversation_id: str, anchor: str, step: int) -> str:
    """One id per conversation, question and step: the same step scheduled twice is one job."""
    return f"followup-{_digest(conversation_id, 16)}-{_digest(anchor, 12)}-{step}"


def close_job_id(conversation_id: str, anchor: str) -> str:
    return f"followup-close-{_digest(conversation_id, 16)}-{_digest(anchor, 12)}"


class _ConversationLock:
    """Held while one process reads and changes a conversation's follow-ups."""

    def __init__(self, client: Any, conversation_id: str) -> None:
        self.lock = client.lock(redis_keys.followup_lock(conversation_id), timeout=_LOCK_SECONDS,
                                blocking_timeout=_LOCK_SECONDS)

    def __enter__(self) -> None:
        if not self.lock.acquire():
            raise TimeoutError("follow-up lock not acquired")

    def __exit__(self, *exc: Any) -> None:
        try:
            self.lock.release()
        except Exception:  # expired meanwhile: nothing left to release
            pass


def _state(client: Any, conversation_id: str) -> Dict[str, str]:
    raw = client.hgetall(redis_keys.followup_state(conversation_id))
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}


def _drop_job(client: Any, job_id: Optional[str]) -> bool:
    """Remove a job that has not started (scheduled, queued, or waiting for a retry). A job
    already running is left: its anchor check makes it say nothing."""
    if not job_id:
        return False
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    try:
        job = Job.fetch(job_id, connection=client)
    except NoSuchJobError:
        return False
    if job.get_status(refresh=False) in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED):
        job.delete()
        return True
    return False


def _enqueue(client: Any, delay: float, func: str, args: tuple, job_id: str,
             options: FollowupConfig, correlation_id: Optional[str], description: str) -> str:
    from rq import Queue, Retry

    intervals = list(options.retry_intervals)
    queue = Queue(QUEUE, connection=client)
    # due by the Redis server's clock, the one the workers' scheduler reads (helpdesk/clock.py);
    # RQ keeps whole seconds (it drops the fraction): rounded up, the wait is never shorter
    at = datetime.fromtimestamp(math.ceil(redis_now(client) + delay), timezone.utc)
    job = queue.enqueue_at(
        at, func, *args,
        job_id=job_id,
        job_timeout=options.job_timeout,
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
        meta={"correlation_id": correlation_id} if correlation_id else {},
        description=description,
    )
    return job.id


def _state_ttl(options: FollowupConfig) -> int:
    return int(max(options.thread_timeout, options.reask_delay * (options.steps + 1))) + 24 * 3600


def after_turn(client: Any, conversation_id: str, anchor: Optional[str], waiting: bool, *,
               correlation_id: Optional[str] = None,
               options: Optional[FollowupConfig] = None) -> str:
    """After a user turn: cancel what was pending; when the form waits for an answer (and
    the anchor, the user's message id, is known), schedule the first reminder and the close.

    Returns "scheduled", "cancelled" (something was pending) or "idle". Raises what Redis
    raises, TimeoutError when the conversation's lock is held too long.
    """
    options = options or followup_config()
    key = redis_keys.followup_state(conversation_id)
    with _ConversationLock(client, conversation_id):
        state = _state(client, conversation_id)
        dropped = _drop_job(client, state.get("job")) | _drop_job(client, state.get("close_job"))
        if not waiting or not anchor:
            client.delete(key)
            return "cancelled" if state else "idle"
        first = _enqueue(client, options.reask_delay, STEP_JOB, (conversation_id, anchor, 1),
                         step_job_id(conversation_id, anchor, 1), options, correlation_id,
                         "follow-up: ask again") if options.steps else ""
        close = _enqueue(client, options.thread_timeout, CLOSE_JOB, (conversation_id, anchor),
                         close_job_id(conversation_id, anchor), options, correlation_id,
                         "follow-up: close a silent thread")
        pipe = client.pipeline()
        pipe.delete(key)
        pipe.hset(key, mapping={"anchor": anchor, "job": first, "close_job": close,
                                "since": f"{redis_now(client):.3f}", "correlation_id": correlation_id or ""})
        pipe.expire(key, _state_ttl(options))
        pipe.execute()
        logger.info("follow-ups scheduled", extra={
            "conversation_id": conversation_id, "replaced": dropped,
            "reask_in_s": options.reask_delay if options.steps else None,
            "close_in_s": options.thread_timeout,
        })
        return "scheduled"


def cancel(client: Any, conversation_id: str) -> bool:
    """Drop a conversation's pending follow-ups. True when something was pending."""
    with _ConversationLock(client, conversation_id):
        state = _state(client, conversation_id)
        _drop_job(client, state.get("job"))
        _drop_job(client, state.get("close_job"))
        client.delete(redis_keys.followup_state(conversation_id))
        return bool(state)


def is_current(client: Any, conversation_id: str, anchor: str) -> bool:
    """The job of this anchor is still the conversation's (nobody wrote or cancelled since)."""
    value = client.hget(redis_keys.followup_state(conversation_id), "anchor")
    return value is not None and (value.decode() if isinstance(value, bytes) else value) == anchor


def schedule_step(client: Any, conversation_id: str, anchor: str, step: int, *,
                  correlation_id: Optional[str] = None,
                  options: Optional[FollowupConfig] = None) -> Optional[str]:
    """The next step of the chain (a job calls it after its own step): scheduled only while
    the anchor is still the conversation's. Returns the job id, or None."""
    options = options or followup_config()
    if step > options.steps:
        return None
    with _ConversationLock(client, conversation_id):
        if not is_current(client, conversation_id, anchor):
            return None
        job_id = _enqueue(client, options.reask_delay, STEP_JOB, (conversation_id, anchor, step),
                          step_job_id(conversation_id, anchor, step), options, correlation_id,
                          "follow-up: escalate" if step > options.max_reasks else "follow-up: ask again")
        client.hset(redis_keys.followup_state(conversation_id), "job", job_id)
        return job_id


def end_chain(client: Any, conversation_id: str, anchor: str, *, thread_closed: bool = False) -> None:
    """No more reminders for this anchor (the form stopped waiting, or the escalation ran);
    `thread_closed`: nothing at all is left to do (the close ran, or a person has the
    conversation), so the pending jobs and the state go."""
    with _ConversationLock(client, conversation_id):
        if not is_current(client, conversation_id, anchor):
            return
        if thread_closed:
            state = _state(client, conversation_id)
            _drop_job(client, state.get("job"))
            _drop_job(client, state.get("close_job"))
            client.delete(redis_keys.followup_state(conversation_id))
        else:
            client.hset(redis_keys.followup_state(conversation_id), "job", "")


def pending(client: Any, conversation_id: str) -> Dict[str, str]:
    """What is pending for a conversation (operators, tests): anchor, job, close_job, since."""
    return _state(client, conversation_id)


# --- the channel's side ------------------------------------------------------------------------
def waiting_anchor(tracker: Any) -> Tuple[Optional[str], bool]:
    """From Rasa's tracker (rasa.shared DialogueStateTracker) after a turn: the user's latest
    own message id, and whether a form waits for the answer to the question it asked."""
    anchor = None
    for event in reversed(tracker.events):
        if getattr(event, "type_name", None) == "user" and not (
            (getattr(event, "metadata", None) or {}).get("is_external")
        ):
            anchor = getattr(event, "message_id", None)
            break
    waiting = bool(tracker.active_loop_name) and not tracker.is_paused()
    return anchor, waiting


async def after_user_turn(agent: Any, conversation_id: str,
                          correlation_id: Optional[str] = None) -> Optional[str]:
    """Called by the WhatsApp channel after each turn that reached Rasa: schedules the
    follow-ups while a form waits for this user, cancels them otherwise. Never raises (a
    follow-up is not worth a failed turn); returns what `after_turn` returned, or None."""
    try:
        if getattr(agent, "tracker_store", None) is None:
            return None
        # only the Rasa process calls this: the workers importing this module load no Rasa
        from helpdesk.trackers import latest_tracker

        # what the turn's save left (no second load of the tracker)
        tracker = await latest_tracker(agent, conversation_id)
        anchor, waiting = waiting_anchor(tracker) if tracker is not None else (None, False)
        return await asyncio.to_thread(after_turn, redis_client(), conversation_id, anchor, waiting,
                                       correlation_id=correlation_id)
    except Exception:
        logger.exception("follow-ups not updated after the turn",
                         extra={"conversation_id": conversation_id})
        return None
