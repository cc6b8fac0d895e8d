"""The webhook of the WAHA and Meta connectors, and the per-process parts they share.

The webhook (POST /webhooks/<name>/webhook) refuses oversized bodies (413) before they are
buffered (a streaming route read by connectors/body.py), checks the signature on the raw bytes
before parsing (401), refuses malformed JSON (400), parses every message of the delivery (a
broken one, or one with an id no gateway sends, is skipped and logged; the others still count),
skips messages outside the replay window (a provider timestamp older than the dedupe window
minus `webhook.replay_margin_seconds`, or further ahead than `webhook.max_clock_skew_seconds`:
logged with the message id and age, never recorded, answered 200 like every skip so the gateway
does not redeliver them) and records each of the others in the inbound log (a WAHA file's
fetch job with it: connectors/whatsapp/media_fetch.py), then answers 200.
A channel without its webhook secret does not start (`require_secret`) unless
HELPDESK_INSECURE_WEBHOOKS=true, which lets unsigned deliveries in with a warning at start. The turn runs later, in this process's
inbound consumer (connectors/whatsapp/turn.py): route saved, media fetched, the group gate,
then Rasa.
"""
import asyncio
import hmac
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple

import redis.asyncio as aioredis
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors import rasa_tuning
from connectors.body import read_body
from connectors.whatsapp import outage
from connectors.whatsapp.consumer import InboundConsumer
from connectors.whatsapp.media_fetch import Fetch, MediaFetcher, MediaFetches, prefetchable
from connectors.whatsapp.output import Delivery, Sender, WhatsAppOutput
from connectors.whatsapp.turn import WhatsAppTurn
from helpdesk import whatsapp
from helpdesk.config import ChannelConfig, channel_config
from helpdesk.errors import ConfigError
from helpdesk.logs import apply_logging_file, mask_phone, mask_text, new_correlation_id
from helpdesk.settings import (
    WEBHOOK_SECRETS,
    insecure_webhooks,
    load_settings,
    unsigned_webhooks_message,
)
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
        self.delivery.tell_support = whatsapp.tell_support
        self.log = InboundLog(self.redis, self.config.dedupe_ttl_seconds,
                              self.config.rate_messages, self.config.rate_window_seconds,
                              self.config.rate_cooldown_seconds,
                              self.config.inbound_partitions)
        self.handlers: Dict[str, Callable[[List[InboundMessage], bool], Awaitable[None]]] = {}
        self.consumer: Optional[InboundConsumer] = None
        self.started = False
        # media fetched at acceptance (connectors/whatsapp/media_fetch.py): the gateways that
        # need it (WAHA deletes files) and this process's fetcher, in the ingress too
        self.media = MediaFetches(self.redis, self.config.dedupe_ttl_seconds)
        self.media_fetchers: Dict[str, Fetch] = {}
        self.fetcher: Optional[MediaFetcher] = None

    async def handle(self, messages: List[InboundMessage], recovered: bool) -> None:
        handler = self.handlers.get(messages[0].channel)
        if handler is None:
            logger.error("no connector for channel; message left unprocessed",
                         extra={"channel": messages[0].channel})
            return
        await handler(messages, recovered)

    async def parked(self, message: InboundMessage, reason: str, parked_id: str) -> None:
        """A message given up on: the user hears that a person will look at it, the support
        team gets a notice (a worker writes it to the ledger and sends it)."""
        try:
            await whatsapp.async_send_text(self.redis, message.conversation_id,
                                           self.config.text("message_parked"))
        except Exception:
            logger.exception("the user was not told of a parked message")
        await whatsapp.tell_support(
            "inbound_parked", {"id": parked_id, "who": mask_phone(message.conversation_id),
                               "reason": mask_text(reason)},
            once_per=f"inbound_parked:{parked_id}", once_seconds=7 * 24 * 3600)

    def start_fetcher(self) -> None:
        """Start this process's media fetcher (every process serving the webhook runs one)."""
        if self.fetcher is None and self.media_fetchers:
            self.fetcher = MediaFetcher(self.media, self.config, self.media_fetchers)
            self.fetcher.start()

    async def stop_fetcher(self) -> None:
        if self.fetcher is not None:
            fetcher, self.fetcher = self.fetcher, None
            await fetcher.stop()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.consumer = InboundConsumer(self.redis, self.handle, self.config,
                                        on_parked=self.parked)
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
        outage.install()
        self.shared = shared()
        self.config: ChannelConfig = self.shared.config
        self.app: Any = None
        self._tasks: Set[asyncio.Task] = set()
        self.on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]] = None
        self.output = WhatsAppOutput(self.name(), self.shared.delivery, self.shared.redis,
                                     ask_in_direct=self.config.ask_in == "direct")
        self.shared.delivery.register(self.name(), self.make_sender())
        self.shared.handlers[self.name()] = self.run_turn
        if self.prefetch_media:
            self.shared.media_fetchers[self.name()] = self.fetch_media

    # a gateway whose media files disappear soon (WAHA) has them fetched at acceptance
    prefetch_media = False

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
            self.shared.start_fetcher()  # the ingress too: media is fetched where it arrives
            if self.on_new_message is not None:  # not in the ingress: it runs no turns
                self.shared.start()

        @hooks.listener("before_server_stop")
        async def stop_consumer(app: Any, loop: Any) -> None:
            await self.shared.stop_fetcher()
            if self.shared.started:
                self.shared.started = False
                await self.shared.stop()

        @hooks.route("/", methods=["GET"])
        async def alive(request: Request) -> HTTPResponse:
            return response.json({"status": "ok", "channel": self.name()})

        self.extra_routes(hooks)

        # a streaming route: the body is read by `receive` with the limit, never buffered whole
        @hooks.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            return await self.receive(request)

        return hooks

    async def receive(self, request: Request) -> HTTPResponse:
        body = await read_body(request, self.config.max_body_bytes)
        if body is None:
            logger.warning("webhook body too large", extra={
                "channel": self.name(), "limit": self.config.max_body_bytes,
                "content_length": request.headers.get("content-length")})
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
        self._replay_window(parsed)
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
            if outcome in whatsapp.RECORDED:  # over the rate limit too: its file is kept
                await self.prefetch(message)
            if outcome == whatsapp.RATE_LIMITED_FIRST:
                # told after the answer: a slow gateway must not hold up the acknowledgement
                self._background(self._notice(message, "rate_limited"))
            if outcome in (whatsapp.RATE_LIMITED, whatsapp.RATE_LIMITED_FIRST):
                logger.info("message over the rate limit: recorded, not answered", extra={
                    "conversation_id": message.conversation_id,
                    "message_id": message.message_id})
            elif outcome != whatsapp.ACCEPTED:
                logger.info("message not queued", extra={
                    "outcome": outcome, "conversation_id": message.conversation_id,
                    "message_id": message.message_id,
                })
        if parsed.failed_statuses:
            self._background(self.on_failed_statuses(parsed.failed_statuses))
        return response.json({"status": "ok", **outcomes, "ignored": len(parsed.skipped)})

    async def prefetch(self, message: InboundMessage) -> None:
        """Record the fetch of a recorded message's file (one Redis call; the download runs in
        a fetcher). Not recorded (Redis failing right after the accept), the turn fetches the
        file itself, as it does for a message with no fetch record."""
        if not self.prefetch_media or not prefetchable(message):
            return
        try:
            await self.shared.media.enqueue(message)
        except Exception:
            logger.exception("media fetch not queued; the turn will fetch the file",
                             extra={"message_id": message.message_id})

    def _replay_window(self, parsed: Parsed, now: Optional[float] = None) -> None:
        """Move the messages whose provider timestamp is outside the replay window to the
        skipped ones. Older than the dedupe window minus the margin, the message's dedupe key
        may be gone, so a replayed body would count as new; far in the future, the clock of
        whoever sent it is not the gateway's."""
        now = time.time() if now is None else now
        kept = []
        for message in parsed.messages:
            age = now - message.timestamp
            if age > self.config.replay_window_seconds:
                reason = "older than the replay window"
            elif -age > self.config.max_clock_skew_seconds:
                reason = "timestamp in the future"
            else:
                kept.append(message)
                continue
            logger.warning("webhook message outside the replay window; not recorded", extra={
                "channel": self.name(), "message_id": message.message_id,
                "age_seconds": round(age), "reason": reason})
            parsed.skipped.append((reason, message.message_id))
        parsed.messages = kept


def provider_timestamp(value: Any) -> Optional[float]:
    """A provider's message timestamp (Unix seconds, a number or a numeric string: WAHA
    payload.timestamp, Meta messages[].timestamp), or None when it is missing or unusable."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


_warned_unsigned: Set[str] = set()


def require_secret(channel: str, secret: Optional[str]) -> None:
    """At a channel's start: without its webhook secret it does not start (ConfigError, one
    line naming the variable), unless HELPDESK_INSECURE_WEBHOOKS=true, which lets it accept
    unsigned deliveries and says so once per process. `channel` is a WEBHOOK_SECRETS name."""
    assert channel in WEBHOOK_SECRETS
    if secret:
        return
    if not insecure_webhooks():
        raise ConfigError(unsigned_webhooks_message([channel]))
    if channel not in _warned_unsigned:
        _warned_unsigned.add(channel)
        logger.warning(unsigned_webhooks_message([channel]))


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
           "mask_phone", "provider_timestamp", "require_secret"]
