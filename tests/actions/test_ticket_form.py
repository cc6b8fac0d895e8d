"""The ticket form (actions/ticket_form.py): validate_ticket_form and the ask actions, on the
trackers Rasa's form sends them, with the project's domain and config."""
import asyncio

import pytest

from actions.ticket_form import (
    ActionAskConfirmTicket,
    ActionAskDescription,
    ActionAskStore,
    ActionAskSystem,
    ValidateTicketForm,
)
from tests.actions.helpers import (
    FORM_SLOTS,
    Conversation,
    entity,
    form_turn,
    message,
    rendered,
    responses,
    run,
    slot_events,
)

INCIDENT = "se cayó el POS en la tienda 42, no podemos vender"
PRINTER = "la impresora fiscal de la tienda 42 no imprime tickets"
PRINTER_ENTITIES = [("store", "tienda 42"), ("system", "impresora fiscal")]


def start_form(conversation: Conversation, text=INCIDENT, entities=(("store", "tienda 42"), ("system", "POS")), **slots):
    """The first message reports an incident; action_extract_slots fills the entity slots."""
    if not slots:
        slots = {kind: value for kind, value in entities if kind in ("store", "system")}
    conversation.user(text, "report_incident", entities, **slots)
    return form_turn(conversation)


def at_question(conversation: Conversation, slot: str) -> Conversation:
    conversation.form_asks(slot)
    return conversation


def filled_form(conversation: Conversation, text=INCIDENT, entities=(("store", "tienda 42"), ("system", "POS"))):
    """Store, system and description collected; the form asks for the confirmation."""
    start_form(conversation, text, entities)
    return at_question(conversation, "confirm_ticket")


def slots_now(conversation: Conversation):
    return conversation.tracker().slots


# prefill at activation -------------------------------------------------------------------
def test_first_message_prefills_store_system_and_whole_description(conversation):
    events, dispatcher = start_form(conversation)

    set_ = slot_events(events)
    assert set_["store"] == "Tienda 42 (Avenida)"
    assert set_["system"] == "POS"
    assert set_["description"] == INCIDENT
    assert set_["store_attempts"] == 0
    assert set_["correcting"] is False
    # the form's list is unchanged, so Rasa picks the next question: only the confirmation is left
    assert "requested_slot" not in set_
    slots = slots_now(conversation)
    assert [name for name in FORM_SLOTS if slots[name] is None] == ["confirm_ticket"]
    assert dispatcher.messages == []


def test_short_first_message_is_not_the_description(conversation):
    events, _ = start_form(conversation, "falla la caja", entities=[("system", "POS", "caja")], system="POS")

    set_ = slot_events(events)
    assert set_["system"] == "POS"
    assert "description" not in set_
    assert slots_now(conversation)["description"] is None


@pytest.mark.parametrize(
    "text", ["problema con la caja", "tengo un problema con la caja", "hola, tengo una falla con la caja"]
)
def test_first_message_naming_only_the_system_is_not_the_description(conversation, text):
    events, _ = start_form(conversation, text, entities=[("system", "POS", "caja")], system="POS")

    set_ = slot_events(events)
    assert set_["system"] == "POS"
    assert "description" not in set_
    assert slots_now(conversation)["description"] is None


def test_a_symptom_of_two_words_is_the_description(conversation):
    events, _ = start_form(conversation, "la caja no enciende", entities=[("system", "POS", "caja")], system="POS")

    assert slot_events(events)["description"] == "la caja no enciende"


def group_report(conversation: Conversation, text: str, earlier, entities):
    slots = {e[0]: e[1] for e in entities if e[0] in ("store", "system")}
    conversation.user(text, "report_incident", entities,
                      metadata={"is_group": True, "group_context": earlier}, **slots)
    return form_turn(conversation)


def test_a_group_reporters_earlier_unanswered_lines_open_the_description(conversation):
    earlier = ["buen día", "¿alguien vio el partido anoche?", "mañana abrimos tarde en la 42",
               "desde las 8 que la caja dos se reinicia sola"]
    events, _ = group_report(conversation, INCIDENT, earlier,
                             (("store", "tienda 42"), ("system", "POS")))
    # a greeting, chatter, a store alone: left out; the read-back shows the rest
    assert slot_events(events)["description"] == (
        f"desde las 8 que la caja dos se reinicia sola. {INCIDENT}")


def test_earlier_lines_are_the_description_when_the_report_itself_says_little(conversation):
    events, _ = group_report(conversation, "falla la caja",
                             ["la caja dos se reinicia sola cada diez minutos."],
                             [("system", "POS", "caja")])
    assert slot_events(events)["description"] == "la caja dos se reinicia sola cada diez minutos"


@pytest.mark.parametrize("earlier", [None, "no es una lista", [3, {"x": 1}], ["ok", "gracias"]])
def test_no_or_unusable_group_context_leaves_the_description_as_before(conversation, earlier):
    events, _ = group_report(conversation, "falla la caja", earlier,
                             [("system", "POS", "caja")])
    assert "description" not in slot_events(events)


def test_entity_reported_by_two_extractors_is_left_out_once(conversation):
    text = "hola, en la tienda 42 la caja"
    store = entity("store", "tienda 42", text)
    events, _ = start_form(
        conversation,
        text,
        entities=[store, {**store, "extractor": "DIETClassifier", "confidence_entity": 0.95},
                  ("system", "POS", "caja")],
        store="tienda 42",
        system="POS",
    )

    set_ = slot_events(events)
    assert set_["store"] == "Tienda 42 (Avenida)"
    assert "description" not in set_


def test_first_message_with_unknown_store_is_reported_at_once(conversation):
    events, dispatcher = start_form(
        conversation,
        "no anda la balanza en la tienda 99",
        entities=[("store", "tienda 99"), ("system", "balanza")],
    )

    set_ = slot_events(events)
    assert set_["store"] is None
    assert set_["store_attempts"] == 1
    assert set_["system"] == "balanza"
    assert message(dispatcher, "utter_store_unknown")["store_input"] == "tienda 99"


# store ----------------------------------------------------------------------------------
def test_store_entity_answer(conversation):
    start_form(conversation, "la impresora fiscal no imprime, sale error E-45",
               entities=[("system", "impresora fiscal")])
    at_question(conversation, "store")
    conversation.user("tienda 42", "inform", [("store", "tienda 42")], store="tienda 42")

    events, dispatcher = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["store"] == "Tienda 42 (Avenida)"
    assert set_["store_attempts"] == 0
    assert dispatcher.messages == []


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("42", "Tienda 42 (Avenida)"),
        ("la 42", "Tienda 42 (Avenida)"),
        ("sucursal centro", "Tienda 1 (Centro)"),
        ("casa matriz", "Tienda 1 (Centro)"),
        ("Shopping Oeste", "Tienda 31 (Shopping Oeste)"),
    ],
)
def test_store_bare_answer_is_read_by_extract_store(conversation, answer, expected):
    start_form(conversation, "la impresora fiscal no imprime, sale error E-45",
               entities=[("system", "impresora fiscal")])
    at_question(conversation, "store")
    # no entity: Rasa's mappings fill nothing, the store comes from extract_store
    conversation.user(answer, "inform")

    events, dispatcher = form_turn(conversation)

    assert slot_events(events)["store"] == expected
    assert dispatcher.messages == []


def test_bare_number_is_not_a_store_when_the_store_was_not_asked(conversation):
    start_form(conversation, "falla la caja", entities=[("system", "POS", "caja")], system="POS")
    at_question(conversation, "description")
    conversation.user("42", "inform")

    tracker = conversation.form_validation_tracker()
    extracted = asyncio.run(ValidateTicketForm().extract_store(None, tracker, {}))
    assert extracted == {}


@pytest.mark.parametrize("answer, entities", [("tienda 99", [("store", "tienda 99")]), ("99", [])])
def test_unknown_store_is_reported_and_counted(conversation, answer, entities):
    start_form(conversation, "la impresora fiscal no imprime, sale error E-45",
               entities=[("system", "impresora fiscal")])
    at_question(conversation, "store")
    conversation.user(answer, "inform", entities, **({"store": answer} if entities else {}))

    events, dispatcher = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["store"] is None
    assert set_["store_attempts"] == 1
    assert responses(dispatcher) == ["utter_store_unknown"]
    shown = rendered(message(dispatcher, "utter_store_unknown"))
    assert shown["text"] == f"No encuentro la tienda «{answer}» en la lista de sucursales."


def test_second_unknown_store_offers_to_go_on_without_it(conversation, domain):
    start_form(conversation, "la impresora fiscal no imprime, sale error E-45",
               entities=[("system", "impresora fiscal")])

    at_question(conversation, "store")
    conversation.user("la de la esquina", "inform")
    events, _ = form_turn(conversation)
    assert slot_events(events)["store_attempts"] == 1
    _, asked = run(ActionAskStore(), conversation.tracker(), domain)
    assert responses(asked) == ["utter_ask_store"]

    at_question(conversation, "store")
    conversation.user("tienda 99", "inform", [("store", "tienda 99")], store="tienda 99")
    events, dispatcher = form_turn(conversation)
    assert slot_events(events) == {"store": None, "store_attempts": 2}
    assert responses(dispatcher) == ["utter_store_unknown"]

    _, asked = run(ActionAskStore(), conversation.tracker(), domain)
    assert responses(asked) == ["utter_store_offer"]
    offer = rendered(message(asked, "utter_store_offer"))
    assert [b["payload"] for b in offer["buttons"]] == ['/inform{"store":"sin tienda"}', "/request_human"]


@pytest.mark.parametrize(
    "answer, entities",
    [
        # the offer's button: /inform{"store":"sin tienda"}
        ("/inform{\"store\":\"sin tienda\"}", [("store", "sin tienda")]),
        ("sin tienda", []),
        ("continuar sin tienda", []),
    ],
)
def test_going_on_without_a_store(conversation, answer, entities):
    start_form(conversation, "la impresora fiscal no imprime, sale error E-45",
               entities=[("system", "impresora fiscal")])
    conversation.slot("store_attempts", 2.0)
    at_question(conversation, "store")
    conversation.user(answer, "inform", entities, **({"store": "sin tienda"} if entities else {}))

    events, dispatcher = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["store"] == "sin especificar"
    assert set_["store_attempts"] == 0
    assert dispatcher.messages == []


# system ---------------------------------------------------------------------------------
def start_without_system(conversation):
    start_form(conversation, "en la tienda 42 no funciona nada desde la mañana",
               entities=[("store", "tienda 42")])
    return at_question(conversation, "system")


@pytest.mark.parametrize(
    "answer, entities, expected",
    [
        ("posnet", [("system", "posnet")], "terminal de pago"),
        ("el posnet", [], "terminal de pago"),
        ("la ticketera", [], "impresora fiscal"),
        ("Caja / POS", [("system", "POS")], "POS"),
    ],
)
def test_system_synonyms_are_normalised(conversation, answer, entities, expected):
    start_without_system(conversation)
    conversation.user(answer, "inform", entities, **({"system": entities[0][1]} if entities else {}))

    events, dispatcher = form_turn(conversation)

    assert slot_events(events)["system"] == expected
    assert dispatcher.messages == []


def test_unknown_system_is_reported(conversation):
    start_without_system(conversation)
    conversation.user("la heladera", "inform")

    events, dispatcher = form_turn(conversation)

    assert slot_events(events)["system"] is None
    shown = rendered(message(dispatcher, "utter_system_unknown"))
    assert shown["text"] == "No reconozco «la heladera» como sistema. Elija uno de la lista o escriba «otro»."


# generic words ---------------------------------------------------------------------------
def test_the_system_and_no_sales_is_the_pos_and_tienda_alone_no_store(conversation):
    text = "se cayó el sistema en la tienda 1, no podemos vender"
    events, dispatcher = start_form(conversation, text,
                                    entities=[("system", "sistema"), ("store", "tienda 1")])
    assert slot_events(events)["system"] == "POS"  # config/dialogue.yml generic_system_rules
    assert "utter_system_unknown" not in responses(dispatcher)


@pytest.mark.parametrize("text, entities", [
    ("se cayó el sistema", [("system", "sistema")]),
    ("el Sistema no anda en la tienda", [("system", "el Sistema"), ("store", "la tienda")]),
])
def test_a_generic_word_is_asked_plainly_never_echoed(conversation, text, entities):
    events, dispatcher = start_form(conversation, text, entities=entities,
                                    **{kind: value for kind, value in entities})
    set_ = slot_events(events)
    assert set_["system"] is None and set_.get("store") is None
    # nothing echoed: the form goes on to ask for what is missing
    assert responses(dispatcher) == []
    assert set_.get("store_attempts", 0) == 0  # "la tienda" is no failed answer


def test_a_generic_answer_to_the_system_question_is_asked_again_plainly(conversation):
    start_without_system(conversation)
    conversation.user("el sistema", "inform")
    events, dispatcher = form_turn(conversation)
    assert slot_events(events)["system"] is None
    assert "utter_system_unknown" not in responses(dispatcher)


# description ----------------------------------------------------------------------------
def at_description(conversation):
    start_form(conversation, "falla la caja", entities=[("system", "POS", "caja")], system="POS")
    at_question(conversation, "store")
    conversation.user("42", "inform")
    form_turn(conversation)
    return at_question(conversation, "description")


def test_too_short_description_is_refused(conversation):
    at_description(conversation)
    # the from_text mapping of the domain fills the requested slot with the text
    conversation.user("mal", "inform", description="mal")

    events, dispatcher = form_turn(conversation)

    assert slot_events(events)["description"] is None
    assert responses(dispatcher) == ["utter_description_too_short"]


def test_one_long_word_is_enough(conversation):
    at_description(conversation)
    conversation.user("bloqueada", "inform", description="bloqueada")

    events, dispatcher = form_turn(conversation)

    assert slot_events(events)["description"] == "bloqueada"
    assert dispatcher.messages == []


def test_huge_description_is_cut_to_the_configured_maximum(conversation, catalog):
    at_description(conversation)
    text = ("la caja 2 muestra error E-45 y se reinicia sola " * 250)[:10_000]
    assert len(text) == 10_000
    conversation.user(text, "report_incident", description=text)

    events, _ = form_turn(conversation)

    description = slot_events(events)["description"]
    limit = catalog.dialogue.description_max_chars
    assert limit == 4000
    assert len(description) <= limit
    assert len(description) > limit - 40
    assert description.endswith(" [texto recortado]")
    assert description.startswith("la caja 2 muestra error E-45 y se reinicia sola la caja 2")


def test_description_whitespace_is_collapsed(conversation):
    at_description(conversation)
    text = "  la caja   no abre\n\ny sale   error E-45 "
    conversation.user(text, "report_incident", description=text)

    events, _ = form_turn(conversation)

    assert slot_events(events)["description"] == "la caja no abre y sale error E-45"


def test_howto_question_at_the_description_is_not_taken(conversation, domain):
    at_description(conversation)
    # the from_text mapping excludes ask_howto (Rasa's part): no description slot event
    mapping = domain["slots"]["description"]["mappings"][0]
    assert mapping["type"] == "from_text" and "ask_howto" in mapping["not_intent"]
    conversation.user("cómo hago el cierre de caja?", "ask_howto")

    events, dispatcher = form_turn(conversation)

    assert "description" not in slot_events(events)
    assert slots_now(conversation)["description"] is None
    assert dispatcher.messages == []


def test_more_detail_while_the_store_is_asked_is_added_to_the_description(conversation):
    start_form(conversation)  # description prefilled from the first message
    conversation.slot("store", None)
    at_question(conversation, "store")
    conversation.user("también sale el error E-45 al abrir", "report_incident")

    events, _ = form_turn(conversation)

    assert slot_events(events)["description"] == f"{INCIDENT}. también sale el error E-45 al abrir"


# confirmation ---------------------------------------------------------------------------
def test_affirm_confirms(conversation):
    filled_form(conversation)
    conversation.user("sí", "affirm")

    events, dispatcher = form_turn(conversation)

    assert slot_events(events) == {"confirm_ticket": True}
    assert dispatcher.messages == []


def test_deny_starts_a_correction(conversation, domain):
    filled_form(conversation)
    conversation.user("no", "deny")

    events, dispatcher = form_turn(conversation)

    assert slot_events(events) == {"correcting": True, "requested_slot": "correct_field"}
    assert dispatcher.messages == []
    form = ValidateTicketForm()
    tracker = conversation.tracker()
    required = asyncio.run(form.required_slots(form.domain_slots(domain), None, tracker, domain))
    assert required == ["store", "system", "description", "correct_field", "confirm_ticket"]
    assert tracker.slots["confirm_ticket"] is None


@pytest.mark.parametrize("intent", ["deny", "inform"])
def test_no_its_store_43_changes_the_store_and_asks_again(conversation, intent):
    filled_form(conversation)
    conversation.user("no, es la tienda 43", intent, [("store", "tienda 43")], store="tienda 43")

    events, dispatcher = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["store"] == "Tienda 43 (Catedral)"
    assert "confirm_ticket" not in set_
    assert "correcting" not in set_ or set_["correcting"] is False
    slots = slots_now(conversation)
    assert slots["confirm_ticket"] is None
    assert slots["correcting"] is False
    assert dispatcher.messages == []


def stated_urgent_at_the_confirmation(conversation):
    filled_form(conversation, PRINTER, PRINTER_ENTITIES)
    # the NLU tags "urgente" as a priority entity; Rasa's mapping sets the priority slot
    conversation.user("urgente", "inform", [("priority", "urgent", "urgente")], priority="urgent")
    return form_turn(conversation)


def test_priority_stated_at_the_confirmation_is_read_back(conversation, domain):
    events, _ = stated_urgent_at_the_confirmation(conversation)

    assert "confirm_ticket" not in slot_events(events)
    conversation.form_asks("confirm_ticket")
    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)
    assert message(dispatcher, "utter_confirm_ticket")["priority"] == "urgente"


def test_priority_stated_at_the_confirmation_is_accepted_by_the_form(conversation):
    events, _ = stated_urgent_at_the_confirmation(conversation)

    # what Rasa's FormAction.validate needs not to reject the turn: a validated slot
    assert [e for e in events if e["event"] == "slot" and e["name"] != "requested_slot"]


def correcting(conversation) -> Conversation:
    filled_form(conversation)
    conversation.user("no", "deny")
    form_turn(conversation)
    return at_question(conversation, "correct_field")


@pytest.mark.parametrize(
    "answer, entities, field",
    [
        ('/inform{"correct_field":"store"}', [("correct_field", "store")], "store"),
        ("la tienda", [], "store"),
        ('/inform{"correct_field":"system"}', [("correct_field", "system")], "system"),
        ("el sistema", [], "system"),
        ('/inform{"correct_field":"description"}', [("correct_field", "description")], "description"),
        ("la descripción", [], "description"),
    ],
)
def test_correct_field_resets_that_field(conversation, answer, entities, field):
    correcting(conversation)
    conversation.user(answer, "inform", entities, **({"correct_field": field} if entities else {}))

    events, _ = form_turn(conversation)

    set_ = slot_events(events)
    assert set_[field] is None
    assert set_["correct_field"] is None
    assert set_["correcting"] is False
    slots = slots_now(conversation)
    assert slots[field] is None
    others = {"store", "system", "description"} - {field}
    assert all(slots[name] for name in others)
    if field == "store":
        assert slots["store_attempts"] == 0


def test_correct_field_priority_flips_urgent_to_normal(conversation, domain):
    correcting(conversation)
    conversation.user("la prioridad", "inform")

    events, _ = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["priority"] == "normal"
    assert set_["correcting"] is False
    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)
    assert message(dispatcher, "utter_confirm_ticket")["priority"] == "normal"


def test_correct_field_priority_flips_normal_to_urgent(conversation):
    filled_form(conversation, PRINTER, PRINTER_ENTITIES)
    conversation.user("no", "deny")
    form_turn(conversation)
    at_question(conversation, "correct_field")
    conversation.user('/inform{"correct_field":"priority"}', "inform",
                      [("correct_field", "priority")], correct_field="priority")

    events, _ = form_turn(conversation)

    assert slot_events(events)["priority"] == "urgent"


@pytest.mark.parametrize("answer", ["la urgencia", "cambiar urgencia"])
def test_correct_field_picked_by_the_word_urgencia_raises_a_normal_ticket(conversation, answer):
    filled_form(conversation, PRINTER, PRINTER_ENTITIES)
    conversation.user("no", "deny")
    form_turn(conversation)
    at_question(conversation, "correct_field")
    # no priority entity: the field is picked by the correction words of config/dialogue.yml
    conversation.user(answer, "inform")

    events, _ = form_turn(conversation)

    assert slot_events(events)["priority"] == "urgent"


def test_store_given_directly_while_correcting(conversation):
    correcting(conversation)
    conversation.user("es la tienda 43", "inform", [("store", "tienda 43")], store="tienda 43")

    events, _ = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["store"] == "Tienda 43 (Catedral)"
    assert set_["correcting"] is False
    slots = slots_now(conversation)
    assert slots["correct_field"] is None
    assert [name for name in FORM_SLOTS if slots[name] is None] == ["confirm_ticket"]


def test_more_incident_text_at_the_confirmation_is_added_to_the_description(conversation, domain):
    filled_form(conversation)
    conversation.user("también sale el error E-45 al abrir", "report_incident")

    events, _ = form_turn(conversation)

    set_ = slot_events(events)
    assert set_["description"] == f"{INCIDENT}. también sale el error E-45 al abrir"
    assert "confirm_ticket" not in set_
    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)
    assert "E-45" in message(dispatcher, "utter_confirm_ticket")["description"]


# questions ------------------------------------------------------------------------------
def test_readback_shows_store_system_label_priority_and_description(conversation, domain):
    filled_form(conversation)

    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)

    sent = message(dispatcher, "utter_confirm_ticket")
    assert sent["store"] == "Tienda 42 (Avenida)"
    assert sent["system"] == "POS / caja"
    assert sent["priority"] == "urgente"  # "no podemos vender"
    assert sent["description"] == INCIDENT
    shown = rendered(sent)
    assert shown["text"] == (
        "Voy a crear este ticket:\n• Tienda: Tienda 42 (Avenida)\n• Sistema: POS / caja\n"
        f"• Prioridad: urgente\n• Descripción: {INCIDENT}\n¿Los datos son correctos?"
    )
    assert [b["payload"] for b in shown["buttons"]] == ["/affirm", "/deny", "/cancel"]


def test_readback_priority_is_normal_without_urgent_words(conversation, domain):
    filled_form(conversation, PRINTER, PRINTER_ENTITIES)

    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)

    assert message(dispatcher, "utter_confirm_ticket")["priority"] == "normal"


def test_readback_urgent_words_said_later_in_the_form_count(conversation, domain):
    start_form(conversation, "la impresora fiscal no imprime nada",
               entities=[("system", "impresora fiscal")])
    at_question(conversation, "store")
    conversation.user("la 42, es urgente", "inform", [("store", "la 42")], store="la 42")
    form_turn(conversation)
    at_question(conversation, "confirm_ticket")

    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)

    assert message(dispatcher, "utter_confirm_ticket")["priority"] == "urgente"


def test_readback_without_store_says_sin_especificar(conversation, domain):
    start_form(conversation, "la impresora fiscal no imprime nada",
               entities=[("system", "impresora fiscal")])
    at_question(conversation, "store")
    conversation.user("sin tienda", "inform")
    form_turn(conversation)
    at_question(conversation, "confirm_ticket")

    _, dispatcher = run(ActionAskConfirmTicket(), conversation.tracker(), domain)

    assert "• Tienda: sin especificar" in rendered(message(dispatcher, "utter_confirm_ticket"))["text"]


def test_missing_information_is_listed_when_the_form_starts_with_gaps(conversation, domain):
    start_form(conversation, "tengo un problema", entities=[])

    _, dispatcher = run(ActionAskStore(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_missing_information", "utter_ask_store"]
    assert rendered(dispatcher.messages[0])["text"] == (
        "Para crear el ticket necesito la siguiente información: la tienda, el sistema "
        "afectado y una descripción del problema."
    )


def test_missing_information_with_two_gaps(conversation, domain):
    start_form(conversation, "falla la caja", entities=[("system", "POS", "caja")], system="POS")

    _, dispatcher = run(ActionAskStore(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_missing_information", "utter_ask_store"]
    assert dispatcher.messages[0]["missing"] == "la tienda y una descripción del problema"


def test_no_missing_information_with_one_gap(conversation, domain):
    start_form(conversation, "la impresora fiscal no imprime, sale error E-45",
               entities=[("system", "impresora fiscal")])

    _, dispatcher = run(ActionAskStore(), conversation.tracker(), domain)

    assert responses(dispatcher) == ["utter_ask_store"]


def test_missing_information_only_on_the_activation_turn(conversation, domain):
    start_form(conversation, "tengo un problema", entities=[])
    at_question(conversation, "store")
    conversation.user("tienda 42", "inform", [("store", "tienda 42")], store="tienda 42")
    form_turn(conversation)

    # two fields are still missing, but the form started a turn ago
    _, dispatcher = run(ActionAskSystem(), conversation.tracker(), domain)
    assert responses(dispatcher) == ["utter_ask_system"]

    at_question(conversation, "system")
    conversation.user("la heladera", "inform")
    form_turn(conversation)
    _, dispatcher = run(ActionAskSystem(), conversation.tracker(), domain)
    assert responses(dispatcher) == ["utter_ask_system"]


@pytest.mark.parametrize("ask", [ActionAskSystem, ActionAskDescription])
def test_other_questions_also_list_the_gaps_on_activation(conversation, domain, ask):
    start_form(conversation, "tengo un problema en la tienda 8", entities=[("store", "tienda 8")])

    _, dispatcher = run(ask(), conversation.tracker(), domain)

    assert dispatcher.messages[0]["response"] == "utter_missing_information"
    assert dispatcher.messages[0]["missing"] == "el sistema afectado y una descripción del problema"
