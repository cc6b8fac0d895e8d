"""RQ jobs of the Chatwoot half (queue `chatwoot`), and the operators' command for them.

    python -m workers.chatwoot_jobs waiting [--json]   conversations whose mirror is behind
    python -m workers.chatwoot_jobs kick               a new drain job for each of them
    python -m workers.chatwoot_jobs dead [--json]      entries Chatwoot refused for good, or parked
    python -m workers.chatwoot_jobs replay ENTRY_ID    a dead letter back into its outbox
    python -m workers.chatwoot_jobs resume <id>        give a paused conversation back to the bot

- `drain_outbox(conversation_id)`: writes a conversation's Chatwoot outbox, head first
  (helpdesk/chatwoot/outbox.py): mirrored messages, private notes, the handoff, the ticket
  note with labels and custom attributes, status changes.
- `recover_mirrors()`: periodic (every `delivery.recover_interval_seconds`, a chain of time
  slots like workers/zoho_periodic.py: each run schedules its successor first, so a killed run
  keeps the chain; the worker's start-up schedules it too): a fresh drain job for each outbox
  with entries and no live job, so a mirror whose jobs used their retries goes on by itself.
- `resume_conversation(conversation_id, cause, since)`: a handed-over conversation goes back
  to the bot (an agent resolved it, an operator ran `resume`, or the maximum pause ran out);
  the Rasa conversation is resumed and the user told (the resume intent's response).

Messages are written with `source_id` = "helpdesk:<entry id>". After a failure whose outcome
is unknown (timeout, 5xx) the next attempt first looks at the conversation's latest messages
for that marker (or, on a Chatwoot that does not keep it, the same text after the last
message we know landed), so a retry never posts a message twice. Calls pass through the
Chatwoot circuit breaker shared by all workers (helpdesk/circuit.py).
"""
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

import redis
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job

from helpdesk import handoff, queues, redis_keys
from helpdesk.clock import redis_now
from helpdesk.chatwoot import (
    MESSAGE_TYPES,
    ChatwootAuthError,
    ChatwootClient,
    ChatwootNotFound,
    ChatwootRejected,
    ChatwootUnavailable,
)
from helpdesk.config import ChatwootConfig, chatwoot_config
from helpdesk.chatwoot import (
    SOURCE_PREFIX,
    ChatwootDirectory,
    redis_client,
    set_status,
    source_id_for,
)
from helpdesk.chatwoot import ChatwootOutbox, PermanentFailure
from helpdesk.chatwoot import DRAIN_LIVE as LIVE
from helpdesk.circuit import CircuitBreaker
from helpdesk.whatsapp import ROUTE_TTL_SECONDS, in_media_dir, load_route_sync
from helpdesk.settings import load_chatwoot, load_settings

logger = logging.getLogger(__name__)

BACKEND = "chatwoot"


@lru_cache(maxsize=4)
def _ledger(database_url: str) -> Any:
    from helpdesk.tickets import Ledger  # SQLAlchemy: only ticket notes need it

    return Ledger(database_url)


def _job_token() -> Optional[str]:
    job = get_current_job()
    return job.id if job else None


# the outbox ---------------------------------------------------------------------------------
def drain_outbox(conversation_id: str) -> int:
    """Write what the conversation's Chatwoot outbox holds. Returns entries written."""
    settings = load_chatwoot()
    if settings is None:
        logger.warning("chatwoot outbox not written: Chatwoot is not configured")
        return 0
    options = chatwoot_config()
    client = redis_client()
    writer = MirrorWriter(conversation_id, ChatwootClient(settings, options),
                          ChatwootDirectory(client, options), options,
                          CircuitBreaker(client, BACKEND,
                                         failure_threshold=options.circuit_failure_threshold,
                                         recovery_seconds=options.circuit_recovery_seconds))
    outbox = ChatwootOutbox(client, options)
    try:
        done = outbox.drain(conversation_id, writer.handle, _job_token())
    except Exception:
        if not writer.written:
            raise  # RQ retries this job after its next interval
        # progress before this failure: a fresh job, with its full retries, goes on after the
        # first interval, so a flapping Chatwoot never uses up the retries of a long backlog
        job = get_current_job()
        outbox.kick(conversation_id, (job.meta or {}).get("correlation_id") if job else None,
                    delay=options.retry_intervals[0])
        logger.warning("chatwoot failed after some entries; the rest follows in a new job",
                       extra={"conversation_id": conversation_id, "entries": writer.written})
        return writer.written
    finally:
        writer.close()
    if done:
        logger.info("chatwoot outbox written", extra={"conversation_id": conversation_id, "entries": done})
    return done


class MirrorWriter:
    """Carries out one outbox entry against Chatwoot."""

    def __init__(self, conversation_id: str, chatwoot: ChatwootClient, directory: ChatwootDirectory,
                 options: ChatwootConfig, breaker: CircuitBreaker) -> None:
        self.conversation_id = conversation_id
        self.chatwoot = chatwoot
        self.directory = directory
        self.options = options
        self.breaker = breaker
        self.written = 0  # entries carried out by this job

    def close(self) -> None:
        self.chatwoot.close()

    def handle(self, entry: Dict[str, Any], attempts: int) -> None:
        self.breaker.before_call()  # CircuitOpen: RQ retries the job later
        try:
            try:
                self._carry_out(entry, attempts)
            except ChatwootNotFound:
                # the Chatwoot conversation was deleted: mirror into a new one
                logger.warning("chatwoot conversation gone; making a new one",
                               extra={"conversation_id": self.conversation_id})
                self.directory.forget(self.conversation_id)
                self._carry_out(entry, attempts)
        except ChatwootUnavailable as error:
            self.breaker.record_failure(str(error))
            raise
        except ChatwootAuthError as error:
            self.breaker.record_failure(str(error))
            logger.error("chatwoot refused our token; fix CHATWOOT_API_TOKEN / CHATWOOT_ACCOUNT_ID",
                         extra={"status": error.status})
            raise
        except (ChatwootRejected, ChatwootNotFound) as error:
            self.breaker.record_success()  # Chatwoot answered; this entry is what is wrong
            raise PermanentFailure(str(error)) from error
        self.breaker.record_success()
        self.written += 1

    def _carry_out(self, entry: Dict[str, Any], attempts: int) -> None:
        kind = entry.get("kind")
        conversation = self.directory.ensure(self.chatwoot, self.conversation_id)
        if kind == "message":
            text, files = self._content(entry)
            self._post(conversation, entry, attempts, text, entry["direction"], False, files)
        elif kind == "note":
            self._post(conversation, entry, attempts, entry["text"], "outgoing", True)
        elif kind == "handoff":
            self.chatwoot.toggle_status(conversation, entry["status"])
            self.chatwoot.add_labels(conversation, entry.get("labels") or [])
            if entry.get("team_id"):
                try:
                    self.chatwoot.assign_team(conversation, entry["team_id"])
                except ChatwootRejected as error:  # a wrong team id must not cost the note
                    logger.error("handoff not assigned: check handoff.team_id in config/chatwoot.yml",
                                 extra={"error": str(error)})
            self._post(conversation, entry, attempts, entry["note"], "outgoing", True)
        elif kind == "ticket":
            self._ticket(conversation, entry, attempts)
        elif kind == "status":
            self.chatwoot.toggle_status(conversation, entry["status"])
        else:
            raise PermanentFailure(f"unknown outbox entry kind {kind!r}")

    # messages -----------------------------------------------------------------------------------
    def _content(self, entry: Dict[str, Any]) -> Tuple[str, List[Dict[str, Any]]]:
        """The text and the attachments still on disk; a gone file becomes a line of text."""
        text, files = entry.get("text") or "", []
        for attachment in entry.get("attachments") or []:
            if not in_media_dir(attachment["path"]):
                # only files the channel stored go to Chatwoot, whatever the entry says
                logger.warning("attachment refused: not a file of the media directory",
                               extra={"conversation_id": self.conversation_id, "entry_id": entry.get("id")})
                continue
            if os.path.isfile(attachment["path"]):
                files.append(attachment)
            else:
                name = attachment.get("filename") or os.path.basename(attachment["path"])
                missing = self.options.attachment_missing.format(name=name)
                text = f"{text}\n{missing}" if text else missing
        return text, files

    def _post(self, conversation: int, entry: Dict[str, Any], attempts: int, text: str,
              message_type: str, private: bool, files: Optional[List[Dict[str, Any]]] = None) -> None:
        marker = source_id_for(entry["id"])
        if attempts:
            found = self._find_posted(conversation, marker, text, message_type, private)
            if found:
                logger.info("chatwoot message found after an uncertain attempt; not posted again",
                            extra={"conversation_id": self.conversation_id, "entry_id": entry["id"]})
                self.directory.confirm_message(self.conversation_id, found, ROUTE_TTL_SECONDS)
                return
        message = self.chatwoot.create_message(conversation, text, message_type=message_type,
                                               private=private, source_id=marker, attachments=files or ())
        self.directory.confirm_message(self.conversation_id, message, ROUTE_TTL_SECONDS)

    def _find_posted(self, conversation: int, marker: str, text: str, message_type: str,
                     private: bool) -> Optional[Dict[str, Any]]:
        messages = self.chatwoot.list_messages(conversation)
        for message in messages:
            if message.get("source_id") == marker:
                return message
        if any(str(m.get("source_id") or "").startswith(SOURCE_PREFIX) for m in messages):
            return None  # this Chatwoot keeps our markers, and ours is not there
        after = self.directory.last_confirmed(self.conversation_id)
        for message in reversed(messages):
            if (
                int(message.get("id") or 0) > after
                and (message.get("content") or "") == text
                and message.get("message_type") == MESSAGE_TYPES[message_type]
                and bool(message.get("private")) == private
            ):
                return message
        return None

    # tickets ------------------------------------------------------------------------------------
    def _ticket(self, conversation: int, entry: Dict[str, Any], attempts: int) -> None:
        record = _ledger(load_settings().database_url).get(entry["ticket_id"])
        if record is None:
            raise PermanentFailure(f"ticket {entry['ticket_id']} is not in the ledger")
        number = record.zoho_ticket_number or record.reference
        labels = list(self.options.ticket_labels)
        priority_label = self.options.priority_labels.get(record.priority)
        if priority_label:
            labels.append(priority_label)
        self.chatwoot.add_labels(conversation, labels)
        priority_name = self.options.ticket_texts["priority_names"].get(record.priority, record.priority)
        values = {"ticket_number": number, "store": record.store, "system": record.system,
                  "priority": priority_name}
        self.chatwoot.merge_custom_attributes(conversation, {
            key: values.get(name) for name, key in self.options.ticket_attributes.items()
        })
        noted = self.directory.client.exists(redis_keys.chatwoot_ticket_noted(record.id, number))
        if not noted:
            self._post(conversation, entry, attempts, self._ticket_note(record, number, priority_name),
                       "outgoing", True)
            self.directory.client.set(redis_keys.chatwoot_ticket_noted(record.id, number), "1",
                                      ex=ROUTE_TTL_SECONDS)

    def _ticket_note(self, record: Any, number: str, priority_name: str) -> str:
        texts = self.options.ticket_texts
        state = texts["states"].get(record.state, record.state)
        lines = [texts["note_title"].format(number=number, state=state)]
        values = {"subject": record.subject, "priority": priority_name, "store": record.store,
                  "system": record.system, "department": record.department,
                  "description": record.description}
        for name, label in texts["note_fields"].items():
            if values.get(name):
                lines.append(f"{label}: {values[name]}")
        return "\n".join(lines)


# recovery: no outbox waits for an operator ------------------------------------------------------
RECOVER = "chatwoot-recover"


def schedule_recovery(connection: redis.Redis, options: Optional[ChatwootConfig] = None,
                      after: Optional[float] = None) -> Optional[str]:
    """Schedule the recovery pass for the slot after `after` (now, by Redis' clock, the one
    the scheduler reads); its job id, None when `recover_interval_seconds` is 0."""
    options = options or chatwoot_config()
    interval = options.recover_interval
    if interval <= 0:
        return None
    slot = int((after if after is not None else redis_now(connection)) // interval) + 1
    job_id = f"{RECOVER}-{slot}"
    try:
        if Job.fetch(job_id, connection=connection).get_status(refresh=False) in LIVE:
            return job_id
    except NoSuchJobError:
        pass
    Queue(queues.CHATWOOT, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * interval, tz=timezone.utc), queues.RECOVER_CHATWOOT_MIRRORS,
        job_id=job_id, job_timeout=max(60, interval), result_ttl=interval * 3 + 60, failure_ttl=7 * 24 * 3600,
    )
    return job_id


def recover_mirrors() -> List[str]:
    """One recovery pass (see the module docstring). Returns the conversations given a job."""
    options = chatwoot_config()
    client = redis_client()
    job = get_current_job()
    after = redis_now(client)
    prefix = f"{RECOVER}-"
    slot = job.id[len(prefix):] if job is not None and job.id.startswith(prefix) else ""
    if slot.isdigit() and options.recover_interval > 0:
        after = max(after, (int(slot) + 0.5) * options.recover_interval)
    schedule_recovery(client, options, after)  # first: a killed pass keeps the chain
    if job is not None and not client.set(redis_keys.periodic_run(job.id), "1", nx=True,
                                          ex=max(60, options.recover_interval * 3)):
        return []  # this slot already ran
    if load_chatwoot() is None:
        return []
    return ChatwootOutbox(client, options).recover(slot or f"now{int(after)}")


# back to the bot --------------------------------------------------------------------------------
def resume_conversation(conversation_id: str, cause: str = handoff.RESOLVED,
                        since: Optional[float] = None) -> str:
    """Give a conversation that is with a person back to the bot: resume it in Rasa, trigger
    the resume intent on the user's channel (the expired intent when the maximum pause ran
    out), then give the Chatwoot conversation back to the bot's status.

    With a person means marked (helpdesk/handoff.py) or, when the mark expired or was never
    written (its Chatwoot write dead-lettered, Redis lost it), paused in Rasa: any paused
    conversation can be resumed. `cause` is handoff.RESOLVED (an agent), OPERATOR (the
    command below) or EXPIRED (scheduled at the handoff made at `since`; a later handoff has
    its own schedule, so this one then does nothing)."""
    # only the resume job speaks to Rasa: the mirror jobs never load its client
    from helpdesk.rasa_api import RasaRejected, conversation_paused, trigger_intent

    options = chatwoot_config()
    client = redis_client()
    marked_since = handoff.marked_since(client, conversation_id)
    marked = marked_since is not None or handoff.is_marked(client, conversation_id)
    if cause == handoff.EXPIRED and marked_since is not None and since is not None \
            and abs(marked_since - since) > 0.001:
        logger.info("maximum pause of an earlier handoff; a later one is under way",
                    extra={"conversation_id": conversation_id})
        return "a later handoff"
    if not marked and not conversation_paused(conversation_id, connect_timeout=options.rasa_connect_timeout,
                                              read_timeout=options.rasa_read_timeout):
        logger.info("resume skipped: the conversation is not with a person",
                    extra={"conversation_id": conversation_id})
        return "not with a person"
    token = _job_token() or "direct"
    claim = redis_keys.handoff_resume_claim(conversation_id)
    if not client.set(claim, token, nx=True, ex=300) and client.get(claim) != token.encode():
        return "another job is resuming it"
    intent = options.expired_intent if cause == handoff.EXPIRED else options.resume_intent
    try:
        handoff.resume_rasa_conversation(conversation_id, connect_timeout=options.rasa_connect_timeout,
                                         read_timeout=options.rasa_read_timeout)
        route = load_route_sync(client, conversation_id)
        try:
            trigger_intent(conversation_id, intent,
                           output_channel=route.channel if route else "latest",
                           connect_timeout=options.rasa_connect_timeout,
                           read_timeout=options.rasa_read_timeout)
        except RasaRejected as error:
            # resumed, but the domain cannot answer the intent: say so loudly, do not retry
            logger.error("conversation resumed but the user was not told (domain lacks the resume intent?)",
                         extra={"conversation_id": conversation_id, "intent": intent,
                                "error": str(error)})
        handoff.clear(client, conversation_id)
    finally:
        client.delete(claim)
    if options.status_after_resume:
        set_status(conversation_id, options.status_after_resume)
    logger.info("conversation handed back to the bot", extra={"conversation_id": conversation_id,
                                                             "cause": cause, "marked": marked})
    return "resumed"


# operators ----------------------------------------------------------------------------------------
USAGE = ("usage: python -m workers.chatwoot_jobs waiting|dead [--json] | kick "
         "| replay ENTRY_ID | resume <conversation id>")


def main(argv: List[str]) -> int:
    """Outbox entries wait at the head while Chatwoot fails; once a conversation's jobs have used
    their retries (RQ's failed registry), the recovery pass starts them again by itself, and
    `kick` does it now. Nothing is lost meanwhile. `replay` puts a dead letter back; `resume`
    gives a paused conversation back to the bot now (marked or not)."""
    if argv and argv[0] == "resume":
        if len(argv) != 2 or not argv[1].strip():
            print(USAGE, file=sys.stderr)
            return 2
        return _resume_command(argv[1].strip())
    if not argv or argv[0] not in ("waiting", "kick", "dead", "replay") or (argv[0] == "replay" and len(argv) != 2):
        print(USAGE, file=sys.stderr)
        return 2
    outbox = ChatwootOutbox(redis_client(), chatwoot_config())
    as_json = "--json" in argv
    if argv[0] == "replay":
        try:
            conversation_id = outbox.replay(argv[1])
        except LookupError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"{conversation_id}: entry {argv[1]} queued again")
        return 0
    if argv[0] == "kick":
        for item in outbox.waiting():
            print(f"{item['conversation_id']}: job {outbox.kick(item['conversation_id'])}")
        return 0
    rows = outbox.waiting() if argv[0] == "waiting" else outbox.dead_letters()
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        if argv[0] == "waiting":
            age = time.time() - (row["oldest_at"] or time.time())
            print(f"{row['conversation_id']}: {row['entries']} waiting for {age:.0f} s, "
                  f"head {row['head_kind']} tried {row['head_attempts']} times")
        else:
            state = "parked" if row.get("parked") else "refused"
            print(f"{row['conversation_id']}: {row['entry'].get('kind')} {row['entry'].get('id')} "
                  f"{state}: {row['error']}")
    if not rows:
        print("nothing" if argv[0] == "dead" else "every mirror is up to date")
    return 0


def _resume_command(conversation_id: str) -> int:
    """Run the hand-back here and now (Rasa must be up): 0 when the bot has the conversation
    again (or already had it), 1 when Rasa could not be reached or refused."""
    # the Rasa client only where it is used, as in resume_conversation (the mirror jobs never load it)
    from helpdesk.rasa_api import RasaError

    try:
        result = resume_conversation(conversation_id, handoff.OPERATOR)
    except RasaError as error:
        print(f"{conversation_id}: not resumed: {error}", file=sys.stderr)
        return 1
    print(f"{conversation_id}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
