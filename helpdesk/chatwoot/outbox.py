"""The per-conversation Chatwoot outbox: what must still be written to Chatwoot, in order.

Every mirrored message, private note and status change of one WhatsApp conversation is
appended to one Redis list, and a job is enqueued on the `chatwoot` queue to drain it unless
one is already waiting (a marker set in the same MULTI/EXEC as the append says so). A drain job takes the conversation's claim (a lock whose value is the RQ
job id, so the retry of a job whose worker died takes its own claim back at once; it lasts
longer than a job may run), handles
the head of the list and pops it only after Chatwoot accepted it, and goes on until the list
is empty. A failure leaves the head where it is and raises, so RQ retries the job with growing
waits while later entries wait behind it: order is kept and nothing is dropped. An entry
that can never succeed (`PermanentFailure`) goes to the dead letters, is logged, and the rest
goes on. Jobs that find the claim taken return at once: the holder drains what they added
(it looks again after letting go of the claim).

Nothing waits for an operator: a conversation whose drain jobs used every retry (Chatwoot down
for longer) is found by the periodic recovery pass (`recover`, every
`delivery.recover_interval_seconds`), which queues a fresh drain job, under an id made of the
pass's slot, for each outbox with entries and no live job. And a head that fails with
something other than a Chatwoot failure (a bug, bad data: a KeyError in the writer) is tried
`delivery.poison_attempts` times, then parked in the dead letters with the error (logged),
where `replay` puts it back; the rest of the conversation goes on in order.

Handlers are told how many attempts of the entry failed before, so a write whose outcome
was unknown (a timeout) is looked for before it is sent again.
"""
import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException

from helpdesk import queues, redis_keys
from helpdesk.chatwoot.client import ChatwootAuthError, ChatwootUnavailable
from helpdesk.circuit import CircuitOpen
from helpdesk.config import ChatwootConfig

logger = logging.getLogger(__name__)

QUEUE = queues.CHATWOOT
DRAIN_JOB = queues.DRAIN_CHATWOOT_OUTBOX
DEAD_LETTERS_KEPT = 10_000
# a queued drain job's marker lapses after this, in case the job was lost (a new one is queued)
QUEUED_MARK_SECONDS = 600
# how long the id of a conversation's latest drain job is kept (longer than any retries last)
DRAIN_JOB_MARK_SECONDS = 30 * 24 * 3600
# a drain job in one of these states will still write the outbox
LIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}
# failures of Chatwoot (or of what stands between us and it), never of the entry: the head
# waits for them however long they last
TRANSIENT = (ChatwootUnavailable, ChatwootAuthError, CircuitOpen, redis.RedisError, JobTimeoutException)

# KEYS: claim. ARGV: token, ttl ms
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS: claim. ARGV: token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: claim. ARGV: token, ttl ms
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: outbox, attempts. ARGV: the raw entry expected at the head, its id
_POP = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2], ARGV[2] .. ':faults')
  return 1
end
return 0
"""

Handler = Callable[[Dict[str, Any], int], None]


class PermanentFailure(Exception):
    """This entry will never be accepted (Chatwoot refused it with a 4xx, its ticket is gone)."""


class ChatwootOutbox:
    def __init__(self, client: redis.Redis, options: ChatwootConfig) -> None:
        self.client = client
        self.options = options

    # writing side (any process) -------------------------------------------------------------
    def append(self, conversation_id: str, entry: Dict[str, Any],
               correlation_id: Optional[str] = None) -> str:
        """Add an entry behind the others and make sure a drain job is queued. Returns its id.

        One queued job per conversation is enough: while one waits (its marker is set), later
        entries only join the list; the job clears the marker when it starts."""
        entry = {**entry, "id": uuid.uuid4().hex, "at": time.time()}
        if correlation_id:
            entry["correlation_id"] = correlation_id
        with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(redis_keys.chatwoot_outbox(conversation_id), _encode(entry))
            pipe.set(redis_keys.chatwoot_drain_queued(conversation_id), "1", nx=True, ex=QUEUED_MARK_SECONDS)
            _, first = pipe.execute()
        if first:
            self.kick(conversation_id, correlation_id)
        return entry["id"]

    def pending(self, conversation_id: str) -> List[Dict[str, Any]]:
        return [json.loads(raw) for raw in self.client.lrange(redis_keys.chatwoot_outbox(conversation_id), 0, -1)]

    def waiting(self) -> List[Dict[str, Any]]:
        """Every conversation with entries still to write: how many, since when, failed tries."""
        prefix = redis_keys.chatwoot_outbox("")
        found = []
        for key in self.client.scan_iter(match=f"{prefix}*", count=500):
            conversation_id = (key.decode() if isinstance(key, bytes) else key)[len(prefix):]
            head = self.client.lindex(key, 0)
            if head is None:
                continue
            entry = json.loads(head)
            attempts = self.client.hget(redis_keys.chatwoot_outbox_attempts(conversation_id), entry["id"])
            found.append({"conversation_id": conversation_id, "entries": self.client.llen(key),
                          "oldest_at": entry.get("at"), "head_kind": entry.get("kind"),
                          "head_attempts": int(attempts or 0)})
        return sorted(found, key=lambda item: item["oldest_at"] or 0)

    def kick(self, conversation_id: str, correlation_id: Optional[str] = None, delay: float = 0,
             job_id: Optional[str] = None) -> str:
        """Enqueue a drain job with its full retries, now or after `delay` seconds (RQ's
        scheduler); also for a conversation whose jobs ran out of retries (the operator's
        immediate nudge; the recovery pass does the same by itself)."""
        intervals = list(self.options.retry_intervals)
        queue = Queue(QUEUE, connection=self.client)
        options = dict(result_ttl=3600, failure_ttl=30 * 24 * 3600,
                       retry=Retry(max=len(intervals), interval=intervals),
                       meta={"correlation_id": correlation_id} if correlation_id else {},
                       description="chatwoot outbox", job_id=job_id)
        if delay > 0:
            job = queue.enqueue_in(timedelta(seconds=delay), DRAIN_JOB, conversation_id,
                                   job_timeout=self.options.job_timeout, **options)
        else:
            job = queue.enqueue_call(DRAIN_JOB, args=(conversation_id,), timeout=self.options.job_timeout,
                                     **options)
        self.client.set(redis_keys.chatwoot_drain_job(conversation_id), job.id, ex=DRAIN_JOB_MARK_SECONDS)
        return job.id

    def has_live_job(self, conversation_id: str) -> bool:
        """A drain job queued for this conversation is still to run (or to retry), or one
        holds its claim now."""
        if self.client.exists(redis_keys.chatwoot_outbox_lock(conversation_id)):
            return True
        job_id = self.client.get(redis_keys.chatwoot_drain_job(conversation_id))
        if job_id is None:
            return False
        return _job_status(self.client, job_id.decode() if isinstance(job_id, bytes) else job_id) in LIVE

    def recover(self, slot: str) -> List[str]:
        """The recovery pass: a fresh drain job for every outbox with entries and no live job
        (its jobs used their retries, or were lost). Job ids are made of `slot` and the
        conversation, so a pass run twice queues each once. Returns the conversations."""
        recovered = []
        for item in self.waiting():
            conversation_id = item["conversation_id"]
            if self.has_live_job(conversation_id):
                continue
            job_id = f"chatwoot-recover-{slot}-{conversation_id}"
            if _job_status(self.client, job_id) in LIVE:
                continue
            self.kick(conversation_id, job_id=job_id)
            recovered.append(conversation_id)
        if recovered:
            logger.warning("chatwoot mirrors without a live drain job queued again",
                           extra={"conversations": len(recovered)})
        return recovered

    def replay(self, entry_id: str) -> str:
        """Put a dead-lettered entry back, at the end of its conversation's outbox (it keeps
        its id, so a message that did land is not posted twice). Returns the conversation."""
        key = redis_keys.chatwoot_dead_letters()
        for raw in self.client.lrange(key, 0, -1):
            record = json.loads(raw)
            if record.get("entry", {}).get("id") != entry_id:
                continue
            if not self.client.lrem(key, 1, raw):
                break  # replayed by someone else meanwhile
            conversation_id = record["conversation_id"]
            with self.client.pipeline(transaction=True) as pipe:
                pipe.rpush(redis_keys.chatwoot_outbox(conversation_id),
                           _encode({**record["entry"], "replayed_at": time.time()}))
                pipe.set(redis_keys.chatwoot_drain_queued(conversation_id), "1", nx=True, ex=QUEUED_MARK_SECONDS)
                _, first = pipe.execute()
            if first:
                self.kick(conversation_id, record["entry"].get("correlation_id"))
            return conversation_id
        raise LookupError(f"no chatwoot dead letter with entry id '{entry_id}'")

    def dead_letters(self) -> List[Dict[str, Any]]:
        return [json.loads(raw) for raw in self.client.lrange(redis_keys.chatwoot_dead_letters(), 0, -1)]

    # draining side (RQ workers) --------------------------------------------------------------
    def drain(self, conversation_id: str, handle: Handler, token: Optional[str] = None) -> int:
        """Handle entries head first until the outbox is empty. Returns how many were done
        (0 when another job holds the claim). Raises what `handle` raised, head kept."""
        token = token or uuid.uuid4().hex
        # from here on, new entries queue a new job (this one may not see them)
        self.client.delete(redis_keys.chatwoot_drain_queued(conversation_id))
        key = redis_keys.chatwoot_outbox(conversation_id)
        claim = redis_keys.chatwoot_outbox_lock(conversation_id)
        attempts_key = redis_keys.chatwoot_outbox_attempts(conversation_id)
        # the claim outlives any job (RQ stops a job at its timeout) and is renewed per entry
        ttl_ms = (self.options.job_timeout + 30) * 1000
        done = 0
        while self.client.eval(_CLAIM, 1, claim, token, ttl_ms):
            try:
                while True:
                    raw = self.client.lindex(key, 0)
                    if raw is None:
                        break
                    entry = json.loads(raw)
                    # counted before the try: a worker killed mid-write leaves it counted, so
                    # the next try looks for the write before making it again
                    attempts = self.client.hincrby(attempts_key, entry["id"], 1) - 1
                    try:
                        handle(entry, attempts)
                    except PermanentFailure as error:
                        self._bury(conversation_id, entry, str(error))
                    except TRANSIENT:
                        raise  # the head waits for Chatwoot
                    except Exception as error:
                        # not Chatwoot's failure: this entry's own (a bug, bad data)
                        faults = self.client.hincrby(attempts_key, f"{entry['id']}:faults", 1)
                        if faults < self.options.poison_attempts:
                            raise
                        logger.exception("chatwoot outbox entry failed %d times; parked in the dead letters",
                                         faults, extra={"conversation_id": conversation_id,
                                                        "kind": entry.get("kind"), "entry_id": entry.get("id")})
                        self._bury(conversation_id, entry, f"{type(error).__name__}: {error}", parked=True)
                    self.client.eval(_POP, 2, key, attempts_key, raw, entry["id"])
                    done += 1
                    if not self.client.eval(_RENEW, 1, claim, token, ttl_ms):
                        logger.warning("chatwoot outbox claim lost; another job goes on")
                        return done
            finally:
                self.client.eval(_RELEASE, 1, claim, token)
            # an entry appended after the last look, while we still held the claim
            if not self.client.llen(key):
                break
        return done

    def _bury(self, conversation_id: str, entry: Dict[str, Any], error: str, parked: bool = False) -> None:
        if not parked:
            logger.error("chatwoot refused an outbox entry for good; moved to dead letters",
                         extra={"conversation_id": conversation_id, "kind": entry.get("kind"),
                                "entry_id": entry.get("id"), "error": error})
        record = {"conversation_id": conversation_id, "entry": entry, "error": error, "at": time.time(),
                  "parked": parked}
        with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(redis_keys.chatwoot_dead_letters(), _encode(record))
            pipe.ltrim(redis_keys.chatwoot_dead_letters(), -DEAD_LETTERS_KEPT, -1)
            pipe.execute()


def _job_status(client: redis.Redis, job_id: str) -> Optional[str]:
    try:
        return Job.fetch(job_id, connection=client).get_status(refresh=False)
    except NoSuchJobError:
        return None


def _encode(value: Dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
