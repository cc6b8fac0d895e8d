"""Meta WhatsApp Cloud API channel, served at `/webhooks/whatsapp/webhook`: its input channel
(`MetaInput`) and its sender (`MetaSender`), as Rasa's own facebook.py holds both.

- GET: Meta's verification handshake (`hub.mode=subscribe` and the verify token give 200
  with the challenge as plain text; anything else 403).
- POST: `X-Hub-Signature-256` (HMAC-SHA256 of the raw bytes with the app secret) is
  required: without `META_APP_SECRET` the channel refuses to start, unless
  HELPDESK_INSECURE_WEBHOOKS=true (development) lets unsigned deliveries in. `from` must be a
  phone number (ASCII digits made of any script's, at most 15), `from_user_id` a plain id, the
  message id at most `webhook.max_id_chars`, `timestamp` usable; otherwise skipped and logged. Every entry, change and message of a delivery is
  handled (Meta batches); a broken message is skipped and logged, the others still count.
  Statuses are ignored except `failed`, logged with its error code (131047 on a proactive
  message sends the re-engagement template). Interactive replies give Rasa their id, not
  their title (docs/whatsapp-wire-formats.md, B1-B6). An `edit` or `revoke` of an earlier
  message is recorded, never answered (connectors/whatsapp/turn.py; docs/whatsapp.md).
"""
import json
import logging
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.core.channels.channel import InputChannel
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connectors.whatsapp.format import meta_interactive, numbered_options
from connectors.whatsapp.output import Sender
from connectors.whatsapp.webhook import (
    Parsed,
    WhatsAppInput,
    provider_timestamp,
    require_secret,
    signature_matches,
)
from helpdesk import redis_keys
from helpdesk.errors import ConfigError
from helpdesk.logs import mask_phone
from helpdesk.settings import MetaSettings, insecure_webhooks, load_meta
from helpdesk.whatsapp import (
    REENGAGEMENT_CODE,
    BadId,
    GatewayError,
    InboundMessage,
    Media,
    MetaClient,
    Route,
    direct_conversation_id,
    message_id as checked_message_id,
    phone_number,
    user_id,
)

logger = logging.getLogger(__name__)

MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
IGNORED_TYPES = ("reaction", "system", "ephemeral", "request_welcome")
# a user's edit of an earlier message (its new text or caption) and its deletion ("revoke"):
# {"type": "edit", "edit": {"original_message_id": "wamid…", "message": {"type": "text",
# "text": {"body": …}}}}, {"type": "revoke", "revoke": {"original_message_id": "wamid…"}}
CHANGE_TYPES = ("edit", "revoke")


class MetaSender:
    """Meta's side of the `Delivery` (connectors/whatsapp/output.py): one outbound message,
    one Cloud API call; buttons as reply buttons or a list when they fit, else numbered text."""

    def __init__(self, client: MetaClient) -> None:
        self.client = client

    async def send(self, message: Dict[str, Any]) -> Optional[str]:
        to, kind = message["chat_id"], message["kind"]
        if kind == "text":
            return await self.client.send_text(to, message["text"])
        if kind == "buttons":
            interactive = meta_interactive(message["text"], message["buttons"])
            if interactive is None:
                return await self.client.send_text(
                    to, numbered_options(message["text"], message["buttons"])
                )
            return await self.client.send(to, {"type": "interactive", "interactive": interactive})
        if kind in ("image", "file"):
            media_type = "image" if kind == "image" else "document"
            body: Dict[str, Any] = {"link": message["url"]}
            if message.get("text"):
                body["caption"] = message["text"][:1024]
            if media_type == "document" and message.get("filename"):
                body["filename"] = message["filename"]
            return await self.client.send(to, {"type": media_type, media_type: body})
        if kind == "template":
            return await self.client.send_template(to, message["name"], message["language"])
        if kind == "custom":
            return await self.client.send(to, message["payload"])
        raise GatewayError(f"Meta cannot send a {kind!r} message", code="unsupported")

    async def typing(self, route: Route, on: bool, message_id: Optional[str]) -> None:
        # Meta shows "typing…" until the reply (or 25 s); nothing to switch off
        if on and message_id:
            await self.client.mark_read(message_id, typing=True)


class MetaInput(WhatsAppInput):
    @classmethod
    def name(cls) -> Text:
        return "whatsapp"

    def __init__(self, settings: MetaSettings) -> None:
        self.meta = settings
        self.client: Optional[MetaClient] = None
        super().__init__()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        settings = load_meta()
        if settings is None:
            raise ConfigError(
                "the Meta channel needs META_ACCESS_TOKEN and META_PHONE_NUMBER_ID (see .env.example)"
            )
        require_secret("Meta", settings.app_secret)
        return cls(settings)

    reports_edits = True  # edits and revokes arrive as messages (CHANGE_TYPES)

    def make_sender(self) -> Sender:
        self.client = MetaClient(self.meta, self.config.send_timeout_seconds)
        return MetaSender(self.client)

    def verify(self, request: Request, body: bytes) -> bool:
        if not self.meta.app_secret:
            return insecure_webhooks()  # development only: refused to start otherwise
        return signature_matches(self.meta.app_secret, body,
                                 request.headers.get("X-Hub-Signature-256"), "sha256",
                                 prefix="sha256=")

    def extra_routes(self, hooks: Blueprint) -> None:
        @hooks.route("/webhook", methods=["GET"])
        async def verification(request: Request) -> HTTPResponse:
            mode = request.args.get("hub.mode")
            token = request.args.get("hub.verify_token")
            challenge = request.args.get("hub.challenge")
            expected = self.meta.verify_token
            if (mode == "subscribe" and expected and token and challenge is not None
                    and _same(token, expected)):
                return response.text(challenge)
            logger.warning("Meta verification refused", extra={"mode": mode})
            return response.text("forbidden", status=403)

    async def fetch_media(self, message: InboundMessage) -> Tuple[bytes, Optional[str]]:
        return await self.client.download(message.media.media_id, self.config.media_max_bytes)

    async def parse(self, payload: Dict[str, Any]) -> Parsed:
        parsed = Parsed()
        if payload.get("object") != "whatsapp_business_account":
            parsed.skipped.append(("object", str(payload.get("object"))))
            return parsed
        for entry in _list(payload.get("entry")):
            for change in _list(entry.get("changes") if isinstance(entry, dict) else None):
                if not isinstance(change, dict):
                    parsed.skipped.append(("malformed change", ""))
                    continue
                if change.get("field") != "messages":
                    parsed.skipped.append(("field", str(change.get("field"))))
                    continue
                self._value(change.get("value"), parsed)
        return parsed

    def _value(self, value: Any, parsed: Parsed) -> None:
        if not isinstance(value, dict):
            parsed.skipped.append(("malformed value", ""))
            return
        number_id = (value.get("metadata") or {}).get("phone_number_id")
        if number_id and str(number_id) != self.meta.phone_number_id:
            parsed.skipped.append(("other phone number", str(number_id)))
            return
        names = {}
        for contact in _list(value.get("contacts")):
            profile = contact.get("profile") if isinstance(contact, dict) else None
            if isinstance(profile, dict):
                names[contact.get("wa_id") or contact.get("user_id")] = profile.get("name")
        for status in _list(value.get("statuses")):
            if not isinstance(status, dict):
                parsed.skipped.append(("malformed status", repr(status)[:100]))
            elif status.get("status") == "failed":
                parsed.failed_statuses.append(status)
            else:
                parsed.skipped.append(("status", str(status.get("status"))))
        for error in _list(value.get("errors")):
            details = error if isinstance(error, dict) else {"title": repr(error)[:100]}
            logger.error("Meta reported an error", extra={"code": details.get("code"),
                                                          "title": details.get("title")})
        for raw in _list(value.get("messages")):
            try:
                message = self._message(raw, names)
            except BadId as error:
                parsed.skipped.append(("bad id", str(error)))
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                parsed.skipped.append(("malformed message", repr(error)[:200]))
                continue
            if isinstance(message, str):
                parsed.skipped.append((message, str((raw or {}).get("id"))))
            else:
                parsed.messages.append(message)

    def _message(self, raw: Dict[str, Any], names: Dict[str, Any]) -> Any:
        message_id, kind = raw.get("id"), raw.get("type")
        sender = raw.get("from") or raw.get("from_user_id")
        if not isinstance(message_id, str) or not message_id or not sender:
            return "missing id or sender"
        if kind in IGNORED_TYPES:
            return f"{kind} message"
        # ids in their one spelling (ASCII digits), or BadId for one no gateway sends
        message_id = checked_message_id(message_id, self.config.max_id_chars)
        phone = phone_number(raw["from"]) if raw.get("from") else None
        name = names.get(sender) or names.get(raw.get("from"))
        sender = phone or user_id(sender)
        timestamp = provider_timestamp(raw.get("timestamp"))
        message = InboundMessage(
            channel=self.name(), message_id=message_id,
            conversation_id=direct_conversation_id(sender), chat_id=sender,
            kind="text", phone=phone, name=name, timestamp=timestamp or 0.0,
        )
        if kind == "text":
            message.text = str((raw.get("text") or {}).get("body") or "").strip()
            if not message.text:
                return "empty text"
        elif kind == "interactive":
            interactive = raw["interactive"]
            reply = interactive.get(interactive.get("type")) or {}
            message.kind = "interactive"
            message.payload = reply.get("id")
            message.text = reply.get("title") or ""
            if not message.payload:
                return "interactive without id"
        elif kind == "button":
            message.kind = "interactive"
            message.payload = raw["button"].get("payload") or raw["button"].get("text")
            message.text = raw["button"].get("text") or ""
        elif kind in MEDIA_TYPES:
            media = raw[kind]
            message.kind = "media"
            message.text = str(media.get("caption") or "").strip()
            media_kind = "voice" if kind == "audio" and media.get("voice") else kind
            message.media = Media(kind=media_kind, mime_type=media.get("mime_type"),
                                  media_id=media.get("id"), filename=media.get("filename"),
                                  error=None if media.get("id") else "no media id")
        elif kind == "location":
            location = raw["location"]
            message.kind = "location"
            message.location = {k: location.get(k) for k in
                                ("latitude", "longitude", "name", "address") if k in location}
        elif kind in CHANGE_TYPES:
            change = raw[kind]
            message.kind = kind
            message.original_id = checked_message_id(change["original_message_id"],
                                                     self.config.max_id_chars)
            if kind == "edit":
                message.text = _edited_text(change.get("message"))
        else:
            message.kind = "unsupported"
            logger.info("unsupported Meta message type", extra={"type": kind})
        if message.kind == "text":
            message.opt_word = self.config.opt_word(message.text)
        if timestamp is None:  # Meta always sends one: without it the age is unknown
            return "no usable timestamp"
        return message

    async def on_failed_statuses(self, statuses: List[Dict[str, Any]]) -> None:
        for status in statuses:
            codes = [e.get("code") for e in _list(status.get("errors")) if isinstance(e, dict)]
            logger.error("Meta could not deliver a message", extra={
                "codes": codes, "recipient": mask_phone(str(status.get("recipient_id") or "")),
            })
            await self.shared.delivery.count("meta_failed_status")
            if REENGAGEMENT_CODE not in codes or not status.get("id"):
                continue
            key = redis_keys.sent_message(self.name(), str(status["id"]))
            sent = await self.shared.redis.get(key)
            if sent:
                await self.shared.redis.delete(key)
                await self.shared.delivery.reengage(json.loads(sent))


def _edited_text(edited: Any) -> str:
    """The new text of an edited message: a text's body or a media message's caption."""
    if not isinstance(edited, dict):
        return ""
    content = edited.get(edited.get("type")) if isinstance(edited.get("type"), str) else None
    if not isinstance(content, dict):
        return ""
    return str(content.get("body") or content.get("caption") or "").strip()


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def _same(given: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(given.encode(), expected.encode())
