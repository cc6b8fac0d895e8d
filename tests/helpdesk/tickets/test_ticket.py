"""Ticket ids, references, subjects and derived fields (helpdesk/tickets/ticket.py)."""
import re
import uuid

import pytest

from helpdesk.config import NO_STORE
from helpdesk.tickets import NORMAL, URGENT
from helpdesk.tickets import (
    TICKET_NAMESPACE,
    Ticket,
    build_ticket,
    make_subject,
    reference_for,
    ticket_id_for,
)

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERENCE = re.compile(rf"^HD-[{ALPHABET}]{{6}}$")


# ids ---------------------------------------------------------------------------------
def test_ticket_id_is_deterministic():
    first = ticket_id_for("5491122334455", 1700000000.123456)
    assert first == ticket_id_for("5491122334455", 1700000000.123456)
    parsed = uuid.UUID(first)
    assert parsed.version == 5
    assert first == str(uuid.uuid5(TICKET_NAMESPACE, "5491122334455:1700000000.123456"))


SUBJECT = {"store_format": " en {store}", "without_system": "Incidencia"}


def test_ticket_ids_differ_by_conversation_and_by_form_start():
    ids = {
        ticket_id_for("5491122334455", 1700000000.0),
        ticket_id_for("5491122334466", 1700000000.0),
        ticket_id_for("5491122334455", 1700000000.000001),
        ticket_id_for("5491122334455", 1700000060.0),
    }
    assert len(ids) == 4


def test_ticket_ids_are_distinct_over_many_forms():
    ids = {ticket_id_for(f"conv-{i % 50}", 1700000000.0 + i) for i in range(2000)}
    assert len(ids) == 2000


# references --------------------------------------------------------------------------
def test_reference_format():
    for i in range(200):
        reference = reference_for(ticket_id_for(f"conv-{i}", 1700000000.0), "HD-")
        assert REFERENCE.match(reference), reference
        # no look-alike characters users could mistype
        assert not set(reference[3:]) & set("01IO")


def test_reference_is_stable():
    ticket_id = ticket_id_for("5491122334455", 1700000000.5)
    assert reference_for(ticket_id, "HD-") == reference_for(ticket_id, "HD-")
    assert reference_for(str(uuid.UUID(ticket_id)), "HD-") == reference_for(ticket_id, "HD-")


def test_reference_uses_the_given_prefix():
    ticket_id = ticket_id_for("c", 1.0)
    reference = reference_for(ticket_id, "MESA/")
    assert reference.startswith("MESA/")
    assert reference[len("MESA/"):] == reference_for(ticket_id, "HD-")[3:]
    assert len(reference_for(ticket_id, "")) == 6


def test_known_reference_value():
    # the nil UUID maps to the first letter six times; 31 to the last one first
    assert reference_for(str(uuid.UUID(int=0)), "HD-") == "HD-AAAAAA"
    assert reference_for(str(uuid.UUID(int=31)), "HD-") == "HD-9AAAAA"
    assert reference_for(str(uuid.UUID(int=32)), "HD-") == "HD-ABAAAA"


def test_references_of_different_tickets_differ():
    references = {reference_for(ticket_id_for(f"conv-{i}", 1700000000.0), "HD-") for i in range(1000)}
    assert len(references) == 1000


def test_reference_rejects_what_is_not_a_uuid():
    with pytest.raises(ValueError):
        reference_for("not-a-uuid", "HD-")


# subject -----------------------------------------------------------------------------
def test_subject_has_system_label_store_and_symptom():
    subject = make_subject("POS / caja", "Tienda 42 (Avenida)", "la caja 2 no abre", **SUBJECT)
    assert subject == "POS / caja en Tienda 42 (Avenida): la caja 2 no abre"


def test_subject_without_store():
    assert make_subject("POS / caja", None, "no abre", **SUBJECT) == "POS / caja: no abre"
    assert make_subject("POS / caja", "", "no abre", **SUBJECT) == "POS / caja: no abre"


def test_subject_with_store_not_specified():
    assert make_subject("POS / caja", NO_STORE, "no abre", **SUBJECT) == "POS / caja: no abre"
    assert NO_STORE not in make_subject("POS / caja", NO_STORE, "no abre", **SUBJECT)


def test_subject_without_system_or_description():
    assert make_subject(None, "Tienda 1 (Centro)", "no anda", **SUBJECT) == "Incidencia en Tienda 1 (Centro): no anda"
    assert make_subject("balanza / báscula", "Tienda 1 (Centro)", "", **SUBJECT) == "balanza / báscula en Tienda 1 (Centro)"
    assert make_subject(None, None, "   ", **SUBJECT) == "Incidencia"


def test_subject_collapses_whitespace():
    assert make_subject("POS", None, "  la caja\n\n no   abre\t", **SUBJECT) == "POS: la caja no abre"


def test_long_subject_is_cut_to_120_characters():
    description = "la caja registradora muestra un error al abrir el turno " * 10
    subject = make_subject("POS / caja", "Tienda 42 (Avenida)", description, **SUBJECT)
    assert len(subject) <= 120
    assert subject.endswith("...")
    assert subject.startswith("POS / caja en Tienda 42 (Avenida): la caja registradora")


def test_subject_of_exactly_120_characters_is_kept():
    head = "POS: "
    description = "x" * (120 - len(head))
    subject = make_subject("POS", None, description, **SUBJECT)
    assert len(subject) == 120
    assert not subject.endswith("...")
    assert len(make_subject("POS", None, description + "y", **SUBJECT)) <= 120


# build_ticket ------------------------------------------------------------------------
def _build(catalog, **overrides):
    values = dict(
        ticket_id=ticket_id_for("5491122334455", 1700000000.0),
        conversation_id="5491122334455",
        store="Tienda 42 (Avenida)",
        system="terminal de pago",
        description="el posnet rechaza todas las tarjetas",
        stated_priority=None,
        priority_texts=["hola", "el posnet rechaza todas las tarjetas"],
    )
    values.update(overrides)
    return build_ticket(catalog, **values)


def test_build_ticket_derives_fields_from_the_system(catalog):
    ticket = _build(catalog)
    assert isinstance(ticket, Ticket)
    assert ticket.system == "terminal de pago"
    assert ticket.department == "payments"
    assert ticket.classification == "Problem"
    assert ticket.priority == NORMAL
    assert ticket.subject == (
        "datáfono / terminal de pago en Tienda 42 (Avenida): el posnet rechaza todas las tarjetas"
    )
    assert ticket.reference == reference_for(ticket.id, "HD-")
    assert REFERENCE.match(ticket.reference)
    assert ticket.store == "Tienda 42 (Avenida)"
    assert ticket.conversation_id == "5491122334455"


@pytest.mark.parametrize(
    "system, department",
    [("POS", "it"), ("balanza", "maintenance"), ("inventario", "operations"), ("cámaras y alarma", "security")],
)
def test_build_ticket_department_per_system(catalog, system, department):
    assert _build(catalog, system=system).department == department


def test_build_ticket_accepts_the_system_name_in_other_case(catalog):
    ticket = _build(catalog, system="Terminal de Pago")
    assert ticket.system == "terminal de pago"
    assert ticket.department == "payments"


def test_build_ticket_without_system_uses_the_otro_fallback(catalog):
    ticket = _build(catalog, system=None)
    assert ticket.system is None
    assert ticket.department == "it"
    assert ticket.classification == "Others"
    assert ticket.subject.startswith("Incidencia en Tienda 42 (Avenida): ")


def test_build_ticket_with_an_unknown_system_keeps_what_was_said(catalog):
    ticket = _build(catalog, system="heladera")
    assert ticket.system == "heladera"
    assert ticket.department == "it"
    assert ticket.classification == "Others"
    assert ticket.subject.startswith("heladera en ")


def test_build_ticket_priority_from_the_texts(catalog):
    ticket = _build(catalog, priority_texts=["en la 42", "no pueden vender"])
    assert ticket.priority == URGENT
    assert _build(catalog, priority_texts=["no es urgente"]).priority == NORMAL


def test_build_ticket_stated_priority_wins(catalog):
    assert _build(catalog, priority_texts=["sistema caído"], stated_priority=NORMAL).priority == NORMAL
    assert _build(catalog, priority_texts=["consulta"], stated_priority=URGENT).priority == URGENT


def test_build_ticket_store_not_specified(catalog):
    ticket = _build(catalog, store=NO_STORE)
    assert ticket.store == NO_STORE
    assert ticket.subject == "datáfono / terminal de pago: el posnet rechaza todas las tarjetas"


def test_build_ticket_cuts_a_long_description(catalog):
    limit = catalog.dialogue.description_max_chars
    long_text = "la caja no abre. " * 1000
    assert len(long_text) > limit
    ticket = _build(catalog, description=long_text)
    assert len(ticket.description) <= limit
    assert ticket.description.endswith(" [texto recortado]")
    assert ticket.description.startswith("la caja no abre. la caja no abre.")
    assert len(ticket.subject) <= 120


def test_build_ticket_keeps_a_description_of_exactly_the_limit(catalog):
    limit = catalog.dialogue.description_max_chars
    text = "a" * limit
    assert _build(catalog, description=text).description == text


def test_build_ticket_optional_fields(catalog):
    mentioned = ["@5491100000001"]
    ticket = _build(
        catalog,
        reporter_name="Ana",
        reporter_phone="5491122334455",
        channel="whatsapp",
        affected_person="Luis",
        mentioned_users=mentioned,
        correlation_id="abc123",
    )
    assert (ticket.reporter_name, ticket.reporter_phone, ticket.channel) == (
        "Ana",
        "5491122334455",
        "whatsapp",
    )
    assert ticket.affected_person == "Luis"
    assert ticket.mentioned_users == mentioned
    assert ticket.mentioned_users is not mentioned  # a copy
    assert ticket.correlation_id == "abc123"
    assert ticket.error_messages == [] and ticket.attachments == []
    data = ticket.as_dict()
    assert data["id"] == ticket.id
    assert data["mentioned_users"] == mentioned
    assert set(data) >= {"subject", "description", "priority", "classification", "department"}


def test_build_ticket_without_mentions_has_an_empty_list(catalog):
    assert _build(catalog).mentioned_users == []
