"""Ticket numbers as people type them in a status question: the ledger's reference
("HD-DKNZQ7", "hd dknzq7") or Zoho's ticket number ("#105", "ticket 105", "nro 105",
"n° 105", "¿y el 105?", a bare "105").

The status action reads the number from the message text with this parser when the entity
model found none (or found a fragment), so the answer does not depend on the model's guess.
Numbers of stores and tills ("tienda 42", "la 27", "caja 2", "local #15") are never taken
for a ticket number.
"""
import re
from typing import Optional

# what names a store or a till, with its number: removed before looking for a ticket number
_NOT_A_TICKET = re.compile(
    r"\b(?:tiendas?|sucursal(?:es)?|suc\.?|local(?:es)?|cajas?|la|las)\s*"
    r"(?:n[°º.]\s*|#\s*|nro\.?\s*|n[uú]m(?:ero)?\.?\s*)?\d{1,4}\b",
    re.IGNORECASE,
)
# "#105", "nro 105", "nro. 105", "n° 105", "nº105", "núm. 105", "número 105"
_MARKED = re.compile(
    r"(?:#|\bn[°º.]|\bnro\b\.?|\bn[uú]m\b\.?|\bn[uú]mero\b)\s*:?\s*(\d{1,10})\b",
    re.IGNORECASE,
)
# "ticket 105", "caso 3390", "reclamo: 8812"
_NAMED = re.compile(
    r"\b(?:tickets?|tiquets?|tikets?|casos?|reclamos?|incidencias?|incidentes?|reportes?|"
    r"solicitud(?:es)?)\s*:?\s*(\d{1,10})\b",
    re.IGNORECASE,
)
# "¿y el 105?", "qué pasó con el 4412"
_THE = re.compile(r"\bel\s+(\d{2,10})\b", re.IGNORECASE)
# the whole message is the number: "105", "#105?", "y el 105??"
_BARE = re.compile(r"^[\W_]*(?:y\s+)?(?:el\s+)?#?\s*(\d{1,10})[\W_]*$", re.IGNORECASE)


def _reference_pattern(prefix: str) -> "re.Pattern[str]":
    core = re.escape(prefix.rstrip("-_ –"))
    return re.compile(rf"(?<![0-9A-Za-z]){core}\s?[-–_ ]\s?([0-9A-Za-z]{{5,12}})(?![0-9A-Za-z])",
                      re.IGNORECASE)


def ticket_number_in(text: str, reference_prefix: str = "HD-") -> Optional[str]:
    """The reference (upper case, with the configured prefix) or the Zoho ticket number
    (digits) the text asks about; None when it names none."""
    if not text:
        return None
    reference = _reference_pattern(reference_prefix).search(text)
    if reference:
        return reference_prefix.upper() + reference.group(1).upper()
    rest = _NOT_A_TICKET.sub(" ", text)
    for pattern in (_MARKED, _NAMED, _THE, _BARE):
        found = pattern.search(rest)
        if found:
            return found.group(1)
    return None
