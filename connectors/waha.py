"""WAHA (WhatsApp HTTP API) channel, served at `/webhooks/waha/webhook`: its input channel
(`WahaInput`) and its sender (`WahaSender`), as Rasa's own facebook.py holds both.

Inbound events per docs/whatsapp-wire-formats.md (A1-A5): only `message` and `message.any`
events from other people reach Rasa. Own messages (`fromMe`, and the self-sent group quirk
where `participant` is our own id), status broadcasts, newsletters, call stubs with no text,
other sessions and every other event type are answered 200 and skipped. `X-Webhook-Hmac`
(hex HMAC-SHA512 of the raw body with `WAHA_WEBHOOK_HMAC_KEY`) is required: without the key the
channel refuses to start, unless HELPDESK_INSECURE_WEBHOOKS=true (development) lets unsigned
deliveries in. Chat and participant ids are checked and spelt one way (`chat_jid`: ASCII
digits, a phone number at most 15 of them); a message with an id no gateway sends, or without
a usable `payload.timestamp`, is skipped and logged.
"""
import logging
import time
from typing import Any, Dict, Optional, Text, Tuple

from rasa.core.channels.channel import InputChannel
from sanic.request import Request

from connectors.whatsapp.format import numbered_options
from connectors.whatsapp.output import Sender
from connectors.whatsapp.webhook import (
    Parsed,
    WhatsAppInput,
    mentions_of,
    provider_timestamp,
    require_secret,
    signature_matches,
    strip_mentions,
)
from helpdesk import redis_keys
from helpdesk.errors import ConfigError
from helpdesk.settings import WahaSettings, insecure_webhooks, load_waha
from helpdesk.whatsapp import (
    BadId,
    GatewayError,
    InboundMessage,
    Media,
    Route,
    WahaClient,
    chat_jid,
    digits,
    direct_conversation_id,
    group_conversation_id,
    is_group_jid,
    message_id as checked_message_id,
    record_status,
    tell_support,
)

logger = logging.getLogger(__name__)

USER_EVENTS = ("message", "message.any")
LID_TTL_SECONDS = 30 * 24 * 3600


def media_kind(mime_type: Optional[str], data: Dict[str, Any]) -> str:
    mime = (mime_type or "").lower()
    raw_type = str((data.get("_data") or {}).get("type") or "").lower()
    if raw_type in ("ptt", "voice"):
        return "voice"
    if mime.startswith("image/"):
        return "sticker" if mime == "image/webp" and raw_type == "sticker" else "image"
    if mime.startswith("audio/"):
        return "voice" if "opus" in mime or "ogg" in mime else "audio"
    if mime.startswith("video/"):
        return "video"
    return "document"


def quotes_own(reply_to: Any, own_numbers: Any) -> bool:
    """True when the message quote-replies to one of the bot's own messages: WAHA's `replyTo`
    names the quoted message's sender in `participant` (a phone or @lid jid, either of the
    bot's own ids). Engines that leave `participant` out give no quote (it may be absent)."""
    if not isinstance(reply_to, dict):
        return False
    participant = reply_to.get("participant")
    if not isinstance(participant, str) or not participant:
        return False
    number = digits(participant)
    return bool(number) and number in own_numbers


class WahaSender:
    """WAHA's side of the `Delivery` (connectors/whatsapp/output.py): one outbound message,
    one WAHA call; buttons go as numbered text."""

    def __init__(self, client: WahaClient) -> None:
        self.client = client

    async def send(self, message: Dict[str, Any]) -> Optional[str]:
        chat, kind = message["chat_id"], message["kind"]
        if kind == "text":
            return await self.client.send_text(chat, message["text"], message.get("mentions"),
                                               reply_to=message.get("reply_to"))
        if kind == "buttons":
            text = numbered_options(message["text"], message["buttons"])
            return await self.client.send_text(chat, text, message.get("mentions"),
                                               reply_to=message.get("reply_to"))
        if kind == "reaction":
            await self.client.react(message["message_id"], message["emoji"])
            return None
        if kind in ("image", "file"):
            return await self.client.send_file(
                chat, message["url"], caption=message.get("text") or "", image=kind == "image",
                filename=message.get("filename"),
            )
        raise GatewayError(f"WAHA cannot send a {kind!r} message", code="unsupported")

    async def typing(self, route: Route, on: bool, message_id: Optional[str]) -> None:
        if on and message_id:
            await self.client.send_seen(route.chat_id, message_id, route.participant)
        await self.client.typing(route.chat_id, on)


class WahaInput(WhatsAppInput):
    prefetch_media = True  # WAHA deletes a file 180 s after the message

    @classmethod
    def name(cls) -> Text:
        return "waha"

    def __init__(self, settings: WahaSettings) -> None:
        self.waha = settings
        self.client = None
        super().__init__()

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        settings = load_waha()
        if settings is None:
            raise ConfigError("the WAHA channel needs WAHA_BASE_URL (see .env.example)")
        require_secret("WAHA", settings.hmac_key)
        return cls(settings)

    def make_sender(self) -> Sender:
        self.client = WahaClient(self.waha, self.config.send_timeout_seconds)
        return WahaSender(self.client)

    def verify(self, request: Request, body: bytes) -> bool:
        if not self.waha.hmac_key:
            return insecure_webhooks()  # development only: refused to start otherwise
        algorithm = (request.headers.get("X-Webhook-Hmac-Algorithm") or "sha512").lower()
        if algorithm != "sha512":
            return False
        return signature_matches(self.waha.hmac_key, body,
                                 request.headers.get("X-Webhook-Hmac"), "sha512")

    async def fetch_media(self, message: InboundMessage) -> Tuple[bytes, Optional[str]]:
        return await self.client.download(message.media.url, self.config.media_max_bytes)

    async def _session_status(self, status: Any) -> None:
        """WAHA says how its session is: replies wait while it is down (the support team told
        once per outage) and go out as soon as it works again."""
        if not isinstance(status, str) or not status:
            return
        logger.info("WAHA session status", extra={"status": status})
        change = await record_status(self.shared.redis, self.name(), status)
        if change == "down":
            logger.error("the WhatsApp session is down; replies wait", extra={"status": status})
            try:
                await tell_support("session_down_waha", {"status": status},
                                   once_per=f"session_down:waha:{int(time.time())}",
                                   once_seconds=3600)
            except Exception:
                logger.exception("the support team was not told the session is down")
        elif change == "up":
            logger.warning("the WhatsApp session works again; waiting replies go out")

    async def parse(self, payload: Dict[str, Any]) -> Parsed:
        parsed = Parsed()
        event = payload.get("event")
        if event not in USER_EVENTS:
            if event == "session.status" and payload.get("session") in (None, self.waha.session):
                await self._session_status((payload.get("payload") or {}).get("status"))
            parsed.skipped.append(("event", str(event)))
            return parsed
        if payload.get("session") not in (None, self.waha.session):
            parsed.skipped.append(("other session", str(payload.get("session"))))
            return parsed
        data = payload.get("payload")
        if not isinstance(data, dict):
            parsed.skipped.append(("no payload", str(event)))
            return parsed
        me = payload.get("me") if isinstance(payload.get("me"), dict) else {}
        try:
            message = await self._message(data, me)
        except BadId as error:
            parsed.skipped.append(("bad id", str(error)))
            return parsed
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            parsed.skipped.append(("malformed message", repr(error)[:200]))
            return parsed
        if isinstance(message, str):
            parsed.skipped.append((message, str(data.get("id"))))
        else:
            parsed.messages.append(message)
        return parsed

    async def _message(self, data: Dict[str, Any], me: Dict[str, Any]) -> Any:
        """An InboundMessage, or the reason (a string) it is not one."""
        message_id = data.get("id")
        sender = data.get("from")
        if not isinstance(message_id, str) or not message_id or not isinstance(sender, str):
            return "missing id or from"
        if data.get("fromMe"):
            return "own message"
        if sender == "status@broadcast" or sender.endswith("@newsletter") \
                or sender.endswith("@broadcast"):
            return "broadcast or newsletter"
        # ids in their one spelling (ASCII digits), or BadId for one no gateway sends
        message_id = checked_message_id(message_id, self.config.max_id_chars)
        sender = chat_jid(sender)
        timestamp = provider_timestamp(data.get("timestamp"))
        if timestamp is None:
            return "no usable timestamp"
        own_ids = [i for i in (me.get("id"), me.get("lid"), me.get("jid")) if isinstance(i, str)]
        own_numbers = {digits(i) for i in own_ids}
        body = data.get("body") or ""
        if not isinstance(body, str):
            body = str(body)
        has_media = bool(data.get("hasMedia"))
        location = data.get("location") if isinstance(data.get("location"), dict) else None
        vcards = data.get("vCards") or []
        if not body.strip() and not has_media and not location and not vcards:
            return "empty message"
        raw = data.get("_data") if isinstance(data.get("_data"), dict) else {}
        name = raw.get("notifyName") or raw.get("pushName")
        if is_group_jid(sender):
            participant = data.get("participant") or data.get("author") or raw.get("author")
            if not isinstance(participant, str) or not participant:
                return "group message without participant"
            participant = chat_jid(participant)
            if digits(participant) in own_numbers:
                return "own message (group quirk)"
            person = await self._number_for(participant, raw, group=True)
            if person and digits(person) in own_numbers:
                return "own message (group quirk)"
            conversation = group_conversation_id(sender, person or participant)
            phone = digits(person) if person else None
            chat_id, is_group = sender, True
        else:
            participant = None
            if digits(sender) in own_numbers:
                return "own message"
            person = await self._number_for(sender, raw, group=False)
            if person and digits(person) in own_numbers:
                return "own message"
            conversation = direct_conversation_id(person or sender)
            phone = digits(person) if person else None
            chat_id, is_group = sender, False
            # only written with groups.ask_in: direct; otherwise no round trip in the ack
            alias = (await self.shared.redis.get(redis_keys.direct_alias(conversation))
                     if self.config.ask_in == "direct" else None)
            if alias:  # this person answers a group report in private (groups.ask_in: direct)
                conversation = alias.decode() if isinstance(alias, bytes) else alias
                participant, is_group, chat_id = sender, True, _group_chat(conversation)
        message = InboundMessage(
            channel=self.name(), message_id=message_id, conversation_id=conversation,
            chat_id=chat_id, kind="text", text=body.strip(), participant=participant,
            phone=phone, name=name if isinstance(name, str) else None, is_group=is_group,
            # a quote-reply to the bot's message addresses it, as a mention does
            mentions_bot=mentions_of(body, own_ids) or quotes_own(data.get("replyTo"),
                                                                  own_numbers),
            lid=(participant or sender) if (participant or sender).endswith("@lid") and not phone
            else None,
            timestamp=timestamp,
        )
        if message.mentions_bot:
            message.text = strip_mentions(message.text, own_ids)
        message.opt_word = self.config.opt_word(message.text) if message.text else None
        if has_media:
            media = data.get("media") if isinstance(data.get("media"), dict) else {}
            mime = media.get("mimetype")
            message.kind = "media"
            message.media = Media(
                kind=media_kind(mime, data), mime_type=mime,
                url=media.get("url") or data.get("mediaUrl"),
                filename=media.get("filename"),
                error=(str(media.get("error")) if media.get("error") else None)
                if media else "WAHA did not download the file",
            )
        elif location:
            message.kind = "location"
            message.location = {k: location.get(k) for k in ("latitude", "longitude",
                                                              "description") if k in location}
        elif vcards and not body.strip():
            message.kind = "unsupported"
        return message

    async def _number_for(self, jid: str, raw: Dict[str, Any], group: bool) -> Optional[str]:
        """A phone jid for a participant or sender: as is, or for an @lid the number the
        payload carries beside it (`sender_alt`, then cached for the messages that do not
        carry it), else the cached one (WAHA's answer in an earlier turn), else None."""
        if not jid.endswith("@lid"):
            return jid
        key = redis_keys.lid_number(jid)
        cached = await self.shared.redis.get(key)
        cached = cached.decode() if isinstance(cached, bytes) else cached
        number = sender_alt(raw, jid, group)
        if number:
            if number != cached:
                await self.shared.redis.set(key, number, ex=LID_TTL_SECONDS)
                logger.info("lid number taken from the payload")
            return number
        return cached or None

    async def resolve_identity(self, message: InboundMessage) -> None:
        """An @lid sender not in the cache: ask WAHA once (in the turn, not the webhook)."""
        if not message.lid or self.client is None:
            return
        number = await self.client.number_for_lid(message.lid)
        if not number:
            return
        await self.shared.redis.set(redis_keys.lid_number(message.lid), number, ex=LID_TTL_SECONDS)
        message.phone = digits(number)
        if message.is_group:
            message.conversation_id = group_conversation_id(message.chat_id, number)
        else:
            message.conversation_id = direct_conversation_id(number)
        logger.info("lid resolved to a number")


def sender_alt(raw: Dict[str, Any], lid: str, group: bool) -> Optional[str]:
    """The phone number (as `<digits>@c.us`) the engine's raw message (`_data`) gives for
    this @lid sender, or None. GOWS (whatsmeow's MessageInfo): `Info.SenderAlt` beside
    `Info.Sender`, for a direct sender and a group participant alike; NOWEB (Baileys 7):
    `key.remoteJidAlt` beside `key.remoteJid` (direct), `key.participantAlt` beside
    `key.participant` (group). The value is taken only beside that same lid, and only when it
    is a phone jid (`chat_jid`'s checks); anything else is ignored, not fatal."""
    info = raw.get("Info") if isinstance(raw.get("Info"), dict) else {}
    key = raw.get("key") if isinstance(raw.get("key"), dict) else {}
    pairs = [(info.get("Sender"), info.get("SenderAlt"))]
    if group:
        pairs.append((key.get("participant"), key.get("participantAlt")))
    else:
        pairs.append((key.get("remoteJid"), key.get("remoteJidAlt")))
    for beside, alt in pairs:
        if not isinstance(beside, str) or not isinstance(alt, str) or not alt:
            continue
        if digits(beside) != digits(lid) or not beside.endswith("@lid"):
            continue
        try:
            jid = chat_jid(alt)
        except BadId:
            logger.info("alternative sender id ignored: not a chat id")
            continue
        if jid.endswith("@c.us") or jid.endswith("@s.whatsapp.net"):
            return f"{digits(jid)}@c.us"
        logger.info("alternative sender id ignored: not a phone number")
    return None


def _group_chat(conversation_id: str) -> str:
    from helpdesk.whatsapp import group_of  # a group id only: the name is local to this helper

    return group_of(conversation_id) or conversation_id
