"""Priority by rules (helpdesk/tickets/priority.py with the shipped config/priority.yml)."""
import pytest

from helpdesk.config import PriorityRules
from helpdesk.tickets import (
    NORMAL,
    PRIORITIES,
    URGENT,
    decide_priority,
    matched_urgent_phrases,
    priority_label,
)


@pytest.fixture
def rules(catalog) -> PriorityRules:
    return catalog.priority


@pytest.mark.parametrize(
    "text",
    [
        # the four phrases the functional spec names
        "tienda no opera",
        "sistema caído",
        "no pueden vender",
        "urgente",
        # case and accents do not matter
        "SISTEMA CAIDO",
        "Sistema Caído",
        "SiStEmA cAíDo",
        "La TIENDA NO OPERA desde las 9",
        "NO PUEDEN VENDER",
        "URGENTE",
        "Urgente",
        # inside a longer message, next to punctuation
        "Hola, la tienda no opera. ¿Pueden ayudar?",
        "el sistema caído otra vez!!!",
        "¡¡Urgente!! la caja 2 no anda",
        "Es urgente: no pueden vender en la 42",
        # other phrases of the shipped list
        "se cayó el sistema",
        "no podemos cobrar con tarjeta",
        "tuvimos que cerrar la tienda",
        "emergencia en la sucursal",
        "ninguna caja funciona",
    ],
)
def test_urgent_phrases_make_the_ticket_urgent(rules, text):
    assert decide_priority(rules, [text]) == URGENT
    assert matched_urgent_phrases(rules, [text])


@pytest.mark.parametrize(
    "text",
    [
        "la impresora no imprime el ticket",
        "el posnet rechaza las tarjetas",
        "consulta sobre el stock",
        # whole words only: a longer word that merely starts with a phrase does not count
        "URGENTEEE",
        "urgentemente",
        "sistemas caidos",
        "no pueden venderlo",
    ],
)
def test_texts_without_a_whole_urgent_phrase_are_normal(rules, text):
    assert decide_priority(rules, [text]) == NORMAL
    assert matched_urgent_phrases(rules, [text]) == []


def test_matched_phrases_are_reported_folded(rules):
    assert matched_urgent_phrases(rules, ["Sistema Caído y no pueden vender"]) == [
        "sistema caido",
        "no pueden vender",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "no es urgente",
        "nada urgente, cuando puedan",
        "NO ES URGENTE",
        "No es tan urgente",
        "sin urgencia",
        "no hay urgencia",
        "no es una urgencia, pero la impresora no imprime",
    ],
)
def test_negated_urgency_is_normal(rules, text):
    assert decide_priority(rules, [text]) == NORMAL
    assert matched_urgent_phrases(rules, [text]) == []


def test_a_negation_does_not_hide_another_urgent_phrase(rules):
    text = "no es urgente para mí, pero no pueden vender"
    assert matched_urgent_phrases(rules, [text]) == ["no pueden vender"]
    assert decide_priority(rules, [text]) == URGENT


def test_urgente_again_after_a_negation_is_urgent(rules):
    assert decide_priority(rules, ["no es urgente... bueno sí, es urgente"]) == URGENT


def test_a_negation_in_one_text_does_not_cancel_an_urgent_phrase_in_another(rules):
    assert decide_priority(rules, ["no es urgente", "ahora sí: urgente"]) == URGENT


def test_stated_normal_wins_over_urgent_phrases(rules):
    assert decide_priority(rules, ["la tienda no opera, sistema caído"], stated=NORMAL) == NORMAL


def test_stated_urgent_wins_without_any_phrase(rules):
    assert decide_priority(rules, ["la impresora no imprime"], stated=URGENT) == URGENT
    assert decide_priority(rules, [], stated=URGENT) == URGENT


@pytest.mark.parametrize("stated", [None, "", "urgente", "alta", "URGENT"])
def test_an_unknown_stated_value_leaves_the_decision_to_the_phrases(rules, stated):
    # only the canonical values `urgent` / `normal` count as a stated priority
    assert decide_priority(rules, ["hola, consulta"], stated=stated) == NORMAL
    assert decide_priority(rules, ["sistema caído"], stated=stated) == URGENT


def test_a_phrase_in_any_of_several_texts_makes_it_urgent(rules):
    texts = ["hola", "en la tienda 42", "la caja 2", "no pueden vender nada"]
    assert decide_priority(rules, texts) == URGENT
    assert matched_urgent_phrases(rules, texts) == ["no pueden vender"]


def test_phrases_from_several_texts_are_all_found(rules):
    texts = ["sistema caído", "hola", "y es urgente"]
    assert matched_urgent_phrases(rules, texts) == ["sistema caido", "urgente"]


def test_texts_are_matched_one_by_one_not_joined(rules):
    # "sistema" in one message and "caído" in the next is not the phrase "sistema caído"
    assert decide_priority(rules, ["se cayó el sistema de stock"]) == URGENT
    assert decide_priority(rules, ["el sistema", "caído"]) == NORMAL


@pytest.mark.parametrize("texts", [[], [""], ["", "   ", None], ["?!", "..."]])
def test_empty_texts_are_normal(rules, texts):
    assert decide_priority(rules, texts) == NORMAL
    assert matched_urgent_phrases(rules, texts) == []


def test_texts_may_be_any_iterable(rules):
    assert decide_priority(rules, (t for t in ["hola", "urgente"])) == URGENT


def test_priority_label_uses_the_configured_labels(rules):
    assert PRIORITIES == (URGENT, NORMAL)
    assert priority_label(rules, URGENT) == "urgente"
    assert priority_label(rules, NORMAL) == "normal"


def test_priority_label_of_an_unknown_value_is_the_value(rules):
    assert priority_label(rules, "alta") == "alta"


def test_rules_from_other_labels_and_phrases():
    rules = PriorityRules(
        urgent_phrases=("caja bloqueada",),
        not_urgent_phrases=("no esta caja bloqueada",),
        labels={"urgent": "ALTA", "normal": "BAJA"},
    )
    assert decide_priority(rules, ["Caja bloqueada"]) == URGENT
    assert decide_priority(rules, ["no está caja bloqueada"]) == NORMAL
    assert decide_priority(rules, ["urgente"]) == NORMAL
    assert priority_label(rules, URGENT) == "ALTA"
