"""Ticket numbers read from what users type (helpdesk/tickets/numbers.py)."""
import pytest

from helpdesk.tickets import ticket_number_in


@pytest.mark.parametrize("text, expected", [
    ("cómo va el ticket 105?", "105"),
    ("¿y el 105?", "105"),
    ("y el 105??", "105"),
    ("#105", "105"),
    ("# 105", "105"),
    ("ticket nro 105", "105"),
    ("ticket nro. 105", "105"),
    ("Ticket N° 105", "105"),
    ("el nº105 sigue abierto?", "105"),
    ("número 105", "105"),
    ("105", "105"),
    ("105?", "105"),
    ("TICKET 105 ESTADO", "105"),
    ("seguimiento caso 3390", "3390"),
    ("qué pasó con el 4412 de la tienda 42?", "4412"),
    ("cómo va el ticket 105 de la caja 2 en la tienda 42?", "105"),
    ("HD-DKNZQ7", "HD-DKNZQ7"),
    ("hd-dknzq7", "HD-DKNZQ7"),
    ("estado del Hd-DkNzQ7 porfa", "HD-DKNZQ7"),
    ("hd dknzq7", "HD-DKNZQ7"),
    ("ticket HD-DKNZQ7 y el 105", "HD-DKNZQ7"),  # the reference, the bot's own, comes first
])
def test_the_number_asked_about(text, expected):
    assert ticket_number_in(text) == expected


@pytest.mark.parametrize("text", [
    "estado de mis tickets",
    "ver los tickets de tienda 9",
    "tickets de la 27",
    "hay tickets abiertos de local #15?",
    "cómo va lo de la caja 2?",
    "me sale error E-102 en la caja",
    "",
])
def test_store_and_till_numbers_are_not_ticket_numbers(text):
    assert ticket_number_in(text) is None


def test_the_configured_prefix():
    assert ticket_number_in("cómo va el MS-ABC234?", "MS-") == "MS-ABC234"
    assert ticket_number_in("cómo va el HD-ABC234?", "MS-") is None
