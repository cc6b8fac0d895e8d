"""The WAHA and Meta channels through the real Rasa server, action server and Redis, with
fake gateways on loopback that record what the bot sends."""
import concurrent.futures
import json
import random
import time

import pytest
import redis
import requests

from helpdesk import redis_keys
from helpdesk.metrics import TURN_SECONDS

from tests.fakes.gateways import FakeObjectStore
from tests.stack import META_SECRET, META_VERIFY, WAHA_HMAC, api_headers
from tests.integration.whatsapp_payloads import (
    BOT_LID,
    BOT_NUMBER,
    meta_delivery,
    meta_text,
    post_meta,
    post_waha,
    texts_to,
    waha_message,
)

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
def number() -> str:
    return "54911" + "".join(random.choice("0123456789") for _ in range(8))


@pytest.fixture(autouse=True)
def _fresh_fakes(fake_waha, fake_meta):
    fake_waha.clear()
    fake_meta.clear()
    yield
    fake_waha.clear()
    fake_meta.clear()


def waha_say(stack, number, text, **kwargs):
    answer = post_waha(stack.rasa_url, waha_message(number, text, **kwargs), WAHA_HMAC)
    assert answer.status_code == 200, answer.text
    return answer


def wait_texts(fake_waha, chat_id, count, timeout=30):
    fake_waha.wait_for(lambda seen: len(texts_to(seen, chat_id)) >= count, timeout)
    return texts_to(fake_waha.requests, chat_id)


def settle(seconds=1.5):
    """Time for anything (wrongly) still on its way to arrive."""
    time.sleep(seconds)


# --- signatures and bad input --------------------------------------------------------------

def test_waha_signature_good_bad_missing(stack, fake_waha, number):
    event = waha_message(number, "hola")
    assert post_waha(stack.rasa_url, event, WAHA_HMAC, signature="0" * 128).status_code == 401
    body = json.dumps(event).encode()
    missing = requests.post(f"{stack.rasa_url}/webhooks/waha/webhook", data=body,
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert missing.status_code == 401
    settle()
    assert texts_to(fake_waha.requests, f"{number}@c.us") == []  # nothing was processed

    assert post_waha(stack.rasa_url, event, WAHA_HMAC).status_code == 200
    assert "asistente de soporte" in wait_texts(fake_waha, f"{number}@c.us", 1)[0]


def test_meta_verification_handshake(stack):
    url = f"{stack.rasa_url}/webhooks/whatsapp/webhook"
    ok = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY,
                                   "hub.challenge": "1158201444"}, timeout=10)
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["Content-Type"].startswith("text/plain")
    wrong = requests.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                      "hub.challenge": "1"}, timeout=10)
    assert wrong.status_code == 403
    mode = requests.get(url, params={"hub.mode": "unsubscribe", "hub.verify_token": META_VERIFY,
                                     "hub.challenge": "1"}, timeout=10)
    assert mode.status_code == 403


def test_meta_signature_good_bad_missing(stack, fake_meta, number):
    delivery = meta_delivery([meta_text(number, "¡hola! ¿qué tal? 👋")])
    assert post_meta(stack.rasa_url, delivery, META_SECRET, signature="sha256=" + "0" * 64
                     ).status_code == 401
    assert post_meta(stack.rasa_url, delivery, None).status_code == 401
    settle()
    assert fake_meta.messages() == []
    assert post_meta(stack.rasa_url, delivery, META_SECRET).status_code == 200
    fake_meta.wait_for(lambda seen: any(r["body"] and r["body"].get("to") == number
                                        for r in seen))


def test_malformed_oversized_and_unknown_events(stack, fake_waha):
    bad = post_waha(stack.rasa_url, None, WAHA_HMAC, raw=b"{not json")
    assert bad.status_code == 400
    big = post_waha(stack.rasa_url, None, WAHA_HMAC, raw=b"{" + b" " * 300_000 + b"}")
    assert big.status_code == 413
    unknown = post_waha(stack.rasa_url, {"event": "presence.update", "session": "default",
                                         "payload": {}}, WAHA_HMAC)
    assert unknown.status_code == 200 and unknown.json()["ignored"] == 1
    array = post_waha(stack.rasa_url, [1, 2], WAHA_HMAC)
    assert array.status_code == 400


def test_meta_batch_with_statuses_and_a_broken_message(stack, fake_meta, number):
    others = [number[:-1] + str((int(number[-1]) + i) % 10) for i in (1, 2)]
    senders = [number] + others
    messages = [meta_text(s, "hola") for s in senders]
    broken = {"from": number, "type": "text"}  # no id
    statuses = [{"id": "wamid.X", "status": "delivered", "timestamp": "1", "recipient_id": number},
                {"id": "wamid.Y", "status": "read", "timestamp": "1", "recipient_id": number}]
    delivery = meta_delivery(messages[:2] + [broken] + messages[2:], statuses)
    answer = post_meta(stack.rasa_url, delivery, META_SECRET)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 3
    fake_meta.wait_for(lambda seen: {r["body"].get("to") for r in seen
                                     if r["body"] and r["body"].get("type")} >= set(senders))


# --- dedupe, order, groups -------------------------------------------------------------------

def test_three_concurrent_deliveries_of_one_message_give_one_turn(stack, fake_waha, number):
    client = redis.Redis.from_url(stack.redis_url)
    received_before = int(client.hget(redis_keys.counters(), "received_waha") or 0)
    turns_before = turns_run(client)
    event = waha_message(number, "hola")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: post_waha(stack.rasa_url, event, WAHA_HMAC), range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sum(a.json().get("accepted", 0) for a in answers) == 1
    assert sum(a.json().get("duplicate", 0) for a in answers) == 2
    wait_texts(fake_waha, f"{number}@c.us", 1)
    settle()
    assert len(texts_to(fake_waha.requests, f"{number}@c.us")) == 1
    # what /metrics reads, written by the webhook and the real Rasa server's consumer: one
    # message received (not the two duplicates), its turn timed
    assert int(client.hget(redis_keys.counters(), "received_waha")) == received_before + 1
    assert turns_run(client) >= turns_before + 1
    client.close()


def turns_run(client) -> float:
    return sum(s.value for s in TURN_SECONDS.read(client).samples
               if s.name == "turn_seconds_count")


def test_group_chatter_ignored_incident_answered_with_a_mention(stack, fake_waha, number):
    group = "120363" + number
    waha_say(stack, number, "buen día a todos, ¿alguien vio el partido anoche?", group=group)
    waha_say(stack, number, "jajaja qué bueno", group=group)
    settle(2)
    assert texts_to(fake_waha.requests, f"{group}@g.us") == []

    waha_say(stack, number, "se cayó el POS en la tienda 42, no podemos vender", group=group)
    texts = wait_texts(fake_waha, f"{group}@g.us", 1)
    assert all(t.startswith(f"@{number} ") for t in texts)
    sent = [r for r in fake_waha.calls("/api/sendText") if r["body"]["chatId"] == f"{group}@g.us"]
    assert sent[0]["body"]["mentions"] == [f"{number}@c.us"]
    assert "Tienda 42" in "\n".join(texts)

    # now in a conversation: a short answer from the same participant is taken
    fake_waha.clear()
    waha_say(stack, number, "sí", group=group)
    texts = wait_texts(fake_waha, f"{group}@g.us", 1)
    assert "HD-" in "\n".join(texts)


def test_a_mention_of_the_bot_is_answered_in_a_group(stack, fake_waha, number):
    group = "120363" + number
    waha_say(stack, number, f"@{BOT_NUMBER} hola", group=group)
    texts = wait_texts(fake_waha, f"{group}@g.us", 1)
    assert "asistente de soporte" in texts[0]


def test_a_quote_reply_to_the_bot_is_answered_in_a_group(stack, fake_waha, number):
    group = "120363" + number
    waha_say(stack, number, "hola", group=group,
             replyTo={"id": "3EB0C0FFEE", "participant": BOT_LID, "body": "¿En qué tienda?",
                      "hasMedia": False})
    texts = wait_texts(fake_waha, f"{group}@g.us", 1)
    assert "asistente de soporte" in texts[0]


def test_a_group_report_is_quoted_gets_its_earlier_lines_and_the_ticket_reaction(
        stack, fake_waha, number):
    group = "120363" + number
    chat = f"{group}@g.us"
    report_id = f"false_{chat}_3A0F{number}_{number}@c.us"
    waha_say(stack, number, "¿alguien vio el partido anoche?", group=group)
    waha_say(stack, number, "otra vez la caja dos", group=group)
    settle(2)
    assert texts_to(fake_waha.requests, chat) == []  # read, not answered

    waha_say(stack, number, "se cayó el POS en la tienda 42, no podemos vender", group=group,
             message_id=report_id)
    wait_texts(fake_waha, chat, 1)
    sent = [r["body"] for r in fake_waha.calls("/api/sendText") if r["body"]["chatId"] == chat]
    assert sent[0]["reply_to"] == report_id  # the group sees which report it answers
    assert all("reply_to" not in body for body in sent[1:])
    read_back = "\n".join(body["text"] for body in sent)
    assert "otra vez la caja dos" in read_back and "partido" not in read_back

    fake_waha.clear()
    waha_say(stack, number, "sí", group=group)
    assert "HD-" in "\n".join(wait_texts(fake_waha, chat, 1))
    fake_waha.wait_for(lambda seen: any(r["path"] == "/api/reaction" for r in seen), 20)
    assert fake_waha.reactions() == [(report_id, "✅")]


def test_three_reports_of_one_outage_in_a_group_make_one_ticket_unless_it_is_another(
        stack, fake_waha, bot_ledger, number):
    group = "120363" + number
    chat = f"{group}@g.us"
    second, third = "54922" + number[5:], "54933" + number[5:]
    outage = "se cayó el POS en la tienda 42, no podemos vender"

    def said_to(person):
        return "\n".join(t for t in texts_to(fake_waha.requests, chat) if t.startswith(f"@{person}"))

    def wait_for(person, words, timeout=30):
        fake_waha.wait_for(lambda seen: words in "\n".join(
            t for t in texts_to(seen, chat) if t.startswith(f"@{person}")), timeout)

    waha_say(stack, number, outage, group=group)
    wait_for(number, "Voy a crear este ticket")
    waha_say(stack, number, "sí", group=group)
    wait_for(number, "He registrado el ticket HD-")
    (first,) = bot_ledger.recent_for(f"g{group}-{number}", 5)

    waha_say(stack, second, outage, group=group)
    wait_for(second, "¿Es el mismo problema?")
    assert first.reference in said_to(second) and "Voy a crear" not in said_to(second)
    waha_say(stack, second, "sí", group=group)
    wait_for(second, "Agregué su reporte al ticket")
    assert first.reference in said_to(second).split("Agregué su reporte al ticket", 1)[1]

    waha_say(stack, third, outage, group=group)
    wait_for(third, "¿Es el mismo problema?")
    waha_say(stack, third, "2", group=group)  # «No, es otro», by its number
    wait_for(third, "Voy a crear este ticket")
    waha_say(stack, third, "sí", group=group)
    wait_for(third, "He registrado el ticket HD-")

    assert bot_ledger.recent_for(f"g{group}-{second}", 5) == []  # joined, no ticket of its own
    assert len(bot_ledger.recent_for(f"g{group}-{third}", 5)) == 1  # another problem
    assert "Otro reporte del mismo problema" in bot_ledger.get(first.id).description


def test_more_about_the_ticket_just_made_goes_to_that_ticket(stack, fake_waha, bot_ledger,
                                                            number):
    chat = f"{number}@c.us"
    waha_say(stack, number, "se cayó el POS en la tienda 42, no podemos vender")
    fake_waha.wait_for(lambda seen: "Voy a crear este ticket" in "\n".join(texts_to(seen, chat)))
    waha_say(stack, number, "sí")
    fake_waha.wait_for(lambda seen: "He registrado el ticket" in "\n".join(texts_to(seen, chat)))
    (ticket,) = bot_ledger.recent_for(number, 5)

    fake_waha.clear()
    more = "ah y también la balanza de carnicería hace lo mismo"
    waha_say(stack, number, more)
    (question,) = wait_texts(fake_waha, chat, 1)
    assert question.startswith(f"¿Es sobre el ticket {ticket.reference} que acabamos de "
                               "registrar, o es un problema nuevo?")  # not "no le he entendido"
    assert f"1. Agregar al ticket {ticket.reference}" in question
    waha_say(stack, number, "1")
    fake_waha.wait_for(lambda seen: "Agregué su reporte al ticket" in "\n".join(
        texts_to(seen, chat)))
    assert len(bot_ledger.recent_for(number, 5)) == 1
    assert bot_ledger.get(ticket.id).description.endswith(f"): {more}")


def test_two_participants_of_one_group_fill_two_forms(stack, fake_waha, number):
    group = "120363" + number
    other = "54922" + number[5:]  # another participant, never the same number
    waha_say(stack, number, "tengo un problema con la impresora fiscal", group=group)
    waha_say(stack, other, "se cayó el POS en la tienda 15, no podemos vender", group=group)
    fake_waha.wait_for(lambda seen: any(t.startswith(f"@{number}") for t in
                                        texts_to(seen, f"{group}@g.us"))
                       and any(t.startswith(f"@{other}") for t in texts_to(seen, f"{group}@g.us")))
    waha_say(stack, number, "tienda 42", group=group)
    fake_waha.wait_for(lambda seen: sum(t.startswith(f"@{number}")
                                        for t in texts_to(seen, f"{group}@g.us")) >= 3)
    to_first = [t for t in texts_to(fake_waha.requests, f"{group}@g.us") if t.startswith(f"@{number}")]
    to_other = [t for t in texts_to(fake_waha.requests, f"{group}@g.us") if t.startswith(f"@{other}")]
    assert "Tienda 15" in "\n".join(to_other) and "Tienda 15" not in "\n".join(to_first)
    assert any("Describa" in t for t in to_first)


def test_messages_of_one_conversation_keep_their_order(stack, fake_waha, number):
    for text in ("tengo un problema", "tienda 15", "el posnet"):
        waha_say(stack, number, text)
    texts = wait_texts(fake_waha, f"{number}@c.us", 4)
    assert texts[1].startswith("¿En qué tienda ocurre?")
    assert texts[2].startswith("¿Qué sistema o equipo está afectado?\n1. Caja / POS")
    assert texts[3].startswith("Describa brevemente el problema")


# --- message types ---------------------------------------------------------------------------

def test_an_image_ends_as_a_ticket_attachment(stack, fake_waha, bot_ledger, number):
    path = f"/api/files/default/{number}.jpg"
    fake_waha.files[path] = (b"\xff\xd8\xff fake jpeg " + number.encode(), "image/jpeg")
    media = {"url": f"{fake_waha.url}{path}", "mimetype": "image/jpeg", "filename": None,
             "error": None}
    waha_say(stack, number, "no imprime la fiscal de la tienda 42, sale este error", media=media)
    texts = wait_texts(fake_waha, f"{number}@c.us", 1)
    assert "¿Los datos son correctos?" in "\n".join(texts)
    waha_say(stack, number, "sí")
    texts = wait_texts(fake_waha, f"{number}@c.us", len(texts) + 1)
    reference = next(w for t in texts for w in t.replace(".", " ").split() if w.startswith("HD-"))
    record = bot_ledger.find(reference)
    attachments = json.loads(record.attachments) if isinstance(record.attachments, str) \
        else record.attachments
    assert len(attachments) == 1 and attachments[0].endswith(".jpg")
    with open(attachments[0], "rb") as stored:
        assert stored.read() == fake_waha.files[path][0]

    # another photo right after: it goes to the same ticket, no new form
    second = f"/api/files/default/{number}-2.jpg"
    fake_waha.files[second] = (b"\xff\xd8\xff second " + number.encode(), "image/jpeg")
    before = len(texts_to(fake_waha.requests, f"{number}@c.us"))
    waha_say(stack, number, "", media={"url": f"{fake_waha.url}{second}", "mimetype": "image/jpeg"})
    texts = wait_texts(fake_waha, f"{number}@c.us", before + 1)
    assert texts[before] == f"Recibí su archivo y lo agregué al ticket {reference} que acaba de registrar."
    settle()
    assert len(texts_to(fake_waha.requests, f"{number}@c.us")) == before + 1  # no form started
    record = bot_ledger.find(reference)
    attachments = json.loads(record.attachments) if isinstance(record.attachments, str) \
        else record.attachments
    assert len(attachments) == 2


def test_an_image_without_text_starts_a_ticket(stack, fake_waha, number):
    path = f"/api/files/default/{number}-b.png"
    fake_waha.files[path] = (b"\x89PNG\r\n\x1a\n fake", "image/png")
    waha_say(stack, number, "", media={"url": f"{fake_waha.url}{path}", "mimetype": "image/png"})
    texts = wait_texts(fake_waha, f"{number}@c.us", 2)
    assert texts[0] == "Recibí su archivo; lo adjuntaré al ticket."
    assert "Para crear el ticket necesito" in "\n".join(texts)


def test_an_expired_media_url_asks_again_and_the_caption_counts(stack, fake_waha, number):
    media = {"url": f"{fake_waha.url}/api/files/default/gone.jpg", "mimetype": "image/jpeg"}
    waha_say(stack, number, "hola", media=media)
    texts = wait_texts(fake_waha, f"{number}@c.us", 2)
    assert texts[0] == "No pude descargar el archivo que envió. ¿Podría enviarlo nuevamente?"
    assert "asistente de soporte" in texts[1]  # the caption "hola" was answered

    fake_waha.clear()
    waha_say(stack, number, "", media=None, hasMedia=True)  # WAHA did not download it
    texts = wait_texts(fake_waha, f"{number}@c.us", 1)
    assert texts == ["No pude descargar el archivo que envió. ¿Podría enviarlo nuevamente?"]


def test_a_media_url_on_another_server_is_not_fetched(stack, fake_waha, number):
    """A forged payload's media.url pointing at another loopback server (an internal
    address): nothing reaches it, so never the WAHA key; the user is asked for the file
    again and the caption is answered."""
    with FakeObjectStore(host="127.0.0.2") as internal:
        internal.files["/admin/export.jpg"] = (b"\xff\xd8\xff internal", "image/jpeg")
        media = {"url": f"{internal.url}/admin/export.jpg", "mimetype": "image/jpeg"}
        waha_say(stack, number, "hola", media=media)
        texts = wait_texts(fake_waha, f"{number}@c.us", 2)
        assert texts[0] == "No pude descargar el archivo que envió. ¿Podría enviarlo nuevamente?"
        assert "asistente de soporte" in texts[1]
        assert internal.requests == []


def test_a_voice_note_without_transcription_asks_to_write(stack, fake_meta, number):
    fake_meta.files["/download/778899"] = (b"OggS fake opus", "audio/ogg")
    voice = {"from": number, "id": f"wamid.V{number}", "timestamp": str(int(time.time())),
             "type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "x",
                                        "id": "778899", "voice": True}}
    assert post_meta(stack.rasa_url, meta_delivery([voice]), META_SECRET).status_code == 200
    fake_meta.wait_for(lambda seen: any(
        r["body"] and r["body"].get("to") == number and "nota de voz" in
        r["body"].get("text", {}).get("body", "") for r in seen))
    # both steps of Meta's media fetch were made with the token
    assert fake_meta.calls("/v21.0/778899") and fake_meta.calls("/download/778899")


def test_unsupported_type_gets_a_polite_answer(stack, fake_meta, number):
    sticker_free = {"from": number, "id": f"wamid.U{number}", "timestamp": str(int(time.time())),
                    "type": "unsupported", "errors": [{"code": 131051}]}
    assert post_meta(stack.rasa_url, meta_delivery([sticker_free]), META_SECRET).status_code == 200
    fake_meta.wait_for(lambda seen: any(
        r["body"] and r["body"].get("to") == number
        and "solo puedo leer" in r["body"].get("text", {}).get("body", "") for r in seen))


def test_button_replies_map_to_payloads(stack, fake_meta, fake_waha, number):
    # Meta: the help menu comes as reply buttons; tapping one sends its id
    assert post_meta(stack.rasa_url, meta_delivery([meta_text(number, "ayuda")]),
                     META_SECRET).status_code == 200
    fake_meta.wait_for(lambda seen: any(r["body"] and r["body"].get("type") == "interactive"
                                        for r in seen))
    interactive = next(r["body"] for r in fake_meta.requests
                       if r["body"] and r["body"].get("type") == "interactive")
    buttons = interactive["interactive"]["action"]["buttons"]
    assert [b["reply"]["id"] for b in buttons] == ["/report_incident", "/ask_ticket_status",
                                                   "/request_human"]
    tap = {"from": number, "id": f"wamid.B{number}", "timestamp": str(int(time.time())), "type": "interactive",
           "interactive": {"type": "button_reply",
                           "button_reply": {"id": "/report_incident", "title": "Reportar incidencia"}}}
    fake_meta.clear()
    assert post_meta(stack.rasa_url, meta_delivery([tap]), META_SECRET).status_code == 200
    fake_meta.wait_for(lambda seen: any("Para crear el ticket" in (r["body"] or {}).get(
        "text", {}).get("body", "") for r in seen))

    # WAHA: numbered text; "2" is the second button's payload (another user: one number is
    # one conversation whatever the gateway)
    other = "54922" + number[5:]
    waha_say(stack, other, "ayuda")
    menu = wait_texts(fake_waha, f"{other}@c.us", 1)[0]
    assert "\n1. Reportar incidencia" in menu and "2. Estado de un ticket" in menu
    waha_say(stack, other, "2")
    texts = wait_texts(fake_waha, f"{other}@c.us", 2)
    assert "ticket" in texts[1].lower() and "tienda" not in texts[1].lower()


# --- outbound ------------------------------------------------------------------------------

def test_gateway_down_while_replying_then_back(stack, fake_waha, number):
    fake_waha.down = True
    for text in ("tengo un problema", "tienda 15", "el posnet"):
        waha_say(stack, number, text)
    # the replies wait in the outbox while WAHA answers 503
    fake_waha.wait_for(lambda seen: sum(1 for r in seen if r.get("failed")) >= 3)
    settle(2)
    assert texts_to(fake_waha.requests, f"{number}@c.us") == []
    fake_waha.down = False
    texts = wait_texts(fake_waha, f"{number}@c.us", 4)
    assert texts[1].startswith("¿En qué tienda ocurre?")
    assert texts[2].startswith("¿Qué sistema o equipo está afectado?\n1. Caja / POS")
    assert texts[3].startswith("Describa brevemente el problema")
    settle()
    assert len(texts_to(fake_waha.requests, f"{number}@c.us")) == 4  # none twice


def test_trigger_intent_reaches_whatsapp_through_the_output_channel(stack, fake_waha, number):
    waha_say(stack, number, "hola")
    wait_texts(fake_waha, f"{number}@c.us", 1)
    answer = requests.post(
        f"{stack.rasa_url}/conversations/{number}/trigger_intent",
        params={"output_channel": "latest"}, headers=api_headers(),
        json={"name": "help"}, timeout=30,
    )
    assert answer.status_code == 200, answer.text
    texts = wait_texts(fake_waha, f"{number}@c.us", 2)
    # the WhatsApp variation of the help text: the options are the numbered list
    assert texts[1].startswith("Puedo ayudarle a reportar una incidencia")
    assert "\n1. Reportar incidencia" in texts[1]


def test_opt_out_before_rasa_and_silence_until_opt_in(stack, fake_waha, number):
    waha_say(stack, number, "BAJA")
    texts = wait_texts(fake_waha, f"{number}@c.us", 1)
    fake_waha.clear()
    answer = waha_say(stack, number, "hola")
    assert answer.json().get("opted_out") == 1
    settle()
    assert texts_to(fake_waha.requests, f"{number}@c.us") == []
    waha_say(stack, number, "ALTA")
    assert wait_texts(fake_waha, f"{number}@c.us", 1)
    assert texts


def test_rate_limit_answers_once_and_pauses(stack, fake_waha, number):
    outcomes = [waha_say(stack, number, f"mensaje {i}").json() for i in range(22)]
    assert sum(o.get("accepted", 0) for o in outcomes) == 20
    assert sum(o.get("rate_limited_first", 0) for o in outcomes) == 1
    assert sum(o.get("rate_limited", 0) for o in outcomes) == 1
    fake_waha.wait_for(lambda seen: any("muchos mensajes" in t
                                        for t in texts_to(seen, f"{number}@c.us")))


def test_the_ingress_serves_the_same_webhooks(stack, fake_waha, fake_meta, number):
    health = requests.get(f"{stack.ingress_url}/health", timeout=10).json()
    # the session stack has Chatwoot: its agent webhook is served there too
    assert health == {"status": "ok", "channels": ["waha", "whatsapp", "chatwoot"], "redis": True}
    # a bad signature is refused there too
    assert post_waha(stack.ingress_url, waha_message(number, "hola"), WAHA_HMAC,
                     signature="0" * 128).status_code == 401
    # the ingress records the message; the Rasa server runs the turn and replies
    answer = post_waha(stack.ingress_url, waha_message(number, "hola"), WAHA_HMAC)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    assert "asistente de soporte" in wait_texts(fake_waha, f"{number}@c.us", 1)[0]
    ok = requests.get(f"{stack.ingress_url}/webhooks/whatsapp/webhook",
                      params={"hub.mode": "subscribe", "hub.verify_token": META_VERIFY,
                              "hub.challenge": "42"}, timeout=10)
    assert ok.status_code == 200 and ok.text == "42"


def test_group_notices_only_to_people_the_bot_talks_to(stack, fake_waha, number):
    group = "120363" + number
    # a voice note in the middle of group chatter: no "please write" notice in the group
    waha_say(stack, number, "", group=group, media=None, hasMedia=True)
    settle(2)
    assert texts_to(fake_waha.requests, f"{group}@g.us") == []
    # once in a conversation with the bot, the same notice is given (with the mention)
    waha_say(stack, number, "se cayó el POS en la tienda 42, no podemos vender", group=group)
    before = len(wait_texts(fake_waha, f"{group}@g.us", 1))
    waha_say(stack, number, "", group=group, media=None, hasMedia=True)
    texts = wait_texts(fake_waha, f"{group}@g.us", before + 1)
    assert texts[before] == (f"@{number} No pude descargar el archivo que envió. "
                             "¿Podría enviarlo nuevamente?")


# --- Meta edits and deletions (issue 12) -----------------------------------------------------

def user_texts(stack, conversation):
    return [e.get("text") for e in stack.tracker(conversation)["events"] if e["event"] == "user"]


def wait_user_texts(stack, conversation, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = user_texts(stack, conversation)
        if len(texts) >= count:
            return texts
        time.sleep(0.2)
    raise AssertionError(f"Rasa got {user_texts(stack, conversation)}, not {count} messages")


def test_an_edit_before_the_answer_is_what_rasa_reads_and_a_revoke_is_not_answered(
        stack, fake_meta, number):
    """Meta answers slowly, so the turn of a first message holds the conversation while the
    next one waits in the inbound log; its edit arrives then: Rasa reads the edited text, and
    the edit itself is no turn. Later a revoke is no turn either, and never the
    "unsupported" notice."""
    def post(message):
        answer = post_meta(stack.rasa_url, meta_delivery([message]), META_SECRET)
        assert answer.status_code == 200 and answer.json().get("accepted") == 1, answer.text

    original = meta_text(number, "se cayó el sistema en la caja 2")
    edit = {"from": number, "id": f"wamid.E{number}", "timestamp": str(int(time.time())),
            "type": "edit", "edit": {"original_message_id": original["id"],
                                     "message": {"type": "text", "text": {
                                         "body": "se cayó el sistema en la caja 3"}}}}
    fake_meta.delay_seconds = 3  # every call to Meta (read receipt, reply) takes 3 s
    try:
        post(meta_text(number, "hola"))
        post(original)
        post(edit)  # accepted while the original still waits behind "hola"
    finally:
        fake_meta.delay_seconds = 0
    assert wait_user_texts(stack, number, 2) == ["hola", "se cayó el sistema en la caja 3"]

    revoke = {"from": number, "id": f"wamid.R{number}", "timestamp": str(int(time.time())),
              "type": "revoke", "revoke": {"original_message_id": original["id"]}}
    post(revoke)
    post(meta_text(number, "gracias"))  # behind the revoke in the conversation's order
    assert wait_user_texts(stack, number, 3)[2] == "gracias"
    settle()
    assert len(user_texts(stack, number)) == 3  # neither the edit nor the revoke was a turn
    said = [m.get("text", {}).get("body", "") for m in fake_meta.messages()
            if m.get("to") == number]
    assert said and not any("solo puedo leer" in text for text in said)
