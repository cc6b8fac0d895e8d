"""Conversations through the real Rasa server, action server, Redis and ledger."""
import re

import requests

from tests.stack import api_headers

REFERENCE = re.compile(r"HD-[A-Z0-9]{6}")


def joined(messages):
    return "\n".join(messages)


def reference_in(texts):
    match = REFERENCE.search(joined(texts))
    assert match, f"no ticket reference in {texts}"
    return match.group(0)


def test_complete_first_message_goes_straight_to_confirmation(stack, sender, bot_ledger):
    texts = stack.texts(sender, "se cayó el POS en la tienda 42, no podemos vender")
    readback = joined(texts)
    assert "Tienda 42 (Avenida)" in readback
    assert "POS / caja" in readback
    assert "Prioridad: urgente" in readback
    assert "¿Los datos son correctos?" in readback
    assert "¿En qué tienda" not in readback  # nothing asked that the message already said

    texts = stack.texts(sender, "sí")
    reference = reference_in(texts)
    assert "prioridad urgente" in joined(texts)

    record = bot_ledger.find(reference)
    assert record is not None
    assert record.state == "pending_delivery"
    assert record.priority == "urgent"
    assert record.system == "POS"
    assert record.store == "Tienda 42 (Avenida)"
    assert record.department == "it"
    assert record.classification == "Problem"
    assert record.description == "se cayó el POS en la tienda 42, no podemos vender"
    assert record.conversation_id == sender
    assert record.correlation_id


def test_generic_words_are_never_echoed_back(stack, sender):
    # "el sistema" with "no podemos vender" is the POS (config/dialogue.yml)
    readback = joined(stack.texts(sender, "se cayó el sistema en la tienda 1, no podemos vender"))
    assert "No reconozco" not in readback
    assert "POS / caja" in readback and "¿Los datos son correctos?" in readback
    stack.texts(sender, "cancelar")
    # "la tienda" names no store: asked plainly
    texts = joined(stack.texts(sender, "el sistema no anda en la tienda"))
    assert "No encuentro la tienda" not in texts and "No reconozco" not in texts
    assert "¿En qué tienda ocurre?" in texts


def test_missing_details_are_asked_one_at_a_time(stack, sender, bot_ledger):
    texts = stack.texts(sender, "tengo un problema")
    assert "Para crear el ticket necesito la siguiente información" in texts[0]
    assert texts[-1].startswith("¿En qué tienda ocurre?")

    texts = stack.texts(sender, "tienda 15")
    assert texts == ["¿Qué sistema o equipo está afectado?"]

    texts = stack.texts(sender, "el posnet")
    assert texts == ["Describa brevemente el problema: qué ocurre y, si aparece, el mensaje de error."]

    texts = stack.texts(sender, "no pasa las tarjetas de débito, dice error de comunicación")
    readback = joined(texts)
    assert "Tienda 15 (Puerto)" in readback
    assert "datáfono / terminal de pago" in readback
    assert "Prioridad: normal" in readback

    reference = reference_in(stack.texts(sender, "si"))
    record = bot_ledger.find(reference)
    assert record.system == "terminal de pago"
    assert record.department == "payments"
    assert record.description == "no pasa las tarjetas de débito, dice error de comunicación"


def test_unknown_store_twice_offers_to_go_on_without_it(stack, sender, bot_ledger):
    stack.texts(sender, "la impresora fiscal no imprime nada")
    texts = stack.texts(sender, "tienda 99")
    assert "No encuentro la tienda «tienda 99»" in texts[0]
    assert texts[-1].startswith("¿En qué tienda ocurre?")

    messages = stack.say(sender, "la 77")
    assert "No encuentro la tienda" in messages[0]["text"]
    offer = messages[-1]
    assert "continuar sin indicarla" in offer["text"]
    payloads = [b["payload"] for b in offer["buttons"]]
    assert "/request_human" in payloads

    texts = stack.texts(sender, payloads[0])
    assert "Tienda: sin especificar" in joined(texts)
    reference = reference_in(stack.texts(sender, "confirmo"))
    assert bot_ledger.find(reference).store == "sin especificar"


def test_correction_of_one_field_then_confirm_again(stack, sender, bot_ledger):
    stack.texts(sender, "el lector de códigos no lee nada en la tienda 42")
    texts = stack.texts(sender, "no, es la tienda 43")
    assert "Tienda 43 (Catedral)" in joined(texts)
    assert "¿Los datos son correctos?" in joined(texts)

    messages = stack.say(sender, "no")
    assert "¿Qué dato desea corregir?" in messages[-1]["text"]
    system_button = next(b for b in messages[-1]["buttons"] if b["title"] == "Sistema")

    texts = stack.texts(sender, system_button["payload"])
    assert texts == ["¿Qué sistema o equipo está afectado?"]
    texts = stack.texts(sender, "la balanza")
    assert "Sistema: balanza / báscula" in joined(texts)
    assert "Tienda 43 (Catedral)" in joined(texts)

    reference = reference_in(stack.texts(sender, "sí"))
    record = bot_ledger.find(reference)
    assert record.store == "Tienda 43 (Catedral)"
    assert record.system == "balanza"
    assert record.department == "maintenance"


def test_priority_can_be_switched_at_confirmation(stack, sender, bot_ledger):
    stack.texts(sender, "no anda el aire acondicionado en la tienda 5, hace mucho calor")
    stack.texts(sender, "no")
    texts = stack.texts(sender, '/inform{"correct_field":"priority"}')
    assert "Prioridad: urgente" in joined(texts)
    reference = reference_in(stack.texts(sender, "sí"))
    assert bot_ledger.find(reference).priority == "urgent"


def test_cancel_ends_the_form_and_records_nothing(stack, sender, bot_ledger):
    stack.texts(sender, "la caja 2 no enciende")
    texts = stack.texts(sender, "cancelar")
    assert "he cancelado el registro del ticket" in joined(texts)
    tracker = stack.tracker(sender)
    assert tracker["active_loop"] in ({}, None) or not tracker["active_loop"].get("name")
    assert tracker["slots"]["system"] is None
    assert bot_ledger.recent_for(sender, 5) == []
    # the next incident starts from scratch
    texts = stack.texts(sender, "se cortó internet en la tienda 8")
    assert "¿En qué tienda" not in joined(texts)


def test_interruptions_are_answered_and_the_form_resumes(stack, sender):
    texts = stack.texts(sender, "tengo un problema con la caja")
    assert texts[-1].startswith("¿En qué tienda ocurre?")

    texts = stack.texts(sender, "hola")
    assert texts[0].startswith("Hola, soy el asistente")
    assert texts[-1].startswith("¿En qué tienda ocurre?")

    texts = stack.texts(sender, "cómo hago el cierre de caja?")
    assert texts[0].startswith("Esto indica el artículo «")  # answered from the knowledge base
    assert texts[-1].startswith("¿En qué tienda ocurre?")

    texts = stack.texts(sender, "cómo va el ticket HD-AAAAAA?")
    assert "No encuentro el ticket «HD-AAAAAA»" in texts[0]
    assert texts[-1].startswith("¿En qué tienda ocurre?")

    texts = stack.texts(sender, "tienda 42")
    assert texts[-1].startswith("Describa brevemente el problema")


def test_description_question_does_not_store_commands(stack, sender, bot_ledger):
    stack.texts(sender, "tengo un problema con la caja")
    stack.texts(sender, "tienda 42")
    texts = stack.texts(sender, "ayuda")
    assert texts[0].startswith("Puedo ayudarle con")
    assert texts[-1].startswith("Describa brevemente el problema")
    assert stack.tracker(sender)["slots"]["description"] is None


def test_status_by_reference_and_recent_tickets(stack, sender, bot_ledger):
    stack.texts(sender, "se rompió la balanza de la tienda 12, no pesa bien")
    reference = reference_in(stack.texts(sender, "sí"))

    texts = stack.texts(sender, f"cómo va el ticket {reference}?")
    assert f"El ticket {reference}" in texts[0]
    assert "pendiente de envío" in texts[0]

    texts = stack.texts(sender, "estado de mis tickets")
    assert "Sus tickets más recientes" in texts[0]
    assert reference in texts[0]

    texts = stack.texts(f"{sender}-other", "estado de mis tickets")
    assert "No encuentro tickets registrados desde este chat" in texts[0]


def test_request_human_is_recorded(stack, sender, bot_ledger):
    stack.texts(sender, "la impresora fiscal tira error en la tienda 9")
    texts = stack.texts(sender, "quiero hablar con una persona")
    # the session stack has Chatwoot: the conversation goes to its agents and the bot pauses
    assert "Le paso con una persona del equipo de soporte" in joined(texts)
    requests_ = bot_ledger.handoff_requests(sender)
    assert len(requests_) == 1
    assert requests_[0]["reason"] == "during_ticket"
    assert "impresora fiscal" in requests_[0]["text"]
    tracker = stack.tracker(sender)
    assert not (tracker.get("active_loop") or {}).get("name")


def test_opt_out_silences_the_bot_until_opt_in(stack, sender, redis_client):
    texts = stack.texts(sender, "BAJA")
    assert "Ha sido dado de baja" in joined(texts)
    assert redis_client.sismember("helpdesk:opted_out", sender)

    assert stack.say(sender, "hola") == []
    assert stack.say(sender, "se cayó el sistema en la tienda 42") == []

    texts = stack.texts(sender, "ALTA")
    assert "Ha vuelto a activar los mensajes" in joined(texts)
    assert not redis_client.sismember("helpdesk:opted_out", sender)
    assert stack.texts(sender, "hola")[0].startswith("Hola, soy el asistente")


def test_small_talk_paths(stack, sender):
    assert stack.texts(sender, "eres un robot?")[0].startswith("Soy el asistente virtual")
    assert stack.texts(sender, "gracias!")[0].startswith("De nada")
    assert stack.texts(sender, "chau, hasta mañana")[0].startswith("Hasta luego")
    help_messages = stack.say(sender, "menú")
    assert help_messages[0]["text"].startswith("Puedo ayudarle con")
    assert len(help_messages[0]["buttons"]) == 3
    assert stack.texts(sender, "jajaja qué buena la foto del asado")[0].startswith("Soy el asistente de soporte")


def test_double_confirmation_records_one_ticket(stack, sender, bot_ledger):
    stack.texts(sender, "no funciona el wifi en la tienda 30, no podemos cobrar con tarjeta")
    reference_in(stack.texts(sender, "sí"))
    stack.texts(sender, "sí")
    assert len(bot_ledger.recent_for(sender, 10)) == 1


def test_reporter_from_channel_metadata(stack, sender, bot_ledger):
    metadata = {"sender_name": "Ana Pérez", "sender_phone": "5491100001111"}
    stack.say(sender, "la computadora de la tienda 2 no prende", metadata=metadata)
    texts = [m["text"] for m in stack.say(sender, "sí", metadata=metadata)]
    record = bot_ledger.find(reference_in(texts))
    assert record.reporter_name == "Ana Pérez"
    assert record.reporter_phone == "5491100001111"


def test_session_expires_after_a_day_without_carrying_the_form(stack, sender):
    stack.texts(sender, "tengo un problema con la caja")
    tracker = stack.tracker(sender)
    assert tracker["active_loop"]["name"] == "ticket_form"
    # move the whole conversation 25 hours into the past
    events = tracker["events"]
    for event in events:
        event["timestamp"] -= 25 * 3600
    answer = requests.put(
        f"{stack.rasa_url}/conversations/{sender}/tracker/events",
        headers=api_headers(),
        json=events,
        timeout=30,
    )
    assert answer.ok, answer.text
    texts = stack.texts(sender, "hola")
    assert texts == [
        "Hola, soy el asistente de soporte de tiendas. Puedo registrar una incidencia, "
        "consultar el estado de un ticket o pasarle con una persona. ¿En qué puedo ayudarle?"
    ]
    tracker = stack.tracker(sender)
    assert not (tracker.get("active_loop") or {}).get("name")
    assert tracker["slots"]["system"] is None
