"""Outbound WhatsApp: Rasa's responses turned into gateway calls, delivered in order.

`WhatsAppOutput` is the Rasa output channel of both connectors (named like its input
channel, so `channel: waha` / `channel: whatsapp` response variations work, and workers can
reach users with `trigger_intent`). It renders each response into outbound messages (text
split under 4096 characters, buttons as Meta reply buttons / lists or numbered text, images,
documents, mentions in groups) and hands them to the `Delivery`, which sends each through
its channel's `Sender` (connectors/waha.py, connectors/meta.py).

`Delivery` sends a message at once when its chat has nothing waiting, with a couple of quick
retries; a transient failure puts it in the chat's outbox (helpdesk/whatsapp/outbox.py) behind which
every later message for that chat waits, and the drainer retries the head with growing
waits until it is delivered, or parks it once it is `outbox_max_age_seconds` old. A message
refused for good is parked at once (`helpdesk:outbox_parked`, for `workers.dead_letters
outbound`) and the support team told; refused credentials and a session WAHA reports down keep
messages waiting. Meta's 131047 on a proactive message sends the configured template instead.
"""
import asyncio
import contextvars
import json
import logging
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Protocol, Text

from rasa.core.channels.channel import OutputChannel

from connectors.whatsapp.format import (
    INTERACTIVE_BODY_LIMIT,
    TEXT_LIMIT,
    numbered_options,
    split_text,
)
from helpdesk import chatwoot, redis_keys, whatsapp
from helpdesk.config import ChannelConfig
from helpdesk.logs import mask_phone, mask_text
from helpdesk.whatsapp import AsyncOptOutRegistry, GatewayError, Route, digits, load_route

logger = logging.getLogger(__name__)

# the conversation whose user turn is running in this task: replies to it are answers, any
# other message is proactive (opt-outs withhold it; Meta may need a template for it)
current_turn: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "current_turn", default=None
)
BUTTONS_TTL_SECONDS = 24 * 3600
SENT_TTL_SECONDS = 24 * 3600
MARK_RETRY_SECONDS = 0.5  # a reply's mark tried again this often while Redis is unreachable


class TurnReplies:
    """The replies of one user turn, counted in the order Rasa sends them. A turn that runs
    again after a crash (the replies went out, the tracker was not saved) has the same
    message id, so its n-th reply finds the mark the first run left and is not sent twice."""

    def __init__(self, channel: str, conversation_id: str, message_id: str,
                 recovered: bool) -> None:
        self.channel = channel
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.recovered = recovered
        self.count = 0
        self.quoted = False  # in a group the turn's first reply quotes its message

    def next_key(self) -> str:
        self.count += 1
        return redis_keys.reply_sent(self.channel, self.message_id, self.count)


turn_replies: contextvars.ContextVar[Optional[TurnReplies]] = contextvars.ContextVar(
    "turn_replies", default=None
)


class Sender(Protocol):
    """One gateway's side of the `Delivery`: `WahaSender` (connectors/waha.py) and
    `MetaSender` (connectors/meta.py), registered by their input channels."""

    async def send(self, message: Dict[str, Any]) -> Optional[str]: ...

    async def typing(self, route: Route, on: bool, message_id: Optional[str]) -> None: ...


class Delivery:
    """Sends messages through the right gateway, in order per chat, never dropping one."""

    def __init__(self, client: Any, config: ChannelConfig) -> None:
        self.client = client  # async Redis
        self.config = config
        self.senders: Dict[str, Sender] = {}
        self.outbox = whatsapp.AsyncOutbox(client)
        self.optout = AsyncOptOutRegistry(client)
        self.templates: Dict[str, Dict[str, str]] = {}
        # tells the support team (notice key, params, once_per, once_seconds); None: logs only
        self.tell_support: Optional[Callable[[str, Dict[str, Any], str, int],
                                             Awaitable[None]]] = None
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self._stopping = False

    def register(self, channel: str, sender: Sender) -> None:
        self.senders[channel] = sender

    async def count(self, field: str, amount: int = 1) -> None:
        try:
            await self.client.hincrby(redis_keys.counters(), field, amount)
        except Exception:
            logger.debug("counter not written", extra={"counter": field})

    # sending -------------------------------------------------------------------------
    async def send(self, message: Dict[str, Any]) -> None:
        """Deliver now, or queue behind what is already waiting for this chat."""
        if await self._withheld(message):
            return
        if await self.outbox.pending(message["channel"], message["chat_id"]):
            await self.outbox.push(message)
            self._wake.set()
            return
        if await self._session_down(message["channel"]):
            await self.outbox.push(dict(message, attempt=1))
            await self.count("outbox_queued")
            return
        for attempt in range(self.config.send_attempts):
            try:
                await self._send_once(message)
                return
            except GatewayError as error:
                if not error.transient:
                    await self._give_up(message, str(error), error)
                    return
                if error.credentials:
                    await self._refused(message, error)
                if attempt + 1 < self.config.send_attempts:
                    await asyncio.sleep(self.config.send_retry_delay_ms / 1000 * (attempt + 1))
                else:
                    logger.warning("gateway failing; message queued in the outbox", extra={
                        "channel": message["channel"], "status": error.status,
                        "code": error.code, "error": str(error)[:200],
                    })
            except Exception:
                # a fault of ours or an answer nobody expected: kept and retried, not lost
                logger.exception("sending failed unexpectedly; message queued in the outbox",
                                 extra={"channel": message["channel"]})
                break
        message = dict(message, attempt=1)
        await self.outbox.push(message)
        await self.count("outbox_queued")
        self._wake.set()

    async def _withheld(self, message: Dict[str, Any]) -> bool:
        conversation = message.get("conversation_id")
        if not message.get("proactive") or not conversation:
            return False
        try:
            opted_out = await self.optout.is_opted_out(conversation)
        except Exception:
            logger.exception("opt-out check failed; sending anyway")
            return False
        if opted_out:
            logger.info("user opted out; proactive message withheld")
            await self.count("withheld_opted_out")
        return opted_out

    async def _send_once(self, message: Dict[str, Any]) -> None:
        sender = self.senders.get(message["channel"])
        if sender is None:
            raise GatewayError(f"channel {message['channel']!r} is not configured",
                               code="not_configured", transient=True)
        sent_id = await sender.send(message)
        await self.count(f"sent_{message['channel']}")
        if sent_id and message.get("proactive"):
            # Meta reports a closed 24-hour window late, in a `failed` status webhook
            await self.client.set(redis_keys.sent_message(message["channel"], sent_id),
                                  json.dumps(message, ensure_ascii=False), ex=SENT_TTL_SECONDS)

    async def _give_up(self, message: Dict[str, Any], reason: str,
                       error: Optional[GatewayError] = None, key: Optional[str] = None,
                       raw: Optional[str] = None) -> bool:
        """The message cannot be delivered: parked for a person (the support team told),
        or, for Meta's closed 24-hour window, the re-engagement template sent instead. True
        when it left the chat's outbox (`key`, whose head is `raw`)."""
        if error is not None and error.reengagement:
            await self.reengage(message)
            return False
        if key is not None and raw is not None:
            parked_id = await self.outbox.park_head(key, raw, reason)
        else:
            parked_id = await self.outbox.park(message, reason)
        logger.error("message not delivered; parked", extra={
            "channel": message["channel"], "chat": mask_phone(message["chat_id"]),
            "status": getattr(error, "status", None), "code": getattr(error, "code", None),
            "reason": reason[:300], "parked_id": parked_id,
        })
        await self.count(f"failed_{message['channel']}_"
                         f"{(error.code or error.status) if error else 'expired'}")
        if parked_id:
            await self._tell("outbound_parked", {
                "id": parked_id, "who": mask_phone(message.get("conversation_id")
                                                   or message["chat_id"]),
                "reason": mask_text(reason[:300])}, f"outbound_parked:{parked_id}",
                7 * 24 * 3600)
        return parked_id is not None

    async def _refused(self, message: Dict[str, Any], error: GatewayError) -> None:
        """The gateway refuses the bot's key or token: messages wait; an operator is told
        (once an hour per channel)."""
        channel = message["channel"]
        logger.error("the gateway refuses the bot's credentials; messages wait",
                     extra={"channel": channel, "status": error.status, "code": error.code})
        await self._tell(f"refused_{channel}", {"error": str(error)[:200]},
                         f"gateway_refused:{channel}", 3600)

    async def _tell(self, notice: str, params: Dict[str, Any], once_per: str,
                    once_seconds: int) -> None:
        if self.tell_support is None:
            return
        try:
            await self.tell_support(notice, params, once_per, once_seconds)
        except Exception:
            logger.exception("the support team was not told", extra={"notice": notice})

    async def reengage(self, message: Dict[str, Any]) -> None:
        """Meta 131047: outside the 24-hour window only a template may be sent."""
        template = self.config.reengagement_template
        await self.count("reengagement_needed")
        if message.get("kind") == "template" or not template or not message.get("proactive"):
            logger.error("message refused: the user's 24-hour window is closed", extra={
                "chat": mask_phone(message["chat_id"]), "kind": message.get("kind"),
            })
            return
        logger.info("24-hour window closed; sending the re-engagement template")
        await self.send(dict(message, kind="template", name=template["name"],
                             language=template.get("language", "es"), text=None,
                             attempt=0))

    # the drainer ---------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._drain_loop(), name="outbox-drainer")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain_loop(self) -> None:
        # a flag as well as the cancel: on Python 3.10 wait_for() can swallow a cancel that
        # arrives in the same loop turn as the wake-up
        while not self._stopping:
            try:
                keys = await self.outbox.due()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox drain failed; retrying")
                keys = []
            for key in keys:
                try:
                    await self.drain(key)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one chat's trouble (Redis, a bug) holds up no other chat
                    logger.exception("outbox drain of a chat failed; retrying",
                                     extra={"outbox": key})
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=0.5)
            finally:
                waiter.cancel()
            self._wake.clear()

    async def drain(self, key: str) -> None:
        """Deliver one chat's waiting messages, oldest first, until one fails."""
        token = await self.outbox.lock(key)
        if not token:
            return  # another process is on it
        try:
            while True:
                await self.outbox.keep_lock(key, token)
                raw = await self.outbox.head(key)
                if raw is None:
                    await self.outbox.delivered(key, "")  # unschedule the empty list
                    return
                try:
                    message = json.loads(raw)
                    if not (isinstance(message, dict) and message.get("channel")
                            and message.get("chat_id")):
                        # JSON, but no message: it would raise at every pass, for ever
                        raise ValueError("not an outbound message")
                except ValueError:
                    logger.error("unreadable outbox entry parked", extra={"outbox": key})
                    await self.outbox.park_head(key, raw, "unreadable entry")
                    continue
                if await self._withheld(message):
                    await self.outbox.delivered(key, raw)
                    continue
                age = time.time() - float(message.get("queued_at") or time.time())
                if age > self.config.outbox_max_age_seconds:
                    await self._give_up(message, f"not delivered in {age / 3600:.1f} h "
                                        f"({message.get('attempt', 0)} attempts)", key=key, raw=raw)
                    continue
                down = await self._session_down(message["channel"])
                if down:
                    await self._later(key, raw, message, f"session {down}")
                    return
                try:
                    await self._send_once(message)
                except GatewayError as error:
                    if error.transient:
                        if error.credentials:
                            await self._refused(message, error)
                        await self._later(key, raw, message, f"{error.code or error.status}")
                        return
                    if not await self._give_up(message, str(error), error, key, raw):
                        await self.outbox.delivered(key, raw)
                    continue
                except Exception:
                    # never a head that blocks the chat for good: counted and retried later
                    logger.exception("outbox delivery failed unexpectedly; retrying later",
                                     extra={"outbox": key})
                    await self._later(key, raw, message, "unexpected")
                    return
                await self.outbox.delivered(key, raw)
                await self.count("outbox_delivered")
        finally:
            await self.outbox.unlock(key, token)

    async def _session_down(self, channel: str) -> Optional[str]:
        """The session's status while the gateway reports it down (WAHA's session.status)."""
        try:
            return await whatsapp.session_down(self.client, channel)
        except Exception:
            logger.warning("session status not read; sending anyway")
            return None

    async def _later(self, key: str, raw: str, message: Dict[str, Any], why: str) -> None:
        attempt = int(message.get("attempt", 0))
        waits = self.config.outbox_backoff_seconds
        # the first wait follows the first failure, wherever it happened
        delay = waits[min(max(attempt - 1, 0), len(waits) - 1)]
        await self.outbox.retry_later(key, raw, dict(message, attempt=attempt + 1), delay)
        logger.info("outbox delivery failed; retrying later", extra={
            "channel": message["channel"], "attempt": attempt + 1, "retry_in_s": delay,
            "error": why,
        })

    # typing --------------------------------------------------------------------------
    async def typing(self, route: Route, on: bool, message_id: Optional[str] = None) -> None:
        sender = self.senders.get(route.channel)
        if sender is None:
            return
        try:
            await sender.typing(route, on, message_id)
        except Exception as error:  # a cosmetic call: never let it break a turn
            logger.debug("typing/read receipt failed", extra={"error": str(error)[:200]})


class Mirror:
    """Copies of the conversation for Chatwoot (helpdesk/chatwoot/mirror.py), in order: each
    call is awaited before the next message. Never breaks a turn."""

    def __init__(self) -> None:
        self.enabled = chatwoot.enabled()

    async def __call__(self, conversation_id: str, direction: str, text: Optional[str],
                       attachments: Optional[List[Dict[str, Any]]] = None,
                       correlation_id: Optional[str] = None) -> None:
        if not self.enabled:
            return
        try:
            await chatwoot.mirror_message_async(conversation_id, direction, text,
                                                attachments, correlation_id)
        except Exception:
            logger.exception("message not mirrored to Chatwoot",
                             extra={"conversation_id": conversation_id, "direction": direction})


class WhatsAppOutput(OutputChannel):
    """Rasa's output channel for one WhatsApp connector (named like its input channel)."""

    def __init__(self, channel_name: str, delivery: Delivery, redis_client: Any,
                 ask_in_direct: bool = False, mirror: Optional[Mirror] = None) -> None:
        self.mirror = mirror or Mirror()
        self.channel_name = channel_name
        self.delivery = delivery
        self.redis = redis_client
        self.ask_in_direct = ask_in_direct

    def name(self) -> Text:  # type: ignore[override]
        return self.channel_name

    async def _route(self, recipient_id: str) -> Optional[Route]:
        route = await load_route(self.redis, recipient_id)
        if route is None:
            logger.error("no route for the conversation; message not sent",
                         extra={"conversation_id": recipient_id})
            await self.delivery.count("no_route")
        return route

    async def _base(self, recipient_id: str, kind: str, **fields: Any) -> Optional[Dict[str, Any]]:
        route = await self._route(recipient_id)
        if route is None:
            return None
        chat_id, mentions, text = route.chat_id, [], fields.get("text")
        if route.is_group and route.participant:
            if self.ask_in_direct:
                chat_id = route.participant
                await self.redis.set(redis_keys.direct_alias(digits(route.participant)),
                                     recipient_id, ex=24 * 3600)
            elif text:
                # in a group, every reply names the person it is for
                mentions = [route.participant]
                fields["text"] = f"@{digits(route.participant)} {text}"
        replies = turn_replies.get()
        if (kind in ("text", "buttons") and route.is_group and not self.ask_in_direct
                and self.delivery.config.quote_reports and replies is not None
                and replies.conversation_id == recipient_id and not replies.quoted):
            # the group sees which report the answer is about (groups.quote_reports)
            replies.quoted = True
            fields["reply_to"] = replies.message_id
        if route.channel == "whatsapp" and chat_id.endswith("@c.us"):
            chat_id = digits(chat_id)
        return {
            "channel": route.channel, "chat_id": chat_id, "conversation_id": recipient_id,
            "kind": kind, "mentions": mentions, "attempt": 0, "queued_at": time.time(),
            "proactive": current_turn.get() != recipient_id, **fields,
        }

    async def _room(self, recipient_id: str, limit: int) -> int:
        """Characters a part may have once the group mention is put in front of it."""
        route = await load_route(self.redis, recipient_id)
        if route and route.is_group and route.participant and not self.ask_in_direct:
            return limit - len(f"@{digits(route.participant)} ")
        return limit

    async def _once(self, recipient_id: str, send: Callable[[], Awaitable[None]]) -> None:
        """Send one response (its mirror copy and every part), unless it is a reply a
        previous run of this same turn already sent."""
        replies = turn_replies.get()
        if replies is None or replies.conversation_id != recipient_id:
            await send()
            return
        key = replies.next_key()
        if replies.recovered and await self.redis.exists(key):
            replies.quoted = True  # the first run's first reply quoted the message
            logger.info("reply already sent before a restart; not sent again",
                        extra={"conversation_id": recipient_id, "reply": replies.count})
            return
        await send()
        # the mark is what keeps a re-run from repeating the reply: with Redis away (after the
        # send), the turn waits here for it, up to its deadline, rather than go on unmarked
        # and fail at the tracker's save, to be run again and send this reply twice
        warned = False
        while True:
            try:
                await self.redis.set(key, "1", ex=SENT_TTL_SECONDS)
                return
            except Exception:
                if not warned:
                    warned = True
                    logger.warning("reply sent but not marked yet: Redis unreachable; the "
                                   "turn waits for it", extra={"conversation_id": recipient_id})
                await asyncio.sleep(MARK_RETRY_SECONDS)

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        await self._once(recipient_id, lambda: self._text(recipient_id, text))

    async def _text(self, recipient_id: str, text: str) -> None:
        await self.redis.delete(redis_keys.offered_buttons(recipient_id))
        await self.mirror(recipient_id, "outgoing", text)
        for part in split_text(text, await self._room(recipient_id, TEXT_LIMIT)):
            message = await self._base(recipient_id, "text", text=part)
            if message:
                await self.delivery.send(message)

    async def send_text_with_buttons(self, recipient_id: Text, text: Text,
                                     buttons: List[Dict[Text, Any]], **kwargs: Any) -> None:
        await self._once(recipient_id, lambda: self._buttons(recipient_id, text, buttons))

    async def _buttons(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]]) -> None:
        await self.mirror(recipient_id, "outgoing", numbered_options(text, buttons))
        parts = split_text(text, await self._room(recipient_id, INTERACTIVE_BODY_LIMIT)) or [""]
        for part in parts[:-1]:
            message = await self._base(recipient_id, "text", text=part)
            if message:
                await self.delivery.send(message)
        message = await self._base(recipient_id, "buttons", text=parts[-1], buttons=buttons)
        if message:
            await self.redis.set(redis_keys.offered_buttons(recipient_id),
                                 json.dumps(buttons, ensure_ascii=False), ex=BUTTONS_TTL_SECONDS)
            await self.delivery.send(message)

    async def send_quick_replies(self, recipient_id: Text, text: Text,
                                 quick_replies: List[Dict[Text, Any]], **kwargs: Any) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies, **kwargs)

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        await self._once(recipient_id, lambda: self._image(recipient_id, image))

    async def _image(self, recipient_id: str, image: str) -> None:
        await self.mirror(recipient_id, "outgoing", image)
        message = await self._base(recipient_id, "image", url=image, text=None)
        if message:
            await self.delivery.send(message)

    async def send_attachment(self, recipient_id: Text, attachment: Any, **kwargs: Any) -> None:
        if isinstance(attachment, dict):
            url, filename = attachment.get("url") or attachment.get("link"), attachment.get("filename")
        else:
            url, filename = str(attachment), None
        if not url:
            logger.error("attachment without a URL not sent")
            return
        await self._once(recipient_id, lambda: self._file(recipient_id, url, filename))

    async def _file(self, recipient_id: str, url: str, filename: Optional[str]) -> None:
        message = await self._base(recipient_id, "file", url=url, filename=filename, text=None)
        if message:
            await self.delivery.send(message)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any],
                               **kwargs: Any) -> None:
        if self.channel_name == "whatsapp" and json_message.get("type"):
            await self._once(recipient_id, lambda: self._custom(recipient_id, json_message))
            return
        logger.info("custom message has no WhatsApp form here; skipped",
                    extra={"channel": self.channel_name})

    async def _custom(self, recipient_id: str, json_message: Dict[str, Any]) -> None:
        message = await self._base(recipient_id, "custom", payload=json_message)
        if message:
            await self.delivery.send(message)

    async def send_elements(self, recipient_id: Text, elements: Any, **kwargs: Any) -> None:
        lines = [str(e.get("title", "")) for e in elements or [] if isinstance(e, dict)]
        if lines:
            await self.send_text_message(recipient_id, "\n".join(lines))
