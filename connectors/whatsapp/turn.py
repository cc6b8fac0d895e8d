"""The turn: what the inbound consumer runs for a conversation's messages, after the webhook
(connectors/whatsapp/webhook.py) has recorded them and answered.

Route saved, identity resolved (WAHA @lid), a turn that already ran before a restart not run
again, the text of each message (opt words, button replies, media fetched and stored, voice
notes transcribed), the group gate, the incoming copy for agents, then Rasa's `UserMessage`;
follow-ups after it. The channel's own notices to the sender (media that could not be
fetched, voice notes, unsupported types, the rate limit) are sent from here too. A turn that
finds the action server out of reach (connectors/whatsapp/outage.py) keeps nothing, tells the
user once that the message waits, and is handed back to the consumer to run again. Messages
over the rate limit are read the same way (files stored) but only recorded: on the tracker
without a prediction, shown to agents, their files added to the ticket being collected; no
reply and no notice.
"""
import asyncio
import contextvars
import json
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

from rasa.core.channels.channel import UserMessage
from rasa.shared.core.events import SlotSet

from connectors.whatsapp import media_fetch
from connectors.whatsapp.consumer import TurnDeferred
from connectors.whatsapp.format import payload_for_reply
from connectors.whatsapp.outage import ActionServerDown, guarded
from connectors.whatsapp.output import (
    TurnReplies,
    WhatsAppOutput,
    current_turn,
    turn_replies,
)
from helpdesk import followups, llm, metrics, redis_keys, whatsapp
from helpdesk.config import ChannelConfig, catalog
from helpdesk.logs import METADATA_KEY, correlation
from helpdesk.tickets import matched_urgent_phrases
from helpdesk.trackers import latest_tracker
from helpdesk.whatsapp import InboundMessage, MediaError, Route, save_route

if TYPE_CHECKING:  # only the annotation below: webhook.py imports this module
    from connectors.whatsapp.webhook import Shared

logger = logging.getLogger(__name__)

# what Rasa receives for a file or location sent without text (an intent of the domain)
SHARE_FILE = "/share_file"
OPT_INTENTS = {"out": "/opt_out", "in": "/opt_in"}
# the slot of the files of the ticket being collected (domain.yml; actions/common.py fills it)
ATTACHMENTS_SLOT = "attachments"
# set while the messages of a turn over the rate limit are read: no notice is sent
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("turn_quiet", default=False)
# told again when an outage lasts longer than this (the message still waits)
OUTAGE_TOLD_SECONDS = 3600
# Rasa reads a text that starts with "/" (after its own strip) as "/intent{entities}"
_COMMAND_PREFIX = re.compile(r"^[\s/]+")


def plain(text: str) -> str:
    """What a person wrote, as text Rasa cannot read as an intent: the leading slashes (and
    the white space around them) dropped, so "/restart" is "restart" and " //x" is "x"."""
    if not text or not text.lstrip().startswith("/"):
        return text
    return _COMMAND_PREFIX.sub("", text)


class WhatsAppTurn:
    """The turn half of the WAHA and Meta input channels. `WhatsAppInput`
    (connectors/whatsapp/webhook.py) mixes it in and sets what it reads below."""

    shared: "Shared"
    config: ChannelConfig
    output: WhatsAppOutput
    app: Any
    on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]]
    _tasks: Set[asyncio.Task]
    reports_edits = False  # the gateway sends a user's edits as messages (Meta)

    # what each gateway provides for the turn ------------------------------------------
    async def fetch_media(self, message: InboundMessage) -> Tuple[bytes, Optional[str]]:
        raise NotImplementedError

    async def resolve_identity(self, message: InboundMessage) -> None:
        """Hook for gateways with ids to resolve (WAHA @lid)."""

    # the channel's own notices ---------------------------------------------------------
    def _background(self, work: Awaitable[Any]) -> None:
        """Run after the webhook answers; the reference keeps the task from being collected."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notice(self, message: InboundMessage, text_key: str) -> None:
        """One of the channel's own notices (config/channels.yml texts) to the sender. In a
        group only to someone the bot is already talking to, or who mentioned it: the bot
        does not speak up about a sticker or a voice note in the middle of group chatter."""
        if _quiet.get():
            logger.info("notice not sent: the sender is over the rate limit",
                        extra={"notice": text_key})
            return
        if message.is_group and not (message.mentions_bot
                                     or await self._engaged(message.conversation_id)):
            logger.info("group notice not sent", extra={"notice": text_key,
                                                        "conversation_id": message.conversation_id})
            return
        await self._save_route(message)
        token = current_turn.set(message.conversation_id)
        try:
            await self.output.send_text_message(message.conversation_id,
                                                self.config.text(text_key))
        except Exception:
            logger.exception("notice not sent", extra={"notice": text_key})
        finally:
            current_turn.reset(token)

    async def _save_route(self, message: InboundMessage) -> None:
        route = Route(channel=message.channel, chat_id=message.chat_id,
                      participant=message.participant, name=message.name, phone=message.phone)
        await save_route(self.shared.redis, message.conversation_id, route)

    # the turn ------------------------------------------------------------------------
    async def run_turn(self, messages: List[InboundMessage], recovered: bool) -> None:
        first = messages[0]
        with correlation(first.correlation_id):
            await self.resolve_identity(first)
            for other in messages[1:]:
                other.conversation_id = first.conversation_id
            token = current_turn.set(first.conversation_id)
            try:
                await self._turn(messages, recovered)
            finally:
                current_turn.reset(token)

    async def _turn(self, messages: List[InboundMessage], recovered: bool) -> None:
        conversation = messages[0].conversation_id
        started = time.perf_counter()
        await self._save_route(messages[-1])
        if recovered:
            waiting = await self._not_processed(conversation, messages)
            if not waiting:
                logger.info("turn already ran before a restart; not run again",
                            extra={"conversation_id": conversation})
                return
            if len(waiting) < len(messages):
                logger.info("part of the batch already ran before a restart; the rest runs",
                            extra={"conversation_id": conversation,
                                   "skipped": len(messages) - len(waiting)})
            messages = waiting
        first = messages[0]
        # the turn's replies are counted under the id Rasa records the turn with
        replies = turn_replies.set(TurnReplies(first.channel, conversation, first.message_id,
                                               recovered))
        down: Optional[ActionServerDown] = None
        try:
            with guarded():
                await self._run(messages, started)
        except ActionServerDown as error:
            down = error  # Rasa saved nothing of the turn (connectors/whatsapp/outage.py)
        finally:
            turn_replies.reset(replies)
        if down is not None:
            await self._actions_unavailable(first)
            raise TurnDeferred(str(down))
        if recovered:  # a later outage is told again
            await self.shared.redis.delete(redis_keys.actions_outage_told(conversation))

    async def _actions_unavailable(self, message: InboundMessage) -> None:
        """Tell the user, once an outage, that their message waits (texts.actions_unavailable).
        Not one of the turn's replies: the turn's own run later sends all of those."""
        told = await self.shared.redis.set(redis_keys.actions_outage_told(
            message.conversation_id), "1", nx=True, ex=OUTAGE_TOLD_SECONDS)
        if not told:
            return
        try:
            await self.output.send_text_message(message.conversation_id,
                                                self.config.text("actions_unavailable"))
        except Exception:
            logger.exception("the user was not told their message waits")

    async def _run(self, messages: List[InboundMessage], started: float) -> None:
        first, last = messages[0], messages[-1]
        conversation = first.conversation_id
        texts, metadata = [], self._metadata(messages)
        # over the rate limit (every message of the batch): recorded, not answered at all
        unanswered = all(m.rate_limited for m in messages)
        quiet = _quiet.set(unanswered)
        try:
            for message in messages:
                text = await self._text_of(message, metadata)
                if text:
                    texts.append(text)
        finally:
            _quiet.reset(quiet)
        if not texts:
            return
        text = "\n".join(texts) if len(texts) > 1 else texts[0]
        if len(text) > self.config.max_message_chars:
            logger.info("message cut", extra={"chars": len(text)})
            text = text[: self.config.max_message_chars]
        route = Route(channel=last.channel, chat_id=last.chat_id, participant=last.participant)
        if first.is_group and not await self._group_gate(first, text):
            logger.info("group message read, not answered", extra={"conversation_id": conversation})
            if not unanswered:  # kept for the ticket of their next report (groups.context_*)
                await whatsapp.keep_group_context(self.shared.redis, conversation, text,
                                         self.config.context_messages,
                                         self.config.context_minutes)
            return
        if first.is_group and not unanswered:
            earlier = await whatsapp.take_group_context(self.shared.redis, conversation,
                                               self.config.context_minutes)
            if earlier:
                metadata["group_context"] = earlier
        # agents see every message that reaches Rasa, also while a person has the conversation
        await self.output.mirror(conversation, "incoming",
                                 "\n".join(m.text for m in messages if m.text) or None,
                                 metadata.get("media"), first.correlation_id)
        if unanswered:
            await self._record(UserMessage(
                text, self.output, conversation, input_channel=self.name(),
                message_id=first.message_id, metadata=metadata))
            return
        if self.config.read_receipts or self.config.typing:
            await self.shared.delivery.typing(route, True, last.message_id)
        try:
            await self.on_new_message(UserMessage(
                text, self.output, conversation, input_channel=self.name(),
                message_id=first.message_id, metadata=metadata,
            ))
        finally:
            if self.config.typing:
                self._background(self.shared.delivery.typing(route, False))
        # follow-ups (issue 4, helpdesk/followups.py): while a form waits for this user's
        # answer, a reminder and the thread's close are scheduled; otherwise what was pending
        # is cancelled. Never raises.
        await followups.after_user_turn(await self._agent(), conversation, first.correlation_id)
        logger.info("turn done", extra={
            "conversation_id": conversation, "messages": len(messages),
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "queued_ms": round((time.time() - first.received_at) * 1000, 1),
        })

    async def _record(self, message: UserMessage) -> None:
        """Put messages over the rate limit on the tracker without predicting anything (Rasa's
        `log_message`, under the conversation's lock), so they are part of the conversation
        for agents and the ticket: while a ticket is being collected their files join its
        attachments (the `attachments` slot the form's actions read)."""
        agent = await self._agent()
        if agent is None:
            raise RuntimeError("the model is not loaded yet")
        async with agent.lock_store.lock(message.sender_id):
            tracker = await agent.processor.log_message(message, should_save_tracker=False)
            files = [m["path"] for m in (message.metadata or {}).get("media") or []]
            if tracker.active_loop_name and files:
                kept = list(tracker.get_slot(ATTACHMENTS_SLOT) or [])
                new = [path for path in files if path not in kept]
                if new:
                    tracker.update(SlotSet(ATTACHMENTS_SLOT, kept + new))
            await agent.processor.save_tracker(tracker)
        logger.info("messages over the rate limit recorded, not answered", extra={
            "conversation_id": message.sender_id,
            "messages": len((message.metadata or {}).get("message_ids") or [])})

    def _metadata(self, messages: List[InboundMessage]) -> Dict[str, Any]:
        first = messages[0]
        metadata: Dict[str, Any] = {
            METADATA_KEY: first.correlation_id,
            "channel": first.channel,
            "message_ids": [m.message_id for m in messages],
            "sender_name": first.name,
            "sender_phone": first.phone,
            "is_group": first.is_group,
        }
        if first.is_group:
            metadata["group_id"] = first.chat_id
        return metadata

    async def _text_of(self, message: InboundMessage, metadata: Dict[str, Any]) -> str:
        """The text Rasa gets for one message; media and locations go to the metadata.

        Only the bot's own payloads (opt words, a shared file, a button it offered in this
        conversation) reach Rasa as intents; everything a person wrote, captions, button
        titles, transcriptions and reply ids it never offered are plain text (`plain`)."""
        if message.kind in ("edit", "revoke"):
            await self._record_change(message)
            return ""
        await self._apply_edit(message)
        if message.opt_word:
            return OPT_INTENTS[message.opt_word]
        if message.kind == "unsupported":
            await self._notice(message, "unsupported")
            return ""
        if message.payload:
            offered = await self._offered_payload(message, message.payload)
            if offered:
                return offered
            # not a reply to buttons the bot offered here: the title is what the user chose
            logger.info("reply id not offered in this conversation; read as its title",
                        extra={"conversation_id": message.conversation_id,
                               "payload_chars": len(message.payload)})
            message.payload = None
            return plain(message.text)
        if message.kind == "location":
            metadata["location"] = message.location
            return plain(message.text) or SHARE_FILE
        if message.kind == "media" and message.media:
            stored = await self._download(message)
            if stored is None:
                return plain(message.text)  # the caption still counts
            metadata.setdefault("media", []).append(stored)
            if stored["kind"] in ("audio", "voice") and not message.text:
                # LLM (issue 5): transcribed when a transcription model is configured, and
                # handled as if typed; otherwise the user is asked to write
                heard = await self._transcribed(message, stored)
                if heard:
                    return plain(heard)
                await self._notice(message, "voice_needs_text")
                return ""
            return plain(message.text) or SHARE_FILE
        text = message.text
        if text and not text.lstrip().startswith("/"):
            # a typed answer to offered buttons ("2", a title) gives that button's payload
            offered = await self._offered_payload(message, text)
            if offered:
                return offered
        # users cannot inject intents: a typed "/…" is text, not a payload
        return plain(text)

    async def _apply_edit(self, message: InboundMessage) -> None:
        """A message the user edited before its turn ran: the turn reads the edited text (the
        edit's acceptance wrote it, helpdesk/whatsapp/inbound.py)."""
        if not self.reports_edits:
            return
        edited = await self.shared.redis.get(redis_keys.inbound_edit(message.channel,
                                                                     message.message_id))
        if not edited:
            return
        message.text = edited.decode() if isinstance(edited, bytes) else edited
        if message.kind == "text":
            message.opt_word = self.config.opt_word(message.text)
        logger.info("message edited before its turn; the edited text is read", extra={
            "conversation_id": message.conversation_id, "message_id": message.message_id})

    async def _record_change(self, message: InboundMessage) -> None:
        """An edit or deletion of a message whose turn already ran (or is running): logged
        and shown to agents, never answered (no notice, no Rasa turn)."""
        edited = message.kind == "edit"
        logger.info("message edited after its turn; recorded, not answered" if edited
                    else "message deleted by its sender; recorded, not answered", extra={
                        "conversation_id": message.conversation_id,
                        "message_id": message.message_id, "original_id": message.original_id})
        note = (self.config.text("message_edited").replace("{text}", message.text) if edited
                else self.config.text("message_revoked"))
        await self.output.mirror(message.conversation_id, "incoming", note, None,
                                 message.correlation_id)

    async def _offered_payload(self, message: InboundMessage, reply: str) -> Optional[str]:
        """The payload of the button `reply` designates (its id, number or title) among the
        buttons the bot last offered in this conversation, or None."""
        buttons_json = await self.shared.redis.get(redis_keys.offered_buttons(
            message.conversation_id))
        if not buttons_json:
            return None
        try:
            buttons = json.loads(buttons_json)
        except ValueError:
            return None
        if message.payload and reply == message.payload:
            # an interactive reply carries the id we sent: it must be one of them, exactly
            for button in buttons if isinstance(buttons, list) else []:
                if isinstance(button, dict) and str(button.get("payload") or "") == reply:
                    return reply
            return None
        return payload_for_reply(reply, buttons)

    async def _transcribed(self, message: InboundMessage, stored: Dict[str, Any]) -> Optional[str]:
        """The text of a stored voice note (`helpdesk.llm.transcribe`), or None without a
        transcription model or a usable answer. When the bot will act on it (a direct chat,
        or a group message that passes the gate) it first says what it understood
        ("Entendí: «…»", config/channels.yml `voice_understood`)."""
        try:
            audio = await asyncio.to_thread(Path(stored["path"]).read_bytes)
        except OSError as error:
            logger.warning("stored voice note unreadable: %s", error)
            return None
        text = await llm.transcribe(audio, stored.get("mime_type") or "audio/ogg",
                                    stored.get("filename") or Path(stored["path"]).name,
                                    message.conversation_id)
        text = " ".join((text or "").split())[: self.config.max_message_chars]
        if not text:
            return None
        stored["transcription"] = text  # travels in the metadata (agents, the tracker)
        logger.info("voice note transcribed", extra={"chars": len(text)})
        if _quiet.get() or (message.is_group and not await self._group_gate(message, text)):
            return text  # read, not answered: nothing to say
        token = current_turn.set(message.conversation_id)
        try:
            await self.output.send_text_message(
                message.conversation_id,
                self.config.text("voice_understood").replace("{text}", text))
        except Exception:
            logger.exception("transcription notice not sent")
        finally:
            current_turn.reset(token)
        return text

    async def _download(self, message: InboundMessage) -> Optional[Dict[str, Any]]:
        # fetched when the message was accepted (connectors/whatsapp/media_fetch.py): that
        # record, waited for while the fetch is under way; without one, fetched here
        record = await self._prefetched(message)
        try:
            if record is not None and record.get("state") == media_fetch.FAILED:
                raise MediaError(record.get("error") or "not fetched",
                                 status=record.get("status"),
                                 too_large=bool(record.get("too_large")),
                                 refused=bool(record.get("refused")))
            if record is not None and record.get("state") == media_fetch.STORED:
                logger.info("media fetched at acceptance")
                return record["media"]
            stored = await media_fetch.fetch_and_store(self.fetch_media, message, self.config)
            await metrics.count_media(self.shared.redis, metrics.STORED, message.channel)
            return stored
        except MediaError as error:
            # a fetch that failed at acceptance was counted by the fetcher
            if record is None or record.get("state") != media_fetch.FAILED:
                await metrics.count_media(self.shared.redis, metrics.NOT_STORED, message.channel)
            # the error names a host at most, never a media URL (it can carry a signature)
            logger.warning("media not fetched", extra={"error": str(error)[:200],
                                                      "status": error.status,
                                                      "refused": error.refused})
            await self._notice(message, "media_too_large" if error.too_large
                               else "media_unavailable")
        except asyncio.TimeoutError:
            await metrics.count_media(self.shared.redis, metrics.NOT_STORED, message.channel)
            logger.warning("media download timed out")
            await self._notice(message, "media_unavailable")
        return None

    async def _prefetched(self, message: InboundMessage) -> Optional[Dict[str, Any]]:
        """The acceptance-time fetch's record (stored or failed), or None: no record, still
        pending after the wait, a stored file not on this host, or Redis failing."""
        if not media_fetch.prefetchable(message):
            return None
        try:
            record = await self.shared.media.result(message, self.config.media_fetch_wait_seconds)
        except Exception:
            logger.exception("media fetch record unreadable; fetching the file here")
            return None
        if record is None or record.get("state") == media_fetch.PENDING:
            if record is not None:
                logger.warning("media fetch still pending; fetching the file here")
            return None
        if record.get("state") == media_fetch.STORED and not media_fetch.stored_file_present(record):
            logger.warning("media stored at acceptance is not on this host; fetching it here")
            return None
        return record

    async def _agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    async def _tracker(self, conversation: str) -> Any:
        """The conversation's tracker for reading, None before the model loads: what this
        process's last save of it left when nothing changed since (helpdesk.trackers), so the
        channel adds no load to Rasa's own read of the turn."""
        return await latest_tracker(await self._agent(), conversation)

    async def _not_processed(self, conversation: str, messages: List[InboundMessage]
                             ) -> List[InboundMessage]:
        """The messages of a recovered batch no turn on the tracker has handled (a turn of
        several merged messages carries the first's id and all of them in its metadata)."""
        tracker = await self._tracker(conversation)
        if tracker is None:
            return messages
        seen = set()
        for event in tracker.events:
            if event.type_name == "user":
                seen.add(getattr(event, "message_id", None))
                seen.update((getattr(event, "metadata", None) or {}).get("message_ids") or [])
        return [m for m in messages if m.message_id not in seen]

    async def _group_gate(self, message: InboundMessage, text: str) -> bool:
        """In a group, answer an incident, a mention of the bot, or an ongoing exchange."""
        if message.mentions_bot or message.payload or message.opt_word:
            return True
        if await self._engaged(message.conversation_id):
            return True
        if matched_urgent_phrases(catalog().priority, [text]):
            return True
        agent = await self._agent()
        if agent is None:
            return False
        parsed = await agent.parse_message(text)
        intent = parsed.get("intent") or {}
        return (intent.get("name") in self.config.incident_intents
                and (intent.get("confidence") or 0) >= self.config.incident_confidence)

    async def _engaged(self, conversation: str) -> bool:
        tracker = await self._tracker(conversation)
        if tracker is None:
            return False
        if tracker.active_loop_name:
            return True
        horizon = time.time() - self.config.engaged_minutes * 60
        for event in reversed(tracker.events):
            if event.type_name == "session_started":
                return False
            if event.type_name == "bot":
                return event.timestamp >= horizon
        return False
