"""Passages made ready for WhatsApp: trimmed at a sentence or line end, markdown adapted."""
from knowledge.quote import passage_for_chat, trim, whatsapp_markdown

STEPS = (
    "1. Termine la última venta y elija «Cierre de turno».\n"
    "2. Retire el cajón y cuéntelo en la oficina.\n"
    "3. Separe el fondo de caja inicial: vuelve al tesoro.\n"
    "4. Cuente el resto por denominación."
)


def test_text_that_fits_is_unchanged():
    assert trim(STEPS, len(STEPS), " […]") == STEPS


def test_cut_at_the_last_line_or_sentence_that_fits_with_the_marker():
    trimmed = trim(STEPS, 110, " […]")

    assert trimmed == (
        "1. Termine la última venta y elija «Cierre de turno».\n"
        "2. Retire el cajón y cuéntelo en la oficina. […]"
    )
    assert len(trimmed) <= 110


def test_cut_inside_a_paragraph_at_a_sentence_end():
    text = "Primero apague la caja. Después espere diez segundos. Por último enciéndala otra vez."
    assert trim(text, 60, "…") == "Primero apague la caja. Después espere diez segundos.…"


def test_without_a_sentence_end_the_cut_falls_between_words():
    text = "palabra " * 30
    trimmed = trim(text, 50, " […]")
    assert len(trimmed) <= 50
    assert trimmed.endswith("palabra […]")


def test_markdown_for_whatsapp():
    assert whatsapp_markdown("- **Efectivo**: se devuelve en `efectivo`, ver [portal](https://p.example)") == (
        "- *Efectivo*: se devuelve en efectivo, ver portal (https://p.example)"
    )


def test_heading_in_bold_then_text_within_the_limit():
    passage = passage_for_chat("Cómo hacer el arqueo de caja", STEPS, 120, " […]")

    assert passage.startswith("*Cómo hacer el arqueo de caja*\n1. Termine")
    assert len(passage) <= 120
    assert passage.endswith(" […]")
    assert passage_for_chat("", "Texto corto.", 120, " […]") == "Texto corto."
