"""Meta Cloud API deliveries parsed by `MetaInput.parse` (docs/whatsapp-wire-formats.md B2-B3):
batches, statuses, errors, every message type, and `X-Hub-Signature-256` on the raw bytes;
`MetaSender`'s buttons (reply buttons, lists, numbered text) and files against the fake Meta."""
import hashlib
import hmac
import json
import logging
from typing import Any, Dict, Optional

import pytest
from sanic.compat import Header
from sanic.request import Request

import connectors.whatsapp.webhook as webhook
from connectors.meta import MetaInput
from helpdesk.errors import ConfigError
from helpdesk.whatsapp import Route
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    META_PHONE_ID,
    OTHER,
    USER,
    Rig,
    buttons_for,
    channel_env,
    close_channel,
    fake_meta,
    fake_waha,
    fresh,
    meta_delivery,
    meta_message,
    meta_settings,
    meta_text,
    meta_value,
    run,
    send_buttons,
)

SECRET = "meta-app-secret"
BSUID = "US.13491208655302741918"


def parse(delivery: Dict[str, Any]):
    async def scenario():
        channel = fresh(MetaInput, meta_settings())
        try:
            return await channel.parse(delivery)
        finally:
            await close_channel(channel)

    return run(scenario())


def one(message: Dict[str, Any], **value_fields: Any):
    parsed = parse(meta_delivery(meta_value([message], **value_fields)))
    assert parsed.skipped == [] and len(parsed.messages) == 1, parsed
    return parsed.messages[0]


def skipped_only(message: Dict[str, Any]):
    parsed = parse(meta_delivery(meta_value([message])))
    assert parsed.messages == []
    return [reason for reason, _detail in parsed.skipped]


# --- batches, statuses, errors, routing ----------------------------------------------------

def test_every_entry_change_and_message_of_a_batch_is_parsed_in_order(channel_env):
    def value(*texts: str) -> Dict[str, Any]:
        return meta_value([meta_text(text, sender=USER if i % 2 else OTHER,
                                     message_id=f"wamid.{text}")
                           for i, text in enumerate(texts)])

    delivery = {"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [{"field": "messages", "value": value("a1", "a2")},
                                {"field": "messages", "value": value("b1")}]},
        {"id": "2", "changes": [{"field": "messages", "value": value("c1", "c2", "c3")},
                                {"field": "messages", "value": value("d1")}]},
    ]}
    parsed = parse(delivery)
    assert [m.text for m in parsed.messages] == ["a1", "a2", "b1", "c1", "c2", "c3", "d1"]
    assert [m.message_id for m in parsed.messages][:2] == ["wamid.a1", "wamid.a2"]
    assert {m.conversation_id for m in parsed.messages} == {USER, OTHER}
    assert parsed.skipped == [] and parsed.failed_statuses == []


def test_statuses_are_ignored_and_failed_ones_collected(channel_env):
    failed = {"id": "wamid.out1", "status": "failed", "timestamp": "1689380458",
              "recipient_id": USER,
              "errors": [{"code": 131047, "title": "Re-engagement message"}]}
    statuses = [{"id": "wamid.out0", "status": status, "timestamp": "1698266945",
                 "recipient_id": USER} for status in ("sent", "delivered", "read")]
    parsed = parse(meta_delivery(meta_value([meta_text("hola")], statuses=statuses + [failed])))
    assert [m.text for m in parsed.messages] == ["hola"]
    assert parsed.failed_statuses == [failed]
    assert parsed.skipped == [("status", "sent"), ("status", "delivered"), ("status", "read")]


def test_value_level_errors_are_logged_with_their_code(channel_env, caplog):
    error = {"code": 131051, "title": "Message type unknown",
             "error_data": {"details": "Message type is currently not supported."}}
    with caplog.at_level(logging.ERROR, logger="connectors.meta"):
        parsed = parse(meta_delivery(meta_value(errors=[error])))
    assert parsed.messages == []
    logged = [r for r in caplog.records if r.getMessage() == "Meta reported an error"]
    assert len(logged) == 1 and logged[0].code == 131051


def test_another_phone_number_is_skipped(channel_env):
    parsed = parse(meta_delivery(meta_value([meta_text("hola")], phone_number_id="999"),
                                 meta_value([meta_text("para mí")])))
    assert [m.text for m in parsed.messages] == ["para mí"]
    assert parsed.skipped == [("other phone number", "999")]


def test_other_fields_and_objects_are_skipped(channel_env):
    parsed = parse(meta_delivery({"event": "APPROVED", "message_template_name": "x"},
                                 field="message_template_status_update"))
    assert parsed.messages == [] and parsed.skipped == [
        ("field", "message_template_status_update")]
    assert parse({"object": "page", "entry": []}).skipped == [("object", "page")]


def test_a_malformed_message_does_not_lose_the_good_ones(channel_env):
    messages = [
        meta_text("primero", message_id="wamid.1"),
        meta_message("interactive", message_id="wamid.bad1"),  # no "interactive" object
        {"from": USER, "id": "wamid.bad2", "type": "image", "image": None},
        "not a message",
        {"from": USER, "id": "wamid.bad3", "type": "location", "location": 42},
        meta_text("segundo", message_id="wamid.2"),
    ]
    parsed = parse(meta_delivery(meta_value(messages, contacts=[])))
    assert [m.message_id for m in parsed.messages] == ["wamid.1", "wamid.2"]
    assert [reason for reason, _ in parsed.skipped] == ["malformed message"] * 4


def test_malformed_changes_and_values_are_skipped(channel_env):
    delivery = {"object": "whatsapp_business_account", "entry": [
        "garbage", {"id": "1", "changes": ["x", {"field": "messages", "value": None},
                                           {"field": "messages",
                                            "value": meta_value([meta_text("ok")])}]}]}
    parsed = parse(delivery)
    assert [m.text for m in parsed.messages] == ["ok"]
    assert [reason for reason, _ in parsed.skipped] == ["malformed change", "malformed value"]


@pytest.mark.parametrize("broken", [
    {"statuses": ["garbage"]},
    {"errors": ["garbage"]},
    {"contacts": [{"wa_id": USER, "profile": "Ana"}]},
])
def test_a_malformed_status_error_or_contact_does_not_lose_the_messages(channel_env, broken):
    value = meta_value([meta_text("hola")])
    value.update(broken)
    parsed = parse(meta_delivery(value))
    assert [m.text for m in parsed.messages] == ["hola"]


# --- message types ------------------------------------------------------------------------

def test_text(channel_env):
    raw = meta_text("  Does it come in another color?  ", message_id="wamid.T")
    raw["timestamp"] = "1749416383"
    value = meta_value([raw])
    parsed = parse(meta_delivery(value))
    message = parsed.messages[0]
    assert message.channel == "whatsapp" and message.message_id == "wamid.T"
    assert message.kind == "text" and message.text == "Does it come in another color?"
    assert message.conversation_id == USER and message.chat_id == USER
    assert message.phone == USER and message.name == "Sheena Nelson"
    assert message.timestamp == 1749416383.0 and message.opt_word is None


@pytest.mark.parametrize("body, word", [("BAJA", "out"), ("Stop", "out"), ("alta", "in"),
                                        ("baja de tensión en la caja", None)])
def test_opt_words(channel_env, body, word):
    assert one(meta_text(body)).opt_word == word


def test_empty_text_is_skipped(channel_env):
    assert skipped_only(meta_text("   ")) == ["empty text"]


def test_image_with_caption(channel_env):
    message = one(meta_message("image", {"mime_type": "image/jpeg", "sha256": "4654+8g=",
                                         "id": "65463453", "caption": "pantalla azul"}))
    assert message.kind == "media" and message.text == "pantalla azul"
    assert message.media.kind == "image" and message.media.media_id == "65463453"
    assert message.media.mime_type == "image/jpeg" and message.media.error is None


def test_document_with_filename(channel_env):
    message = one(meta_message("document", {"caption": "", "filename": "factura 12.pdf",
                                            "mime_type": "application/pdf",
                                            "id": "1234567890987654321"},
                               context={"forwarded": True}))
    assert message.media.kind == "document" and message.media.filename == "factura 12.pdf"
    assert message.text == ""


def test_audio_voice_note_and_plain_audio(channel_env):
    voice = one(meta_message("audio", {"mime_type": "audio/ogg; codecs=opus", "id": "77",
                                       "voice": True}))
    audio = one(meta_message("audio", {"mime_type": "audio/mpeg", "id": "78"}))
    assert voice.kind == "media" and voice.media.kind == "voice"
    assert audio.media.kind == "audio"


def test_media_without_an_id_is_marked_unavailable(channel_env):
    message = one(meta_message("image", {"mime_type": "image/jpeg"}))
    assert message.media.error == "no media id"


@pytest.mark.parametrize("reply_type", ["button_reply", "list_reply"])
def test_interactive_replies_give_the_id_not_the_title(channel_env, reply_type):
    reply = {"id": "/report_incident", "title": "Reportar falla"}
    if reply_type == "list_reply":
        reply["description"] = "Algo no funciona"
    message = one(meta_message("interactive", {"type": reply_type, reply_type: reply},
                               context={"from": "1122334455667", "id": "wamid.q"}))
    assert message.kind == "interactive"
    assert message.payload == "/report_incident" and message.text == "Reportar falla"


def test_interactive_without_an_id_is_skipped(channel_env):
    assert skipped_only(meta_message("interactive", {"type": "nfm_reply", "nfm_reply": {}})) \
        == ["interactive without id"]


def test_template_button_gives_its_payload(channel_env):
    message = one(meta_message("button", {"payload": "/ticket_status", "text": "Ver estado"}))
    assert message.kind == "interactive" and message.payload == "/ticket_status"
    no_payload = one(meta_message("button", {"text": "Sí"}))
    assert no_payload.payload == "Sí"


def test_location(channel_env):
    message = one(meta_message("location", {"latitude": -34.6037, "longitude": -58.3816,
                                            "name": "Sucursal Centro",
                                            "address": "Av. Corrientes 1234",
                                            "url": "https://example.com"}))
    assert message.kind == "location"
    assert message.location == {"latitude": -34.6037, "longitude": -58.3816,
                                "name": "Sucursal Centro", "address": "Av. Corrientes 1234"}


def test_reactions_are_ignored(channel_env):
    assert skipped_only(meta_message("reaction", {"message_id": "wamid.x", "emoji": "👍"})) \
        == ["reaction message"]


@pytest.mark.parametrize("message", [
    meta_message("unsupported", errors=[{"code": 131051, "title": "Message type unknown"}]),
    meta_message("contacts", None, contacts=[{"name": {"formatted_name": "Juan"}}]),
    meta_message("order", {"catalog_id": "1", "product_items": []}),
])
def test_unsupported_types(channel_env, message):
    assert one(message).kind == "unsupported"


def test_user_without_a_number(channel_env):
    """Usernames (BSUID): `from_user_id` and no `from`."""
    raw = meta_text("hola", sender=None)
    raw["from_user_id"] = BSUID
    message = one(raw, contacts=[{"profile": {"name": "Lu"}, "user_id": BSUID}])
    assert message.conversation_id == BSUID and message.chat_id == BSUID
    assert message.phone is None and message.name == "Lu"


def test_message_without_a_sender_is_skipped(channel_env):
    assert skipped_only(meta_text("hola", sender=None)) == ["missing id or sender"]


# --- the signature ------------------------------------------------------------------------

def _verify(headers: Dict[str, str], body: bytes, secret: Optional[str] = SECRET) -> bool:
    async def scenario():
        channel = fresh(MetaInput, meta_settings(app_secret=secret))
        try:
            request = Request(b"/webhooks/whatsapp/webhook", Header(headers), "1.1", "POST",
                              None, None)
            request.body = body
            return channel.verify(request, body)
        finally:
            await close_channel(channel)

    return run(scenario())


def _sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_is_checked_on_the_raw_bytes_meta_sent(channel_env):
    text = "Café ☕ sin señal en la sucursal 😀"
    delivery = meta_delivery(meta_value([meta_text(text)]))
    body = json.dumps(delivery).encode()  # Meta escapes non-ASCII as \uXXXX
    assert b"\\u00e9" in body and b"\\ud83d\\ude00" in body
    assert _verify({"X-Hub-Signature-256": _sign(body)}, body)
    assert [m.text for m in parse(json.loads(body)).messages] == [text]
    # the same JSON serialised again (UTF-8, other spacing) is other bytes: refused
    again = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()
    assert not _verify({"X-Hub-Signature-256": _sign(body)}, again)
    assert _verify({"X-Hub-Signature-256": _sign(again)}, again)


def test_wrong_missing_or_unprefixed_signatures_are_refused(channel_env):
    body = json.dumps(meta_delivery(meta_value([meta_text("hola")]))).encode()
    digest = _sign(body)[len("sha256="):]
    assert _verify({"X-Hub-Signature-256": "sha256=" + digest.upper()}, body)
    assert not _verify({"X-Hub-Signature-256": digest}, body)  # no "sha256=" prefix
    assert not _verify({"X-Hub-Signature-256": "sha1=" + digest}, body)
    assert not _verify({"X-Hub-Signature-256": _sign(body, "otro-secreto")}, body)
    assert not _verify({"X-Hub-Signature": "sha256=" + digest}, body)  # legacy header name
    assert not _verify({}, body)


def test_without_an_app_secret_nothing_is_accepted_unless_the_development_setting_says_so(
        channel_env, monkeypatch):
    body = b'{"object":"whatsapp_business_account"}'
    assert not _verify({}, body, secret=None)
    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    assert _verify({}, body, secret=None)


def test_without_an_app_secret_the_channel_refuses_to_start(channel_env, monkeypatch, caplog):
    monkeypatch.setenv("META_ACCESS_TOKEN", "t")
    monkeypatch.setenv("META_PHONE_NUMBER_ID", META_PHONE_ID)
    with pytest.raises(ConfigError) as refused:
        MetaInput.from_credentials(None)
    line = str(refused.value)
    assert "\n" not in line and "Meta" in line and "META_APP_SECRET" in line
    assert "HELPDESK_INSECURE_WEBHOOKS=true" in line
    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    webhook._warned_unsigned.clear()

    async def started():
        await close_channel(MetaInput.from_credentials(None))

    with caplog.at_level(logging.WARNING):
        run(started())
    assert [r for r in caplog.records if "META_APP_SECRET" in r.getMessage()]
    monkeypatch.setenv("META_APP_SECRET", SECRET)
    monkeypatch.delenv("HELPDESK_INSECURE_WEBHOOKS")

    async def signed():
        channel = MetaInput.from_credentials(None)
        await close_channel(channel)
        return channel.meta.app_secret

    assert run(signed()) == SECRET


# --- identifiers ---------------------------------------------------------------------------

@pytest.mark.parametrize("digits", ["０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹"])
def test_digits_of_any_script_give_the_same_conversation(channel_env, digits):
    """Full-width, Arabic-Indic and Persian digits: the same conversation, chat id and phone as
    ASCII ones, so one opt-out and one rate-limit key."""
    spelling = USER.translate(str.maketrans("0123456789", digits))
    message = one(meta_text("hola", sender=spelling))
    assert message.conversation_id == USER and message.chat_id == USER and message.phone == USER
    wa_id = one(meta_text("hola", sender="+" + spelling))
    assert wa_id.conversation_id == USER


@pytest.mark.parametrize("raw", [
    meta_text("hola", sender="5" * 16),  # more digits than E.164 allows
    meta_text("hola", sender="5" * 5000),
    meta_text("hola", message_id="wamid." + "A" * 200),
    dict(meta_text("hola", sender=None), from_user_id="US." + "1" * 300),
    dict(meta_text("hola", sender=None), from_user_id="US.1/../../x"),
])
def test_ids_longer_than_any_real_one_are_skipped_and_the_rest_kept(channel_env, raw):
    parsed = parse(meta_delivery(meta_value([raw, meta_text("sigo", message_id="wamid.ok")],
                                            contacts=[])))
    assert [m.message_id for m in parsed.messages] == ["wamid.ok"]
    assert [reason for reason, _ in parsed.skipped] == ["bad id"]


def test_a_message_without_a_timestamp_is_skipped(channel_env):
    raw = meta_text("hola")
    del raw["timestamp"]
    assert skipped_only(raw) == ["no usable timestamp"]


def test_phone_number_id_in_the_fixture_matches_the_settings():
    assert meta_settings().phone_number_id == META_PHONE_ID


# --- the sender: buttons and files ---------------------------------------------------------

def test_meta_up_to_three_short_titles_are_reply_buttons(redis_client, redis_url, fake_waha,
                                                         fake_meta):
    buttons = buttons_for("Sí", "No", "Hablar con alguien")
    offered = send_buttons(redis_url, fake_waha, fake_meta, "whatsapp", buttons)
    (body,) = fake_meta.messages()
    assert body["type"] == "interactive" and body["interactive"]["type"] == "button"
    replies = [b["reply"] for b in body["interactive"]["action"]["buttons"]]
    assert replies == [{"id": b["payload"], "title": b["title"]} for b in buttons]
    assert body["interactive"]["body"] == {"text": "¿Qué desea hacer?"}
    assert offered == buttons


@pytest.mark.parametrize("titles", [
    ["Caja", "Impresora", "Posnet", "Internet"],
    [f"Opción {n}" for n in range(1, 11)],
    ["Sí", "Una opción de 22 letra"],  # a title over 20 characters fits a list row
])
def test_meta_four_to_ten_buttons_are_a_list(redis_client, redis_url, fake_waha, fake_meta,
                                             titles):
    buttons = buttons_for(*titles)
    send_buttons(redis_url, fake_waha, fake_meta, "whatsapp", buttons)
    (body,) = fake_meta.messages()
    assert body["type"] == "interactive" and body["interactive"]["type"] == "list"
    rows = body["interactive"]["action"]["sections"][0]["rows"]
    assert rows == [{"id": b["payload"], "title": b["title"]} for b in buttons]


@pytest.mark.parametrize("titles", [
    [f"Opción {n}" for n in range(1, 12)],
    ["Sí", "Un título demasiado largo para una fila"],
])
def test_meta_more_than_ten_or_long_titles_are_numbered_text(redis_client, redis_url,
                                                             fake_waha, fake_meta, titles):
    send_buttons(redis_url, fake_waha, fake_meta, "whatsapp", buttons_for(*titles))
    (body,) = fake_meta.messages()
    assert body["type"] == "text"
    expected = "\n".join(["¿Qué desea hacer?"] + [f"{n}. {t}" for n, t in
                                                   enumerate(titles, start=1)])
    assert body["text"]["body"] == expected


def test_images_and_documents_go_through_the_media_messages(redis_client, redis_url, fake_meta):
    image, pdf = "https://example.com/a.png", "https://example.com/guia.pdf"

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route("5491100000009", Route(channel="whatsapp", chat_id="5491100000009"))
            await rig.outputs["whatsapp"].send_image_url("5491100000009", image)
            await rig.outputs["whatsapp"].send_attachment("5491100000009",
                                                          {"url": pdf, "filename": "guia.pdf"})

    run(scenario())
    meta_image, meta_document = fake_meta.messages()
    assert meta_image["type"] == "image" and meta_image["image"] == {"link": image}
    assert meta_document["document"] == {"link": pdf, "filename": "guia.pdf"}


# --- edits and deletions (issue 12) ------------------------------------------------------

def edit_of(original: str, new: Dict[str, Any], **kwargs: Any) -> Dict[str, Any]:
    """Meta's edit webhook (webhooks/reference/messages/edit; pywa edited_message.json)."""
    return meta_message("edit", {"original_message_id": original, "message": new}, **kwargs)


def test_an_edited_text_or_caption_is_an_edit_of_its_original(channel_env):
    text = one(edit_of("wamid.ORIGINAL", {"type": "text", "text": {"body": " la caja 3 "}}))
    assert text.kind == "edit" and text.original_id == "wamid.ORIGINAL"
    assert text.text == "la caja 3" and text.opt_word is None
    assert text.conversation_id == USER and text.message_id.startswith("wamid.")
    caption = one(edit_of("wamid.PHOTO", {"context": {"id": "wamid.CTX"}, "type": "image",
                                         "image": {"caption": "pantalla azul",
                                                   "mime_type": "image/jpeg",
                                                   "sha256": "4654+8g=", "id": "65463453"}}))
    assert caption.kind == "edit" and caption.text == "pantalla azul"
    assert caption.media is None  # the file was the original's, already taken


def test_a_revoke_is_a_deletion_of_its_original(channel_env):
    revoke = one(meta_message("revoke", {"original_message_id": "wamid.ORIGINAL"}))
    assert revoke.kind == "revoke" and revoke.original_id == "wamid.ORIGINAL"
    assert revoke.text == "" and revoke.kind != "unsupported"


@pytest.mark.parametrize("change", [
    meta_message("edit", {"message": {"type": "text", "text": {"body": "x"}}}),
    meta_message("revoke", {}),
    meta_message("revoke", {"original_message_id": "wamid." + "A" * 200}),
    meta_message("revoke", None),
])
def test_an_edit_or_revoke_without_a_usable_original_is_skipped(channel_env, change):
    assert skipped_only(change) in (["malformed message"], ["bad id"])
