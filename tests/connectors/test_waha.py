"""WAHA webhook deliveries parsed by `WahaInput.parse` (docs/whatsapp-wire-formats.md A1-A5),
the `X-Webhook-Hmac` check and @lid identities against the fake WAHA, with the test Redis
behind the channel; `WahaSender`'s buttons and files. The webhook's answers are in
tests/connectors/whatsapp/test_webhook.py."""
import hashlib
import hmac
import json
import logging
import uuid
from typing import Any, Dict, Optional

import pytest

import connectors.whatsapp.webhook as webhook
from connectors.waha import WahaInput
from helpdesk import redis_keys
from helpdesk.errors import ConfigError
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    inbound_entries,
    inbound_length,
    BOT_LID,
    BOT_NUMBER,
    GROUP,
    OTHER,
    USER,
    WAHA_CHAT,
    WAHA_HMAC_KEY,
    Rig,
    buttons_for,
    channel_env,
    close_channel,
    fake_meta,
    fake_waha,
    fresh,
    replying_to,
    run,
    send_buttons,
    tiny_config,
    waha_event,
    waha_payload,
    waha_settings,
    waha_signed,
    webhook_request,
)

GROUP_DIGITS = "120363419669512474"


async def _parse(event: Dict[str, Any], url: str = "http://127.0.0.1:9", config=None):
    channel = fresh(WahaInput, waha_settings(url))
    if config is not None:
        channel.config = config
    try:
        return await channel.parse(event)
    finally:
        await channel.shared.redis.close()


def parse(event: Dict[str, Any]):
    return run(_parse(event))


def only(parsed):
    assert parsed.skipped == [] and len(parsed.messages) == 1, parsed
    return parsed.messages[0]


def reasons(parsed):
    return [reason for reason, _detail in parsed.skipped]


# --- what reaches Rasa and what does not ---------------------------------------------------

def test_text_message_from_a_direct_chat(channel_env):
    payload = waha_payload(USER, "  La caja 3 no enciende  ", message_id="false_x_AAA")
    message = only(parse(waha_event(payload)))
    assert message.channel == "waha"
    assert message.message_id == "false_x_AAA"
    assert message.conversation_id == USER
    assert message.chat_id == f"{USER}@c.us"
    assert message.kind == "text" and message.text == "La caja 3 no enciende"
    assert message.phone == USER and message.name == "Ana Pérez"
    assert not message.is_group and message.participant is None
    assert not message.mentions_bot and message.opt_word is None
    assert message.lid is None and message.media is None
    assert message.timestamp == payload["timestamp"]


def test_message_any_from_someone_else_counts_and_own_is_skipped(channel_env):
    theirs = only(parse(waha_event(waha_payload(USER, "hola"), event="message.any")))
    assert theirs.text == "hola"
    own = parse(waha_event(waha_payload(USER, "respuesta", fromMe=True, source="api"),
                           event="message.any"))
    assert own.messages == [] and reasons(own) == ["own message"]


def test_own_message_in_a_group_with_from_me_false_is_skipped(channel_env):
    """The NOWEB quirk (#1005): fromMe false, participant = our own @lid."""
    by_lid = parse(waha_event(waha_payload(USER, "enviado desde el teléfono", group=GROUP,
                                           participant=BOT_LID)))
    assert by_lid.messages == [] and reasons(by_lid) == ["own message (group quirk)"]
    by_number = parse(waha_event(waha_payload(USER, "otro", group=GROUP,
                                              participant=f"{BOT_NUMBER}@c.us")))
    assert by_number.messages == [] and reasons(by_number) == ["own message (group quirk)"]


def test_own_number_as_direct_sender_is_skipped(channel_env):
    parsed = parse(waha_event(waha_payload(BOT_NUMBER, "eco")))
    assert parsed.messages == [] and reasons(parsed) == ["own message"]


@pytest.mark.parametrize("sender", ["status@broadcast", "120363025246125486@newsletter"])
def test_status_broadcast_and_newsletters_are_skipped(channel_env, sender):
    parsed = parse(waha_event(waha_payload(sender, "novedades")))
    assert parsed.messages == [] and reasons(parsed) == ["broadcast or newsletter"]


def test_other_session_is_skipped(channel_env):
    parsed = parse(waha_event(waha_payload(USER, "hola"), session="ventas"))
    assert parsed.messages == [] and parsed.skipped == [("other session", "ventas")]


@pytest.mark.parametrize("event, payload", [
    ("session.status", {"status": "WORKING", "statuses": [{"status": "WORKING",
                                                           "timestamp": 1700000003000}]}),
    ("message.ack", {"id": "true_x_A", "from": f"{USER}@c.us", "fromMe": True, "ack": 3,
                     "ackName": "READ"}),
    ("message.reaction", {"id": "false_x_B", "from": f"{USER}@c.us",
                          "reaction": {"text": "👍", "messageId": "true_x_A"}}),
    ("presence.update", {"id": f"{USER}@c.us", "presences": []}),
])
def test_other_events_are_skipped(channel_env, event, payload):
    parsed = parse(waha_event(payload, event=event))
    assert parsed.messages == [] and parsed.skipped == [("event", event)]


@pytest.mark.parametrize("body", ["", None, "   "])
def test_call_stub_without_text_or_media_is_skipped(channel_env, body):
    parsed = parse(waha_event(waha_payload(USER, body)))
    assert parsed.messages == [] and reasons(parsed) == ["empty message"]


def test_message_without_payload_or_id_is_skipped(channel_env):
    assert reasons(parse(waha_event(None))) == ["no payload"]
    assert reasons(parse(waha_event(waha_payload(USER, "x", id=None)))) == ["missing id or from"]


def test_malformed_or_missing_timestamp_is_skipped_not_raised(channel_env):
    """Without a usable timestamp the message's age is unknown, so the replay window could not
    hold: skipped and logged (WAHA always sends payload.timestamp)."""
    for timestamp in ("ayer", None, 0, "nan", True):
        parsed = parse(waha_event(waha_payload(USER, "hola", timestamp=timestamp)))
        assert parsed.messages == [] and reasons(parsed) == ["no usable timestamp"]


# --- media, location, contacts ---------------------------------------------------------------

def test_image_with_url_and_caption(channel_env):
    url = "http://localhost:3000/api/files/default/false_x_AAA.jpg"
    message = only(parse(waha_event(waha_payload(
        USER, "Así quedó la pantalla", hasMedia=True,
        media={"url": url, "mimetype": "image/jpeg", "filename": None, "error": None},
    ))))
    assert message.kind == "media" and message.text == "Así quedó la pantalla"
    assert message.media.kind == "image" and message.media.url == url
    assert message.media.mime_type == "image/jpeg" and message.media.error is None


def test_has_media_with_media_null_is_marked_unavailable(channel_env):
    message = only(parse(waha_event(waha_payload(USER, "foto", hasMedia=True, media=None))))
    assert message.kind == "media" and message.text == "foto"
    assert message.media.url is None
    assert message.media.error == "WAHA did not download the file"


def test_media_with_an_error_keeps_the_error(channel_env):
    message = only(parse(waha_event(waha_payload(
        USER, "", hasMedia=True,
        media={"url": None, "mimetype": "image/jpeg", "error": {"message": "expired"}},
    ))))
    assert message.kind == "media" and message.media.error and "expired" in message.media.error


def test_document_keeps_its_filename(channel_env):
    message = only(parse(waha_event(waha_payload(
        USER, "", hasMedia=True,
        media={"url": "http://w/api/files/f.pdf", "mimetype": "application/pdf",
               "filename": "remito 0042.pdf", "error": None},
    ))))
    assert message.media.kind == "document" and message.media.filename == "remito 0042.pdf"
    assert message.text == ""


@pytest.mark.parametrize("mimetype, raw_type, kind", [
    ("audio/ogg; codecs=opus", "ptt", "voice"),
    ("audio/mpeg", "ptt", "voice"),
    ("audio/ogg; codecs=opus", None, "voice"),
    ("audio/mpeg", None, "audio"),
    ("video/mp4", None, "video"),
    ("image/webp", "sticker", "sticker"),
])
def test_audio_and_other_media_kinds(channel_env, mimetype, raw_type, kind):
    data = {"notifyName": "Ana"}
    if raw_type:
        data["type"] = raw_type
    message = only(parse(waha_event(waha_payload(
        USER, "", hasMedia=True, _data=data,
        media={"url": "http://w/api/files/a", "mimetype": mimetype, "error": None},
    ))))
    assert message.media.kind == kind


def test_location_goes_to_metadata(channel_env):
    message = only(parse(waha_event(waha_payload(
        USER, "", location={"latitude": "-34.6037", "longitude": "-58.3816",
                            "description": "Sucursal Centro"},
    ))))
    assert message.kind == "location"
    assert message.location == {"latitude": "-34.6037", "longitude": "-58.3816",
                                "description": "Sucursal Centro"}


def test_vcard_alone_is_unsupported(channel_env):
    card = "BEGIN:VCARD\nVERSION:3.0\nFN:Juan\nTEL:+5491100000001\nEND:VCARD"
    message = only(parse(waha_event(waha_payload(USER, "", vCards=[card]))))
    assert message.kind == "unsupported"


# --- identities: @lid, groups, mentions, opt words ------------------------------------------

def test_lid_sender_without_a_cached_number(channel_env):
    message = only(parse(waha_event(waha_payload("72318944542853@lid", "Olaaa"))))
    assert message.lid == "72318944542853@lid"
    assert message.phone is None
    assert message.conversation_id == "72318944542853"
    assert message.chat_id == "72318944542853@lid"


def test_lid_sender_with_a_cached_number(channel_env, redis_client):
    redis_client.set("helpdesk:lid:72318944542853@lid", f"{USER}@c.us")
    message = only(parse(waha_event(waha_payload("72318944542853@lid", "Olaaa"))))
    assert message.lid is None
    assert message.phone == USER and message.conversation_id == USER
    assert message.chat_id == "72318944542853@lid"  # replies still go where the user wrote


def test_lid_participant_in_a_group_with_and_without_a_cached_number(channel_env,
                                                                     redis_client):
    lid = "153219082764294@lid"
    unknown = only(parse(waha_event(waha_payload(USER, "hola", group=GROUP, participant=lid))))
    assert unknown.conversation_id == f"g{GROUP_DIGITS}-153219082764294"
    assert unknown.lid == lid and unknown.phone is None
    redis_client.set(redis_keys.lid_number(lid), f"{OTHER}@c.us")
    known = only(parse(waha_event(waha_payload(USER, "hola", group=GROUP, participant=lid))))
    assert known.conversation_id == f"g{GROUP_DIGITS}-{OTHER}"
    assert known.lid is None and known.phone == OTHER and known.participant == lid


def test_resolve_identity_asks_waha_once_and_caches(channel_env, fake_waha, redis_client):
    lid = "72318944542853@lid"
    fake_waha.lids[lid] = f"{USER}@c.us"

    async def scenario():
        channel = fresh(WahaInput, waha_settings(fake_waha.url))
        channel.make_sender()
        try:
            message = (await channel.parse(waha_event(waha_payload(lid, "Olaaa")))).messages[0]
            assert message.conversation_id == "72318944542853"
            await channel.resolve_identity(message)
            again = (await channel.parse(waha_event(waha_payload(lid, "otra")))).messages[0]
            return message, again
        finally:
            await close_channel(channel)

    message, again = run(scenario())
    assert message.conversation_id == USER and message.phone == USER
    assert redis_client.get(f"helpdesk:lid:{lid}") == f"{USER}@c.us".encode()
    assert 0 < redis_client.ttl(f"helpdesk:lid:{lid}") <= 30 * 24 * 3600
    assert again.conversation_id == USER and again.lid is None
    lookups = fake_waha.calls(f"/api/default/lids/{lid}")
    assert len(lookups) == 1 and lookups[0]["headers"].get("X-Api-Key") == "waha-key"


def test_resolve_identity_unknown_to_waha_keeps_the_lid(channel_env, fake_waha, redis_client):
    lid = "99999999999999@lid"

    async def scenario():
        channel = fresh(WahaInput, waha_settings(fake_waha.url))
        channel.make_sender()
        try:
            message = (await channel.parse(waha_event(waha_payload(lid, "hola")))).messages[0]
            await channel.resolve_identity(message)
            return message
        finally:
            await close_channel(channel)

    message = run(scenario())
    assert message.conversation_id == "99999999999999" and message.lid == lid
    assert redis_client.get(redis_keys.lid_number(lid)) is None


def test_group_participants_get_their_own_conversations(channel_env):
    first = only(parse(waha_event(waha_payload(USER, "se cortó la luz", group=GROUP))))
    second = only(parse(waha_event(waha_payload(
        OTHER, "no anda el posnet", group=GROUP, participant=f"{OTHER}:12@s.whatsapp.net"))))
    assert first.conversation_id == f"g{GROUP_DIGITS}-{USER}"
    assert second.conversation_id == f"g{GROUP_DIGITS}-{OTHER}"
    assert first.is_group and first.chat_id == GROUP and first.participant == f"{USER}@c.us"
    assert first.phone == USER and second.phone == OTHER


def test_group_sender_from_author_when_participant_is_missing(channel_env):
    payload = waha_payload(USER, "hola", group=GROUP, participant=None)
    payload["participant"] = None
    payload["author"] = f"{OTHER}@c.us"
    assert only(parse(waha_event(payload))).conversation_id == f"g{GROUP_DIGITS}-{OTHER}"
    payload = dict(payload, author=None, id="false_g_X")
    assert reasons(parse(waha_event(payload))) == ["group message without participant"]


@pytest.mark.parametrize("body", [
    f"@{BOT_NUMBER} se cayó el sistema de cobro",
    "@77820596330581 se cayó el sistema de cobro",
    f"se cayó el sistema de cobro @{BOT_NUMBER}",
])
def test_a_mention_of_the_bot_is_detected_and_stripped(channel_env, body):
    message = only(parse(waha_event(waha_payload(USER, body, group=GROUP))))
    assert message.mentions_bot
    assert message.text == "se cayó el sistema de cobro"


def test_a_mention_of_someone_else_is_kept(channel_env):
    body = f"@{OTHER} fijate vos, y @{BOT_NUMBER}9 tampoco soy yo"
    message = only(parse(waha_event(waha_payload(USER, body, group=GROUP))))
    assert not message.mentions_bot and message.text == body


@pytest.mark.parametrize("quoted", [f"{BOT_NUMBER}@c.us", BOT_LID,
                                    f"{BOT_NUMBER}:20@s.whatsapp.net"])
def test_a_quote_reply_to_the_bot_addresses_it_like_a_mention(channel_env, quoted):
    payload = waha_payload(USER, "en la tienda 12", group=GROUP,
                           replyTo={"id": "3EB0AAAA", "participant": quoted,
                                    "body": "¿En qué sucursal ocurre?", "hasMedia": False})
    message = only(parse(waha_event(payload)))
    assert message.mentions_bot and message.text == "en la tienda 12"


@pytest.mark.parametrize("reply_to", [
    {"id": "3EB0BBBB", "participant": f"{OTHER}@c.us", "body": "¿a ustedes también?"},
    {"id": "3EB0CCCC", "body": "sin participante: el motor no lo dio"},
    "not an object",
])
def test_a_quote_of_someone_else_or_of_nobody_known_is_not_a_mention(channel_env, reply_to):
    payload = waha_payload(USER, "a nosotros también", group=GROUP, replyTo=reply_to)
    assert not only(parse(waha_event(payload))).mentions_bot


@pytest.mark.parametrize("body, word", [
    ("BAJA", "out"), ("Stop", "out"), ("  stop! ", "out"), ("alta", "in"), ("ALTA.", "in"),
    ("Cancelar suscripción", "out"), ("baja la persiana", None), ("dar de alta un usuario", None),
])
def test_opt_words(channel_env, body, word):
    assert only(parse(waha_event(waha_payload(USER, body)))).opt_word == word


def test_opt_word_after_a_mention_in_a_group(channel_env):
    message = only(parse(waha_event(waha_payload(USER, f"@{BOT_NUMBER} BAJA", group=GROUP))))
    assert message.mentions_bot and message.text == "BAJA" and message.opt_word == "out"


def test_direct_reply_to_a_group_report_continues_the_group_conversation(channel_env,
                                                                         redis_client):
    """groups.ask_in: direct writes an alias; the user's private answer joins the group case."""
    group_conversation = f"g{GROUP_DIGITS}-{USER}"
    redis_client.set(redis_keys.direct_alias(USER), group_conversation)
    event = waha_event(waha_payload(USER, "Sucursal 12"))
    message = only(run(_parse(event, config=tiny_config(ask_in="direct"))))
    assert message.conversation_id == group_conversation
    assert message.is_group and message.chat_id == GROUP
    assert message.participant == f"{USER}@c.us"


# --- the signature ------------------------------------------------------------------------

def _verify(headers: Dict[str, str], body: bytes, key: Optional[str] = WAHA_HMAC_KEY) -> bool:
    async def scenario():
        channel = fresh(WahaInput, waha_settings(hmac_key=key))
        try:
            return channel.verify(webhook_request(headers, body), body)
        finally:
            await channel.shared.redis.close()

    return run(scenario())


def test_the_documented_example_digest(channel_env):
    """A3: this body and key give the digest WAHA's docs show."""
    body = b'{"event":"message","session":"default","engine":"WEBJS"}'
    digest = hmac.new(b"my-secret-key", body, hashlib.sha512).hexdigest()
    assert digest.startswith("208f8a55dde9e055") and digest.endswith("6153fa89")
    assert _verify({"X-Webhook-Hmac": digest, "X-Webhook-Hmac-Algorithm": "sha512"}, body,
                   key="my-secret-key")


def test_hmac_correct_wrong_missing_and_wrong_algorithm(channel_env):
    body = json.dumps(waha_event(waha_payload(USER, "hola"))).encode()
    assert _verify(waha_signed(body), body)
    assert _verify(waha_signed(body, algorithm=None), body)  # the header is optional
    assert _verify(waha_signed(body, algorithm="SHA512"), body)
    upper = waha_signed(body)
    upper["X-Webhook-Hmac"] = upper["X-Webhook-Hmac"].upper()
    assert _verify(upper, body)
    assert not _verify(waha_signed(body, key="otra-clave"), body)
    assert not _verify(waha_signed(body), body + b" ")  # another body than the one signed
    assert not _verify({"Content-Type": "application/json"}, body)
    assert not _verify({"X-Webhook-Hmac": ""}, body)
    assert not _verify(waha_signed(body, algorithm="sha256"), body)
    sha256 = {"X-Webhook-Hmac": hmac.new(WAHA_HMAC_KEY.encode(), body, hashlib.sha256).hexdigest(),
              "X-Webhook-Hmac-Algorithm": "sha256"}
    assert not _verify(sha256, body)


def test_without_a_key_nothing_is_accepted_unless_the_development_setting_says_so(
        channel_env, monkeypatch):
    body = b'{"event":"message"}'
    assert not _verify({}, body, key=None)
    assert not _verify({"X-Webhook-Hmac": "0" * 128}, body, key=None)
    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    assert _verify({}, body, key=None)
    assert _verify({"X-Webhook-Hmac": "0" * 128}, body, key=None)


def test_without_a_key_the_channel_refuses_to_start(channel_env, monkeypatch, caplog):
    """An unsigned webhook with the secret unset: the channel does not start, and says in one
    line which variable to set; with the development setting it starts and warns once."""
    monkeypatch.setenv("WAHA_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as refused:
        WahaInput.from_credentials(None)
    line = str(refused.value)
    assert "\n" not in line and "WAHA" in line and "WAHA_WEBHOOK_HMAC_KEY" in line
    assert "HELPDESK_INSECURE_WEBHOOKS=true" in line

    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    webhook._warned_unsigned.clear()

    async def started():
        channels = [WahaInput.from_credentials(None) for _ in range(2)]
        for channel in channels:
            await close_channel(channel)

    with caplog.at_level(logging.WARNING):
        run(started())
    warnings = [r for r in caplog.records if "WAHA_WEBHOOK_HMAC_KEY" in r.getMessage()]
    assert len(warnings) == 1 and "unsigned" in warnings[0].getMessage()


# --- identifiers ---------------------------------------------------------------------------

FULL_WIDTH = USER.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
ARABIC_INDIC = USER.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


@pytest.mark.parametrize("spelling", [FULL_WIDTH, ARABIC_INDIC])
def test_digits_of_any_script_give_the_same_conversation(channel_env, spelling):
    """'５４９…' and '٥٤٩…' are the same person as '549…': one conversation, one chat id, so
    one opt-out and one rate-limit key (both are keyed by the conversation id)."""
    plain_message = only(parse(waha_event(waha_payload(USER, "hola"))))
    message = only(parse(waha_event(waha_payload(f"{spelling}@c.us", "hola"))))
    assert message.conversation_id == plain_message.conversation_id == USER
    assert message.chat_id == f"{USER}@c.us" and message.phone == USER
    in_group = only(parse(waha_event(waha_payload(
        f"{spelling}@c.us", "hola", group=GROUP.translate(
            str.maketrans("0123456789", "０１２３４５６７８９"))))))
    assert in_group.conversation_id == f"g{GROUP.split('@')[0]}-{USER}"
    assert in_group.chat_id == GROUP and in_group.participant == f"{USER}@c.us"


@pytest.mark.parametrize("payload, reason", [
    (dict(sender="5" * 16 + "@c.us"), "bad id"),  # more digits than E.164 allows
    (dict(sender=USER, group="1" * 21 + "@g.us"), "bad id"),
    (dict(sender=USER, group=GROUP, participant="5" * 40 + "@c.us"), "bad id"),
    (dict(sender="abc@c.us"), "bad id"),
    (dict(sender=f"{USER}@example.com"), "bad id"),
    (dict(sender=USER, message_id="false_" + "A" * 200), "bad id"),
])
def test_ids_longer_than_any_real_one_are_skipped(channel_env, payload, reason):
    sender = payload.pop("sender")
    parsed = parse(waha_event(waha_payload(sender, "hola", **payload)))
    assert parsed.messages == [] and reasons(parsed) == [reason]


def test_an_over_long_id_is_answered_and_logged_not_recorded(channel_env, redis_client, caplog):
    event = waha_event(waha_payload(USER, "hola", message_id="false_" + "A" * 500))
    body = json.dumps(event).encode()

    async def scenario():
        channel = fresh(WahaInput, waha_settings(hmac_key=WAHA_HMAC_KEY))
        try:
            answer = await channel.receive(webhook_request(waha_signed(body), body))
            return answer.status, json.loads(answer.body)
        finally:
            await close_channel(channel)

    with caplog.at_level(logging.INFO):
        assert run(scenario()) == (200, {"status": "ok", "ignored": 1})
    assert inbound_length(redis_client) == 0
    assert any(getattr(r, "reason", None) == "bad id" for r in caplog.records)


# --- the sender: buttons and files ---------------------------------------------------------

def test_waha_buttons_are_always_numbered_text(redis_client, redis_url, fake_waha, fake_meta):
    offered = send_buttons(redis_url, fake_waha, fake_meta, "waha", buttons_for("Sí", "No"))
    assert fake_waha.texts(WAHA_CHAT) == ["¿Qué desea hacer?\n1. Sí\n2. No"]
    assert [b["title"] for b in offered] == ["Sí", "No"]


def test_images_and_documents_go_through_the_media_endpoints(redis_client, redis_url, fake_waha):
    image, pdf = "https://example.com/a.png", "https://example.com/guia.pdf"

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            with replying_to(USER):
                await rig.outputs["waha"].send_image_url(USER, image)
                await rig.outputs["waha"].send_attachment(USER, {"url": pdf,
                                                                 "filename": "guia.pdf"})

    run(scenario())
    (sent_image,) = fake_waha.calls("/api/sendImage")
    (sent_file,) = fake_waha.calls("/api/sendFile")
    assert sent_image["body"]["chatId"] == WAHA_CHAT
    assert sent_image["body"]["file"] == {"url": image}
    assert sent_file["body"]["file"] == {"url": pdf, "filename": "guia.pdf"}


# --- @lid senders whose number the payload carries (issue 12) ------------------------------

LID = "38203818037365@lid"
LID_DIGITS = "38203818037365"


def gows_payload(sender: str, body: str, *, alt: Any = f"{USER}@s.whatsapp.net",
                 group: Optional[str] = None, message_id: Optional[str] = None
                 ) -> Dict[str, Any]:
    """A GOWS WAMessage as WAHA 2026.1 sends it: `_data` is whatsmeow's message event, its
    `Info` naming the sender by @lid with the phone number in `SenderAlt` (a direct chat:
    Chat = Sender; a group: Chat = the group, Sender = the participant)."""
    chat = group or sender
    mid = message_id or f"false_{chat}_3AC{uuid.uuid4().hex[:17].upper()}" + (
        f"_{sender}" if group else "")
    payload = waha_payload(sender, body, group=group, participant=sender if group else None,
                           message_id=mid, to=None, _data={
        "Info": {
            "Chat": chat, "Sender": sender, "IsFromMe": False, "IsGroup": bool(group),
            "AddressingMode": "lid" if group else "", "SenderAlt": alt, "RecipientAlt": "",
            "BroadcastListOwner": "", "BroadcastRecipients": None, "ID": mid.split("_")[2],
            "ServerID": 0, "Type": "text", "PushName": "Lu", "Timestamp": "2026-01-16T16:23:11Z",
            "Category": "", "Multicast": False, "MediaType": "", "Edit": "",
            "VerifiedName": None, "DeviceSentMeta": None,
        },
        "Message": {"conversation": body}, "IsEphemeral": False, "IsEdit": False,
    })
    return payload


def gows_event(payload: Dict[str, Any]) -> Dict[str, Any]:
    event = waha_event(payload)
    event["engine"] = "GOWS"
    return event


def receive_all(events, log=None):
    """Each event through the signed webhook of one channel; the answers' bodies."""
    async def scenario():
        channel = fresh(WahaInput, waha_settings(hmac_key=WAHA_HMAC_KEY))
        if log is not None:
            channel.shared.log = log(channel.shared.redis)
        try:
            answers = []
            for event in events:
                body = json.dumps(event).encode()
                answer = await channel.receive(webhook_request(waha_signed(body), body))
                assert answer.status == 200
                answers.append(json.loads(answer.body))
            return answers
        finally:
            await close_channel(channel)

    return run(scenario())


def recorded(redis_client):
    from helpdesk.whatsapp import InboundMessage

    return [InboundMessage.from_json(e[1][b"m"]) for e in inbound_entries(redis_client)]


def test_a_gows_lid_sender_with_sender_alt_is_its_number_from_the_first_message(
        channel_env, redis_client):
    message = only(parse(gows_event(gows_payload(LID, "la caja 2 no enciende"))))
    assert message.conversation_id == USER and message.phone == USER
    assert message.lid is None  # nothing left to resolve in the turn
    assert message.chat_id == LID  # replies go where the user wrote
    assert redis_client.get(redis_keys.lid_number(LID)) == f"{USER}@c.us".encode()
    assert 0 < redis_client.ttl(redis_keys.lid_number(LID)) <= 30 * 24 * 3600


def test_an_opted_out_number_writing_from_its_lid_is_dropped_at_acceptance(channel_env,
                                                                           redis_client):
    redis_client.sadd(redis_keys.opted_out_set(), USER)  # what the opt-out turn records
    (answer,) = receive_all([gows_event(gows_payload(LID, "hola"))])
    assert answer == {"status": "ok", "opted_out": 1, "ignored": 0}
    assert inbound_length(redis_client) == 0


def test_a_number_and_its_lid_share_one_rate_limit(channel_env, redis_client):
    """Two messages under the number, the third from its lid: over a limit of two, as one
    user (before, the lid had a counter of its own and the third was accepted)."""
    from helpdesk.whatsapp import InboundLog

    def small_limit(client):
        return InboundLog(client, 3600, 2, 60, 60, 8)

    answers = receive_all([waha_event(waha_payload(USER, "uno")),
                           waha_event(waha_payload(USER, "dos")),
                           gows_event(gows_payload(LID, "tres"))], log=small_limit)
    assert [a.get("accepted", 0) for a in answers] == [1, 1, 0]
    assert answers[2].get("rate_limited_first") == 1
    assert redis_client.exists(redis_keys.rate_cooldown(USER))
    assert not redis_client.exists(redis_keys.rate_counter(LID_DIGITS))


def test_a_later_message_of_the_lid_without_the_field_is_the_same_conversation(
        channel_env, redis_client):
    first = gows_event(gows_payload(LID, "se cortó la luz"))
    later = waha_event(waha_payload(LID, "en la sucursal 12"))  # no _data.Info at all
    answers = receive_all([first, later])
    assert [a.get("accepted") for a in answers] == [1, 1]
    messages = recorded(redis_client)
    assert [m.conversation_id for m in messages] == [USER, USER]
    assert [m.phone for m in messages] == [USER, USER] and messages[1].lid is None


def test_a_group_participant_by_lid_with_sender_alt(channel_env, redis_client):
    message = only(parse(gows_event(gows_payload(LID, "no anda el posnet", group=GROUP,
                                                 alt=f"{OTHER}:12@s.whatsapp.net"))))
    assert message.conversation_id == f"g{GROUP_DIGITS}-{OTHER}"
    assert message.phone == OTHER and message.participant == LID and message.lid is None
    assert redis_client.get(redis_keys.lid_number(LID)) == f"{OTHER}@c.us".encode()


def test_noweb_alternative_ids_count_too(channel_env, redis_client):
    """NOWEB (Baileys 7): `_data.key.remoteJidAlt` in a direct chat, `participantAlt` in a
    group."""
    direct = waha_payload(LID, "hola", _data={"key": {
        "remoteJid": LID, "remoteJidAlt": f"{USER}@s.whatsapp.net", "fromMe": False,
        "id": "3EB0AA", "addressingMode": "lid"}, "pushName": "Ana"})
    assert only(parse(waha_event(direct))).conversation_id == USER
    other_lid = "153219082764294@lid"
    in_group = waha_payload(other_lid, "hola", group=GROUP, participant=other_lid, _data={
        "key": {"remoteJid": GROUP, "participant": other_lid,
                "participantAlt": f"{OTHER}@s.whatsapp.net", "fromMe": False, "id": "3EB0AB",
                "addressingMode": "lid"}})
    message = only(parse(waha_event(in_group)))
    assert message.conversation_id == f"g{GROUP_DIGITS}-{OTHER}" and message.phone == OTHER


@pytest.mark.parametrize("alt", [
    "72318944542853@lid",  # the other way round: an @lid is no phone number
    GROUP, "abc@s.whatsapp.net", "5" * 16 + "@s.whatsapp.net", f"{USER}@example.com",
    "", None, 5491122334455, {"User": USER},
])
def test_an_alt_that_is_not_a_phone_jid_is_ignored(channel_env, redis_client, alt):
    message = only(parse(gows_event(gows_payload(LID, "hola", alt=alt))))
    assert message.conversation_id == LID_DIGITS and message.lid == LID
    assert message.phone is None
    assert redis_client.get(redis_keys.lid_number(LID)) is None


def test_an_alt_beside_another_sender_is_ignored(channel_env, redis_client):
    payload = gows_payload(LID, "hola")
    payload["_data"]["Info"]["Sender"] = "99999999999999@lid"
    message = only(parse(gows_event(payload)))
    assert message.conversation_id == LID_DIGITS and message.lid == LID


def test_an_alt_that_is_our_own_number_is_our_own_message(channel_env, redis_client):
    own = parse(gows_event(gows_payload(LID, "eco", alt=f"{BOT_NUMBER}:20@s.whatsapp.net")))
    assert own.messages == [] and reasons(own) == ["own message"]
    in_group = parse(gows_event(gows_payload(LID, "eco", group=GROUP,
                                             alt=f"{BOT_NUMBER}@s.whatsapp.net")))
    assert in_group.messages == [] and reasons(in_group) == ["own message (group quirk)"]
