"""The webhook of the WAHA and Meta connectors, and the per-process parts they share.

The webhook (POST /webhooks/<name>/webhook) refuses oversized bodies (413), checks the
signature on the raw bytes before parsing (401), refuses malformed JSON (400), parses every
message of the delivery (a broken one is skipped and logged; the others still count) and
records each in the inbound log, then answers 200. The turn runs later, in this process's
inbound consumer (connectors/whatsapp/turn.py): route saved, media fetched, the group gate,
then Rasa.
"""
import asyncio
import hmac
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

import redis.asyncio as aioredis
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import rasa_tuning
from connectors.whatsapp.consumer import InboundConsumer
from connectors.whatsapp.output import Delivery, Sender, WhatsAppOutput
from connectors.whatsapp.turn import WhatsAppTurn
from helpdesk import whatsapp
from helpdesk.config import ChannelConfig, channel_config
from helpdesk.logs import apply_logging_file, mask_phone, new_correlation_id
from helpdesk.settings import load_settings
from helpdesk.whatsapp import InboundLog, InboundMessage, digits

logger = logging.getLogger(__name__)


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


class WhatsAppInput(WhatsAppTurn, InputChannel):
    """Base of the WAHA and Meta input channels: the webhook here, the turn it runs later
    from `WhatsAppTurn` (connectors/whatsapp/turn.py)."""

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
            if outcome == whatsapp.RATE_LIMITED_FIRST:
                # told after the answer: a slow gateway must not hold up the acknowledgement
                self._background(self._notice(message, "rate_limited"))
            if outcome != whatsapp.ACCEPTED:
                logger.info("message not queued", extra={
                    "outcome": outcome, "conversation_id": message.conversation_id,
                    "message_id": message.message_id,
                })
        if parsed.failed_statuses:
            self._background(self.on_failed_statuses(parsed.failed_statuses))
        return response.json({"status": "ok", **outcomes, "ignored": len(parsed.skipped)})


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
