"""WhatsApp formatting helpers (connectors/whatsapp/format.py): pure functions, no I/O."""
import random
import re

import pytest

from connectors.whatsapp.format import (
    meta_interactive,
    numbered_options,
    payload_for_reply,
    split_text,
)

BUTTONS = [
    {"title": "Sí, crear ticket", "payload": "/affirm"},
    {"title": "No, gracias", "payload": "/deny"},
    {"title": "Hablar con alguien", "payload": "/human_handoff"},
]


def _words(text: str):
    return re.findall(r"\S+", text)


def _options(count: int):
    return [{"title": f"Opción {n}", "payload": f"/choose{{\"n\": {n}}}"} for n in range(1, count + 1)]


# split_text


def test_short_text_is_one_unchanged_part():
    assert split_text("Hola, ¿en qué te ayudo?") == ["Hola, ¿en qué te ayudo?"]
    assert split_text("x" * 4096) == ["x" * 4096]


def test_empty_or_blank_text_gives_no_parts():
    assert split_text("") == []
    assert split_text("   \n\n  ") == []


def test_invalid_limit_is_rejected():
    with pytest.raises(ValueError):
        split_text("hola", limit=0)


def test_long_text_splits_on_paragraphs_in_order_within_limit():
    paragraphs = [f"Párrafo {n}: " + " ".join(f"palabra{n}_{i}" for i in range(95)) for n in range(6)]
    text = "\n\n".join(paragraphs)
    assert 6000 <= len(text) <= 7500
    parts = split_text(text)
    assert len(parts) >= 2
    assert all(0 < len(part) <= 4096 for part in parts)
    # every cut fell on a paragraph boundary: each part is whole paragraphs
    assert "\n\n".join(parts) == text
    assert _words(" ".join(parts)) == _words(text)


def test_paragraph_is_preferred_over_a_later_line_break():
    text = "a" * 30 + "\n\n" + "b" * 30 + "\n" + "c" * 30
    assert split_text(text, limit=70) == ["a" * 30, "b" * 30 + "\n" + "c" * 30]


def test_line_break_is_preferred_over_sentence_end():
    text = "Uno dos.\nTres. Cuatro cinco seis siete"
    assert split_text(text, limit=20) == ["Uno dos.", "Tres.", "Cuatro cinco seis", "siete"]


def test_sentence_end_is_preferred_over_space_and_keeps_the_mark():
    text = "Primera frase corta. Segunda frase algo más larga que sigue"
    parts = split_text(text, limit=40)
    assert parts[0] == "Primera frase corta."
    assert all(len(part) <= 40 for part in parts)
    assert _words(" ".join(parts)) == _words(text)


def test_question_and_exclamation_marks_end_sentences():
    assert split_text("¿Seguro? Sí claro que sí", limit=15) == ["¿Seguro?", "Sí claro que sí"]
    assert split_text("¡Listo! Ya está hecho todo", limit=15) == ["¡Listo!", "Ya está hecho", "todo"]


def test_sentence_mark_exactly_at_the_limit_fits():
    text = "abcd. efgh"
    assert split_text(text, limit=5) == ["abcd.", "efgh"]


def test_spaces_are_used_when_there_is_no_better_boundary():
    text = " ".join(["palabra"] * 20)
    parts = split_text(text, limit=30)
    assert all(len(part) <= 30 for part in parts)
    assert all(part.split(" ") == ["palabra"] * len(part.split(" ")) for part in parts)
    assert _words(" ".join(parts)) == _words(text)


def test_single_huge_word_is_hard_cut():
    word = "".join(chr(ord("a") + i % 26) for i in range(5000))
    parts = split_text(word)
    assert parts == [word[:4096], word[4096:]]


def test_hard_cut_only_for_the_overlong_word():
    text = "inicio " + "x" * 50 + " fin"
    parts = split_text(text, limit=20)
    assert parts == ["inicio", "x" * 20, "x" * 20, "x" * 10 + " fin"]


def test_no_part_is_empty_with_runs_of_separators():
    text = "a" * 10 + "\n\n\n\n\n\n" + "b" * 10 + "    " + "c" * 10
    parts = split_text(text, limit=12)
    assert parts == ["a" * 10, "b" * 10, "c" * 10]


def test_leading_separator_does_not_make_an_empty_part():
    text = "\n\n" + "a" * 8 + " " + "b" * 8
    parts = split_text(text, limit=9)
    assert parts == ["a" * 8, "b" * 8]
    assert _words(" ".join(parts)) == _words(text)


# numbered_options


def test_numbered_options():
    assert numbered_options("¿Creo el ticket?", BUTTONS) == (
        "¿Creo el ticket?\n1. Sí, crear ticket\n2. No, gracias\n3. Hablar con alguien"
    )


def test_numbered_options_without_buttons_or_text():
    assert numbered_options("Hola", []) == "Hola"
    assert numbered_options("", BUTTONS[:1]) == "1. Sí, crear ticket"


# meta_interactive


def test_three_short_buttons_give_reply_buttons_like_the_doc():
    buttons = [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]
    assert meta_interactive("Pick one", buttons) == {
        "type": "button",
        "body": {"text": "Pick one"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "/affirm", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "/deny", "title": "No"}},
            ]
        },
    }
    three = meta_interactive("¿Creo el ticket?", BUTTONS)
    assert three["type"] == "button"
    assert [b["reply"] for b in three["action"]["buttons"]] == [
        {"id": "/affirm", "title": "Sí, crear ticket"},
        {"id": "/deny", "title": "No, gracias"},
        {"id": "/human_handoff", "title": "Hablar con alguien"},
    ]


def test_four_buttons_give_a_list():
    buttons = _options(4)
    assert meta_interactive("Elegí una opción", buttons, list_button="Options") == {
        "type": "list",
        "body": {"text": "Elegí una opción"},
        "action": {
            "button": "Options",
            "sections": [{"rows": [{"id": b["payload"], "title": b["title"]} for b in buttons]}],
        },
    }


def test_list_button_default_and_section_title():
    result = meta_interactive("Elegí", _options(4), section_title="Temas")
    assert result["action"]["button"] == "Ver opciones"
    assert result["action"]["sections"][0]["title"] == "Temas"


def test_a_21_character_title_gives_a_list():
    buttons = [{"title": "x" * 21, "payload": "/a"}, {"title": "Otro", "payload": "/b"}]
    result = meta_interactive("Elegí", buttons)
    assert result["type"] == "list"
    assert result["action"]["sections"][0]["rows"][0] == {"id": "/a", "title": "x" * 21}


def test_twenty_character_title_still_fits_reply_buttons():
    buttons = [{"title": "x" * 20, "payload": "/a"}]
    assert meta_interactive("Elegí", buttons)["type"] == "button"


def test_ten_rows_fit_a_list_eleven_do_not():
    assert meta_interactive("Elegí", _options(10))["type"] == "list"
    assert meta_interactive("Elegí", _options(11)) is None


def test_row_title_over_24_characters_gives_none():
    buttons = _options(4) + [{"title": "y" * 25, "payload": "/y"}]
    assert meta_interactive("Elegí", buttons) is None


def test_long_payload_limits():
    assert meta_interactive("Elegí", [{"title": "A", "payload": "/" + "p" * 255}])["type"] == "button"
    assert meta_interactive("Elegí", [{"title": "A", "payload": "/" + "p" * 256}]) is None
    long_row = _options(3) + [{"title": "B", "payload": "/" + "p" * 200}]
    assert meta_interactive("Elegí", long_row) is None


def test_body_limit():
    assert meta_interactive("a" * 1024, BUTTONS) is not None
    assert meta_interactive("a" * 1025, BUTTONS) is None


def test_no_buttons_empty_body_or_missing_fields_give_none():
    assert meta_interactive("Hola", []) is None
    assert meta_interactive("   ", BUTTONS) is None
    assert meta_interactive("Hola", [{"title": "Sin payload"}]) is None
    assert meta_interactive("Hola", [{"payload": "/sin_titulo"}]) is None


def test_duplicate_titles_fall_back_to_list_and_duplicate_ids_to_none():
    same_title = [{"title": "Igual", "payload": "/a"}, {"title": "Igual", "payload": "/b"}]
    assert meta_interactive("Elegí", same_title)["type"] == "list"
    same_id = [{"title": "x" * 21, "payload": "/a"}, {"title": "B", "payload": "/a"}]
    assert meta_interactive("Elegí", same_id) is None


def test_list_button_label_over_20_characters_gives_none():
    assert meta_interactive("Elegí", _options(4), list_button="z" * 21) is None


# payload_for_reply


@pytest.mark.parametrize(
    "reply, payload",
    [
        ("1", "/affirm"),
        ("2.", "/deny"),
        (" 2 ", "/deny"),
        ("3)", "/human_handoff"),
        ("  sí, crear ticket ", "/affirm"),
        ("SI, CREAR TICKET", "/affirm"),
        ("¡Sí crear tícket!", "/affirm"),
        ("no gracias", "/deny"),
        ("/human_handoff", "/human_handoff"),
    ],
)
def test_reply_maps_to_payload(reply, payload):
    assert payload_for_reply(reply, BUTTONS) == payload


@pytest.mark.parametrize("reply", ["quizás", "0", "4", "12", "", "   ", "sí", "/AFFIRM", "1 2"])
def test_unmatched_reply_gives_none(reply):
    assert payload_for_reply(reply, BUTTONS) is None


def test_reply_without_buttons_gives_none():
    assert payload_for_reply("1", []) is None


def test_numbers_match_numbered_options_rendering():
    text = numbered_options("Elegí", BUTTONS)
    for line in text.splitlines()[1:]:
        number, title = line.split(". ", 1)
        assert payload_for_reply(number, BUTTONS) == payload_for_reply(title, BUTTONS)


@pytest.mark.parametrize("seed", range(20))
def test_split_invariants_on_random_text(seed):
    rng = random.Random(seed)
    pieces = ["palabra", "x" * 37, ". ", "? ", "! ", " ", "\n", "\n\n", "ñandú", "¿qué?"]
    text = "".join(rng.choice(pieces) for _ in range(400))
    limit = rng.randint(5, 60)
    parts = split_text(text, limit=limit)
    assert all(part.strip() and len(part) <= limit for part in parts)
    assert "".join(_words("".join(parts))) == "".join(_words(text))
