"""What the WAHA and Meta connectors share: the webhook, the inbound log, the turn.

The webhook (POST /webhooks/<name>/webhook) refuses oversized bodies (413), checks the
signature on the raw bytes before parsing (401), refuses malformed JSON (400), parses every
message of the delivery (a broken one is skipped and logged; the others still count) and
records each in the inbound log, then answers 200. The turn runs later, in this process's
inbound consumer: route saved, media fetched, the group gate, then Rasa.
"""
import asyncio
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Text, Tuple

import redis.asyncio as aioredis
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.whatsapp.consumer import InboundConsumer
from connectors.whatsapp.format import payload_for_reply
from connectors.whatsapp.output import Delivery, Sender, WhatsAppOutput, current_turn
from helpdesk import followups, redis_keys
from helpdesk import whatsapp as inbound
from helpdesk import llm
from helpdesk import whatsapp as media_store
from connectors import rasa_tuning
from helpdesk.config import catalog
from helpdesk.config import ChannelConfig, channel_config
from helpdesk.whatsapp import Route, digits, save_route
from helpdesk.whatsapp import MediaError
from helpdesk.whatsapp import InboundLog, InboundMessage
from helpdesk.logs import METADATA_KEY, apply_logging_file, correlation, mask_phone, new_correlation_id
from helpdesk.tickets import matched_urgent_phrases
from helpdesk.settings import load_settings

logger = logging.getLogger(__name__)

# what Rasa receives for a file or location sent without text (an intent of the domain)
SHARE_FILE = "/share_file"
OPT_INTENTS = {"out": "/opt_out", "in": "/opt_in"}


@dataclass
class Parsed:
    """A delivery, parsed: the user messages in it and what was skipped (with why)."""

    messages: List[InboundMessage] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (reason, detail)
    failed_statuses: List[Dict[str, Any]] = field(default_factory=list)


class Shared:
    """Per-process parts every WhatsApp connector uses: Redis, the delivery, the consumer."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.config = channel_config()
        self.redis = aioredis.Redis.from_url(
            self.settings.redis_url, socket_timeout=5, socket_connect_timeout=2,
            health_check_interval=30,
        )
        self.delivery = Delivery(self.redis, self.config)
        self.log = InboundLog(self.redis, self.config.dedupe_ttl_seconds,
                              self.config.rate_messages, self.config.rate_window_seconds,
                              self.config.rate_cooldown_seconds)
        self.handlers: Dict[str, Callable[[List[InboundMessage], bool], Awaitable[None]]] = {}
        self.consumer: Optional[InboundConsumer] = None
        self.started = False

    async def handle(self, messages: List[InboundMessage], recovered: bool) -> None:
        handler = self.handlers.get(messages[0].channel)
        if handler is None:
            logger.error("no connector for channel; message left unprocessed",
                         extra={"channel": messages[0].channel})
            return
        await handler(messages, recovered)

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.consumer = InboundConsumer(self.redis, self.handle, self.config)
        self.consumer.start()
        self.delivery.start()

    async def stop(self) -> None:
        if self.consumer:
            await self.consumer.stop()
        await self.delivery.stop()


_shared: Optional[Shared] = None


def shared() -> Shared:
    global _shared
    if _shared is None:
        _shared = Shared()
    return _shared


class WhatsAppInput(InputChannel):
    """Base of the WAHA and Meta input channels."""

    def __init__(self) -> None:
        rasa_tuning.apply()
        self.shared = shared()
        self.config: ChannelConfig = self.shared.config
        self.app: Any = None
        self._tasks: Set[asyncio.Task] = set()
        self.on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]] = None
        self.output = WhatsAppOutput(self.name(), self.shared.delivery, self.shared.redis,
                                     ask_in_direct=self.config.ask_in == "direct")
        self.shared.delivery.register(self.name(), self.make_sender())
        self.shared.handlers[self.name()] = self.run_turn

    # what each gateway provides -----------------------------------------------------
    def make_sender(self) -> Sender:
        raise NotImplementedError

    def verify(self, request: Request, body: bytes) -> bool:
        raise NotImplementedError

    async def parse(self, payload: Dict[str, Any]) -> Parsed:
        raise NotImplementedError

    async def fetch_media(self, message: InboundMessage) -> Tuple[bytes, Optional[str]]:
        raise NotImplementedError

    async def resolve_identity(self, message: InboundMessage) -> None:
        """Hook for gateways with ids to resolve (WAHA @lid)."""

    async def on_failed_statuses(self, statuses: List[Dict[str, Any]]) -> None:
        """Hook for delivery failures reported by webhook (Meta)."""

    def extra_routes(self, hooks: Blueprint) -> None:
        """Hook for gateway-specific routes (Meta's verification GET)."""

    def get_output_channel(self) -> Optional[OutputChannel]:
        return self.output

    # the webhook ---------------------------------------------------------------------
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        self.on_new_message = on_new_message
        hooks = Blueprint(f"{self.name()}_webhook", __name__)

        @hooks.listener("after_server_start")
        async def start_consumer(app: Any, loop: Any) -> None:
            import os

            path = os.environ.get("HELPDESK_LOGGING_CONFIG")
            if path:
                apply_logging_file(path)
            self.app = app
            if self.on_new_message is not None:  # not in the ingress: it runs no turns
                self.shared.start()

        @hooks.listener("before_server_stop")
        async def stop_consumer(app: Any, loop: Any) -> None:
            if self.shared.started:
                self.shared.started = False
                await self.shared.stop()

        @hooks.route("/", methods=["GET"])
        async def alive(request: Request) -> HTTPResponse:
            return response.json({"status": "ok", "channel": self.name()})

        self.extra_routes(hooks)

        @hooks.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            return await self.receive(request)

        return hooks

    async def receive(self, request: Request) -> HTTPResponse:
        body = request.body or b""
        if len(body) > self.config.max_body_bytes:
            logger.info("webhook body too large", extra={"bytes": len(body)})
            return response.json({"error": "body too large"}, status=413)
        if not self.verify(request, body):
            logger.warning("webhook signature missing or wrong", extra={"channel": self.name()})
            return response.json({"error": "invalid signature"}, status=401)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return response.json({"error": "body is not valid JSON"}, status=400)
        if not isinstance(payload, dict):
            return response.json({"error": "body must be a JSON object"}, status=400)
        parsed = await self.parse(payload)
        for reason, detail in parsed.skipped:
            logger.info("webhook item ignored", extra={"reason": reason, "detail": detail})
        outcomes: Dict[str, int] = {}
        for message in parsed.messages:
            message.correlation_id = message.correlation_id or new_correlation_id()
            try:
                outcome, _entry = await self.shared.log.accept(message)
            except Exception:
                # not recorded: answer 5xx so the gateway delivers it again later
                logger.exception("inbound log unavailable")
                return response.json({"error": "temporarily unavailable"}, status=503)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == inbound.RATE_LIMITED_FIRST:
                # told after the answer: a slow gateway must not hold up the acknowledgement
                self._background(self._notice(message, "rate_limited"))
            if outcome != inbound.ACCEPTED:
                logger.info("message not queued", extra={
                    "outcome": outcome, "conversation_id": message.conversation_id,
                    "message_id": message.message_id,
                })
        if parsed.failed_statuses:
            self._background(self.on_failed_statuses(parsed.failed_statuses))
        return response.json({"status": "ok", **outcomes, "ignored": len(parsed.skipped)})

    def _background(self, work: Awaitable[Any]) -> None:
        """Run after the webhook answers; the reference keeps the task from being collected."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notice(self, message: InboundMessage, text_key: str) -> None:
        """One of the channel's own notices (config/channels.yml texts) to the sender. In a
        group only to someone the bot is already talking to, or who mentioned it: the bot
        does not speak up about a sticker or a voice note in the middle of group chatter."""
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
        first, last = messages[0], messages[-1]
        conversation = first.conversation_id
        started = time.perf_counter()
        await self._save_route(last)
        if recovered and await self._already_processed(conversation, messages):
            logger.info("turn already ran before a restart; not run again",
                        extra={"conversation_id": conversation})
            return
        texts, metadata = [], self._metadata(messages)
        for message in messages:
            text = await self._text_of(message, metadata)
            if text:
                texts.append(text)
        if not texts:
            return
        text = "\n".join(texts) if len(texts) > 1 else texts[0]
        if len(text) > self.config.max_message_chars:
            logger.info("message cut", extra={"chars": len(text)})
            text = text[: self.config.max_message_chars]
        route = Route(channel=last.channel, chat_id=last.chat_id, participant=last.participant)
        if first.is_group and not await self._group_gate(first, text):
            logger.info("group message read, not answered", extra={"conversation_id": conversation})
            return
        # agents see every message that reaches Rasa, also while a person has the conversation
        await self.output.mirror(conversation, "incoming",
                                 "\n".join(m.text for m in messages if m.text) or None,
                                 metadata.get("media"), first.correlation_id)
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
        """The text Rasa gets for one message; media and locations go to the metadata."""
        if message.opt_word:
            return OPT_INTENTS[message.opt_word]
        if message.kind == "unsupported":
            await self._notice(message, "unsupported")
            return ""
        if message.payload:
            return message.payload
        if message.kind == "location":
            metadata["location"] = message.location
            return message.text or SHARE_FILE
        if message.kind == "media" and message.media:
            stored = await self._download(message)
            if stored is None:
                return message.text  # the caption still counts
            metadata.setdefault("media", []).append(stored)
            if message.media.kind in ("audio", "voice") and not message.text:
                # LLM (issue 5): transcribed when a transcription model is configured, and
                # handled as if typed; otherwise the user is asked to write
                heard = await self._transcribed(message, stored)
                if heard:
                    return heard
                await self._notice(message, "voice_needs_text")
                return ""
            return message.text or SHARE_FILE
        text = message.text
        if text and not text.startswith("/"):
            buttons_json = await self.shared.redis.get(redis_keys.offered_buttons(
                message.conversation_id))
            if buttons_json:
                payload = payload_for_reply(text, json.loads(buttons_json))
                if payload:
                    return payload
        elif text.startswith("/"):
            # users cannot inject intents: a typed "/…" is text, not a payload
            text = text.lstrip("/") or text
        return text

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
        if message.is_group and not await self._group_gate(message, text):
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
        media = message.media
        limits = self.config
        try:
            if media.error or (not media.url and not media.media_id):
                raise MediaError(f"the gateway has no file: {media.error or 'no url'}")
            data, content_type = await asyncio.wait_for(
                self.fetch_media(message), timeout=limits.media_timeout_seconds
            )
            mime = (media.mime_type or content_type or "application/octet-stream").split(";")[0]
            if not limits.media_allowed(mime):
                raise MediaError(f"type {mime} not accepted")
            stored = await asyncio.to_thread(
                media_store.store, data, mime, media.kind, media.filename
            )
            logger.info("media stored", extra={"kind": media.kind, "bytes": stored.size,
                                               "sha256": stored.sha256[:12]})
            return stored.to_dict()
        except MediaError as error:
            logger.warning("media not fetched", extra={"error": str(error)[:200],
                                                      "status": error.status})
            await self._notice(message, "media_too_large" if error.too_large
                               else "media_unavailable")
        except asyncio.TimeoutError:
            logger.warning("media download timed out")
            await self._notice(message, "media_unavailable")
        return None

    async def _agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    async def _tracker(self, conversation: str) -> Any:
        """The conversation's tracker from Rasa's tracker store, None before the model loads."""
        agent = await self._agent()
        if agent is None or agent.tracker_store is None:
            return None
        return await agent.tracker_store.retrieve(conversation)

    async def _already_processed(self, conversation: str, messages: List[InboundMessage]) -> bool:
        tracker = await self._tracker(conversation)
        if tracker is None:
            return False
        ids = {m.message_id for m in messages}
        return any(getattr(event, "message_id", None) in ids
                   for event in tracker.events if event.type_name == "user")

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


def signature_matches(secret: str, body: bytes, given: Optional[str], digest: str,
                      prefix: str = "") -> bool:
    """Constant-time check of a hex HMAC of the raw body."""
    if not given:
        return False
    given = given.strip()
    if prefix:
        if not given.lower().startswith(prefix):
            return False
        given = given[len(prefix):]
    expected = hmac.new(secret.encode(), body, digest).hexdigest()
    return hmac.compare_digest(expected, given.lower())


def mentions_of(text: str, ids: List[str]) -> bool:
    """Whether the text mentions any of these WhatsApp ids ("@5491…")."""
    numbers = {digits(i) for i in ids if i}
    return any(re.search(rf"@{n}(?!\d)", text) for n in numbers if n)


def strip_mentions(text: str, ids: List[str]) -> str:
    for number in {digits(i) for i in ids if i}:
        if number:
            text = re.sub(rf"@{number}(?!\d)\s*", "", text)
    return text.strip()


__all__ = ["WhatsAppInput", "Parsed", "signature_matches", "mentions_of", "strip_mentions",
           "mask_phone"]
