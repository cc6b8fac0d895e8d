"""The Chatwoot agent webhook: `POST /webhooks/chatwoot/webhook?token=<CHATWOOT_WEBHOOK_TOKEN>`.

Set this URL (with the token) as the API inbox's callback URL in Chatwoot. Chatwoot cannot
add headers to its webhooks, so the token travels in the query string; it is compared in
constant time. When `CHATWOOT_WEBHOOK_SECRET` is set (Chatwoot 4.13+ signs inbox webhooks),
`X-Chatwoot-Signature: sha256=<hex>` must be HMAC-SHA256(secret, "<X-Chatwoot-Timestamp>.<raw
body>") and the timestamp recent. One of the two must be set: with Chatwoot configured and
neither, the channel refuses to start (helpdesk/launch.py, `from_credentials`) unless
HELPDESK_INSECURE_WEBHOOKS=true (development), which lets unauthenticated calls in with a
warning at start; a call that reaches it unconfigured anyway gets 503. The body is read with
`webhook.max_body_bytes` before it is buffered (a streaming route, connectors/body.py).

What it does:
- `message_created`, outgoing, not private, written by a person (sender type "user") and not
  by us: relayed to the user's WhatsApp chat through `helpdesk.whatsapp.send.send_text`
  (which queues it in the chat's ordered outbox). Our own mirrored messages come back here
  too: they carry our `source_id`, or their id was recorded when we posted them, or their
  sender is the user our API token writes as; none of them is relayed.
- the conversation resolved (`conversation_status_changed`, `conversation_updated` with a
  status change, or an agent bot's `conversation_resolved`): the hand-back is queued
  (workers.chatwoot_jobs.resume_conversation resumes Rasa and tells the user). Marked as with
  a person or not: a conversation whose mark expired is still paused in Rasa, and the job
  asks Rasa before it resumes anything.
- anything else is answered 200 and skipped, with the reason in the body and the log.

Deliveries are deduped on the Chatwoot message id (and `X-Chatwoot-Delivery` for status
events) with Redis SET NX and a TTL. Bad JSON 400, too large 413, bad token or signature 401.
The handler only touches Redis (in a thread), so it answers in milliseconds.
"""
import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.body import read_body
from helpdesk import handoff, redis_keys
from helpdesk.config import ChatwootConfig, chatwoot_config
from helpdesk.errors import ConfigError
from helpdesk.chatwoot import SOURCE_PREFIX, ChatwootDirectory, redis_client
from helpdesk.whatsapp import digits, group_of
from helpdesk.logs import correlation, correlation_id_var, new_correlation_id
from helpdesk.settings import (
    ChatwootSettings,
    insecure_webhooks,
    load_chatwoot,
    unsigned_webhooks_message,
)

logger = logging.getLogger(__name__)

RESOLVED = "resolved"
STATUS_EVENTS = ("conversation_status_changed", "conversation_updated", "conversation_resolved")


@dataclass
class Verdict:
    status: int
    result: str

    def body(self) -> Dict[str, str]:
        key = "result" if self.status < 400 else "error"
        return {key: self.result}


def signature_valid(secret: str, body: bytes, signature: Optional[str], timestamp: Optional[str],
                    max_age: int, now: Optional[float] = None) -> bool:
    """Chatwoot's webhook signature: sha256=HMAC-SHA256(secret, "<timestamp>.<raw body>")."""
    if not signature or not timestamp:
        return False
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - sent_at) > max_age:
        return False
    digest = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.strip().encode(), f"sha256={digest}".encode())


class ChatwootWebhook:
    """The webhook's decisions, apart from Sanic: `check` (no I/O) then `handle` (Redis)."""

    def __init__(self, settings: Optional[ChatwootSettings], options: ChatwootConfig,
                 client: Any) -> None:
        self.settings = settings
        self.options = options
        self.client = client
        self.directory = ChatwootDirectory(client, options)

    def check(self, body: bytes, token: Optional[str], headers: Any) -> Optional[Verdict]:
        """A refusal, or None when the delivery is authentic and well-formed enough to read."""
        settings = self.settings
        if settings is None:
            return Verdict(503, "Chatwoot is not configured")
        if not settings.webhook_token and not settings.webhook_secret \
                and not insecure_webhooks():
            logger.error("chatwoot webhook refused: set CHATWOOT_WEBHOOK_TOKEN or CHATWOOT_WEBHOOK_SECRET")
            return Verdict(503, "webhook authentication is not configured")
        if len(body) > self.options.webhook_max_body_bytes:
            return Verdict(413, f"body larger than {self.options.webhook_max_body_bytes} bytes")
        if settings.webhook_token and not hmac.compare_digest(
            (token or "").encode(), settings.webhook_token.encode()
        ):
            return Verdict(401, "missing or wrong token")
        if settings.webhook_secret and not signature_valid(
            settings.webhook_secret, body, headers.get("X-Chatwoot-Signature"),
            headers.get("X-Chatwoot-Timestamp"), self.options.signature_max_age,
        ):
            return Verdict(401, "missing, stale or wrong signature")
        return None

    @staticmethod
    def parse(body: bytes) -> Any:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        return payload if isinstance(payload, dict) else None

    # decisions (blocking Redis: run in a thread) ----------------------------------------------
    def handle(self, payload: Dict[str, Any], delivery_id: Optional[str] = None) -> Verdict:
        event = payload.get("event")
        if event == "message_created":
            return self._message(payload)
        if event in STATUS_EVENTS:
            return self._status(payload, delivery_id)
        return Verdict(200, f"ignored: event {event!r}")

    def _our_inbox(self, inbox_id: Any) -> bool:
        return inbox_id is None or str(inbox_id) == str(self.settings.inbox_id)

    def _message(self, payload: Dict[str, Any]) -> Verdict:
        message_id = payload.get("id")
        conversation = payload.get("conversation") if isinstance(payload.get("conversation"), dict) else {}
        if message_id is None or conversation.get("id") is None:
            return Verdict(400, "message_created without message or conversation id")
        inbox_id = (payload.get("inbox") or {}).get("id") if isinstance(payload.get("inbox"), dict) else None
        if not self._our_inbox(inbox_id if inbox_id is not None else conversation.get("inbox_id")):
            return Verdict(200, "ignored: another inbox")
        if payload.get("message_type") != "outgoing":
            return Verdict(200, "ignored: not an outgoing message")
        if payload.get("private"):
            return Verdict(200, "ignored: private note")
        sender = payload.get("sender") if isinstance(payload.get("sender"), dict) else {}
        if sender.get("type") != "user":
            return Verdict(200, "ignored: not written by a person")
        marked = str(payload.get("source_id") or "").startswith(SOURCE_PREFIX)
        if marked or self.directory.posted_by_us(message_id):
            return Verdict(200, "ignored: our own message")
        ours = self.directory.self_sender()
        if ours and ours.get("type") == "user" and ours.get("id") == str(sender.get("id")):
            return Verdict(200, "ignored: written with our API token")
        content = (payload.get("content") or "").strip()
        links = [a.get("data_url") for a in payload.get("attachments") or []
                 if isinstance(a, dict) and a.get("data_url")]
        if not content and not links:
            return Verdict(200, "ignored: empty message")
        owner = self.directory.owner_of(conversation["id"])
        if owner is None:
            logger.warning("agent reply for a Chatwoot conversation we do not mirror",
                           extra={"chatwoot_conversation": conversation["id"]})
            return Verdict(200, "ignored: unknown conversation")
        seen = redis_keys.chatwoot_webhook_seen(f"message:{message_id}")
        if not self.client.set(seen, "1", nx=True, ex=self.options.webhook_dedupe_ttl):
            return Verdict(200, "duplicate")
        text = self.options.relay_text.format(content=content, agent=sender.get("name") or "")
        text = "\n".join([text] + links) if content else "\n".join(links)
        mentions = []
        if group_of(owner) and self.options.group_prefix:
            user = digits(owner.rsplit("-", 1)[-1])
            text = self.options.group_prefix.format(user=user) + text
            mentions = [owner]
        try:
            from helpdesk.whatsapp import NoRoute, send_text  # guarded: a relay error is logged, not raised
        except ImportError:
            self.client.delete(seen)
            logger.error("agent reply not relayed: helpdesk.whatsapp.send is missing")
            return Verdict(503, "WhatsApp sending is not available")
        try:
            send_text(owner, text, mentions, client=self.client)
        except NoRoute as error:
            logger.error("agent reply not relayed: no WhatsApp route",
                         extra={"conversation_id": owner, "error": str(error)})
            return Verdict(200, "not relayed: no WhatsApp route for the conversation")
        except Exception:
            self.client.delete(seen)  # let Chatwoot's redelivery try again
            raise
        logger.info("agent reply relayed", extra={"conversation_id": owner, "chars": len(text)})
        return Verdict(200, "relayed")

    def _status(self, payload: Dict[str, Any], delivery_id: Optional[str]) -> Verdict:
        status = payload.get("status")
        changed = payload.get("changed_attributes")
        if payload.get("event") == "conversation_updated":
            changes = changed if isinstance(changed, list) else []
            if not any(isinstance(c, dict) and "status" in c for c in changes):
                return Verdict(200, "ignored: no status change")
        if payload.get("event") == "conversation_resolved":
            status = RESOLVED
        if status != RESOLVED:
            return Verdict(200, f"ignored: status {status!r}")
        if payload.get("id") is None:
            return Verdict(400, "status event without conversation id")
        if not self._our_inbox(payload.get("inbox_id")):
            return Verdict(200, "ignored: another inbox")
        owner = self.directory.owner_of(payload["id"])
        if owner is None:
            return Verdict(200, "ignored: unknown conversation")
        if delivery_id and not self.client.set(
            redis_keys.chatwoot_webhook_seen(f"delivery:{delivery_id}"), "1", nx=True,
            ex=self.options.webhook_dedupe_ttl,
        ):
            return Verdict(200, "duplicate")
        # without the mark (expired, or its handoff write dead-lettered) the conversation may
        # still be paused in Rasa: the job asks Rasa and resumes it if so
        marked = handoff.is_marked(self.client, owner)
        handoff.enqueue_resume(self.client, owner, self.options.retry_intervals, correlation_id_var.get())
        logger.info("conversation resolved by an agent; hand-back queued",
                    extra={"conversation_id": owner, "marked": marked})
        return Verdict(200, "resuming" if marked else "resuming if paused")


class ChatwootInput(InputChannel):
    """Rasa input channel `chatwoot` (credentials.yml: `connectors.chatwoot.ChatwootInput:`)."""

    @classmethod
    def name(cls) -> Text:
        return "chatwoot"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "InputChannel":
        settings = load_chatwoot()
        if settings is not None and not (settings.webhook_token or settings.webhook_secret):
            if not insecure_webhooks():
                raise ConfigError(unsigned_webhooks_message(["Chatwoot"]))
            logger.warning(unsigned_webhooks_message(["Chatwoot"]))
        return cls()

    def __init__(self) -> None:
        self._webhook: Optional[ChatwootWebhook] = None

    def webhook(self) -> ChatwootWebhook:
        if self._webhook is None:
            self._webhook = ChatwootWebhook(load_chatwoot(), chatwoot_config(), redis_client())
        return self._webhook

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        hooks = Blueprint("chatwoot_webhook", __name__)

        @hooks.route("/", methods=["GET"])
        async def alive(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        # a streaming route: the body is read with the limit, never buffered whole first
        @hooks.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            with correlation(new_correlation_id()):
                webhook = self.webhook()
                limit = webhook.options.webhook_max_body_bytes
                body = await read_body(request, limit)
                if body is None:
                    refusal: Optional[Verdict] = Verdict(413, f"body larger than {limit} bytes")
                else:
                    refusal = webhook.check(body, request.args.get("token"), request.headers)
                if refusal is None:
                    payload = webhook.parse(body)
                    refusal = Verdict(400, "body is not a JSON object") if payload is None else None
                if refusal is not None:
                    logger.info("chatwoot webhook refused", extra={"status": refusal.status,
                                                                    "error": refusal.result})
                    return response.json(refusal.body(), status=refusal.status)
                try:
                    verdict = await asyncio.to_thread(
                        webhook.handle, payload, request.headers.get("X-Chatwoot-Delivery")
                    )
                except Exception:
                    logger.exception("chatwoot webhook failed")
                    verdict = Verdict(503, "temporarily unavailable")
                logger.info("chatwoot webhook", extra={"event": payload.get("event"),
                                                       "result": verdict.result})
                return response.json(verdict.body(), status=verdict.status)

        return hooks
