"""Pure formatting helpers for the WhatsApp connectors (WAHA and Meta Cloud API).

No I/O here: the connectors build their requests from what these functions return.

- `split_text`: cut a long bot text into parts that fit one WhatsApp message (4096 chars);
- `numbered_options`: the text plus "1. Title" lines, for WAHA and as the Meta fallback;
- `meta_interactive`: the Meta `interactive` object (reply buttons or a list), or None
  when the buttons do not fit Meta's limits;
- `payload_for_reply`: map what the user typed ("1", "2.", a title) back to a payload.

Limits are from docs/whatsapp-wire-formats.md (B4, B6).
"""
import re
from typing import Any, Dict, List, Optional, Sequence

from helpdesk.text import fold

TEXT_LIMIT = 4096
INTERACTIVE_BODY_LIMIT = 1024
MAX_REPLY_BUTTONS = 3
REPLY_TITLE_LIMIT = 20
REPLY_ID_LIMIT = 256
MAX_LIST_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_ID_LIMIT = 200
LIST_BUTTON_LIMIT = 20

# split points, best first; the int is how many characters of the separator stay in the
# part before it (the sentence-ending mark stays, the space after it is cut)
_SEPARATORS = (("\n\n", 0), ("\n", 0), (". ", 1), ("? ", 1), ("! ", 1), (" ", 0))
_NUMBER_REPLY = re.compile(r"^\s*(\d+)\s*[.)]?\s*$")

Button = Dict[str, Any]


def _cut_point(text: str, limit: int) -> "tuple[int, int]":
    """Where to end the next part of `text` and where the rest starts (text is > limit)."""
    for separator, kept in _SEPARATORS:
        # the part (text up to the separator plus what is kept of it) must be <= limit
        index = text.rfind(separator, 0, limit - kept + len(separator))
        end = index + kept
        if index >= 0 and text[:end].strip():
            return end, index + len(separator)
    return limit, limit


def split_text(text: str, limit: int = TEXT_LIMIT) -> List[str]:
    """Split `text` into parts of at most `limit` characters, in order.

    Cuts at the last paragraph break ("\\n\\n") that fits, else the last line break, else
    the last sentence end (". ", "? ", "! ", the mark stays in the part), else the last
    space, and only as a last resort in the middle of a word. Only whitespace is lost at
    the cuts; no part is empty or whitespace only. A text that fits is returned unchanged.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    parts: List[str] = []
    # leading blanks of a text that must be cut would only waste room in the first part
    rest = text.lstrip() if len(text) > limit else text
    while len(rest) > limit:
        end, start = _cut_point(rest, limit)
        part = rest[:end].rstrip()
        if part.strip():
            parts.append(part)
        rest = rest[start:].lstrip()
    if rest.strip():
        parts.append(rest)
    return parts


def _title(button: Button) -> str:
    return str(button.get("title") or "").strip()


def _payload(button: Button) -> str:
    return str(button.get("payload") or "")


def numbered_options(text: str, buttons: Sequence[Button]) -> str:
    """The text followed by one "1. Title" line per button (WAHA and fallback rendering)."""
    lines = [f"{number}. {_title(button)}" for number, button in enumerate(buttons, start=1)]
    return "\n".join(([text] if text else []) + lines)


def _reply_buttons(text: str, buttons: Sequence[Button]) -> Optional[Dict[str, Any]]:
    titles = [_title(button) for button in buttons]
    if (
        len(buttons) > MAX_REPLY_BUTTONS
        or len(set(titles)) != len(titles)
        or any(len(title) > REPLY_TITLE_LIMIT for title in titles)
        or any(len(_payload(button)) > REPLY_ID_LIMIT for button in buttons)
    ):
        return None
    return {
        "type": "button",
        "body": {"text": text},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": _payload(button), "title": _title(button)}}
                for button in buttons
            ]
        },
    }


def _list(
    text: str, buttons: Sequence[Button], list_button: str, section_title: Optional[str]
) -> Optional[Dict[str, Any]]:
    ids = [_payload(button) for button in buttons]
    if (
        len(buttons) > MAX_LIST_ROWS
        or not list_button.strip()
        or len(list_button) > LIST_BUTTON_LIMIT
        or (section_title is not None and len(section_title) > ROW_TITLE_LIMIT)
        or len(set(ids)) != len(ids)
        or any(len(_title(button)) > ROW_TITLE_LIMIT for button in buttons)
        or any(len(row_id) > ROW_ID_LIMIT for row_id in ids)
    ):
        return None
    section: Dict[str, Any] = {
        "rows": [{"id": _payload(button), "title": _title(button)} for button in buttons]
    }
    if section_title:
        section = {"title": section_title, **section}
    return {
        "type": "list",
        "body": {"text": text},
        "action": {"button": list_button, "sections": [section]},
    }


def meta_interactive(
    text: str,
    buttons: Sequence[Button],
    list_button: str = "Ver opciones",
    section_title: Optional[str] = None,
) -> Optional[Dict[str, Any]]:
    """The Meta Cloud API `interactive` object for a text with buttons, or None.

    Reply buttons (`type: button`) when there are at most 3 buttons with distinct titles
    of at most 20 characters; otherwise a one-section `list` (at most 10 rows, titles at
    most 24 characters, ids at most 200). The payload is the id. `list_button` is the
    label of the button that opens the list (at most 20 characters); its Spanish default
    is meant to be overridden from the catalog or settings. `section_title` is optional
    with a single section. None when the body is empty or longer than 1024 characters,
    when there are no buttons, or when a button has no title or payload: the caller then
    sends `numbered_options` as plain text.
    """
    if not text.strip() or len(text) > INTERACTIVE_BODY_LIMIT or not buttons:
        return None
    if any(not _title(button) or not _payload(button) for button in buttons):
        return None
    return _reply_buttons(text, buttons) or _list(text, buttons, list_button, section_title)


def payload_for_reply(reply: str, buttons: Sequence[Button]) -> Optional[str]:
    """The payload of the button the user's reply designates, or None.

    Accepts the option number as `numbered_options` shows it ("1", "2.", " 3 "), the
    button title compared with `helpdesk.text.fold` (case, accents and surrounding
    punctuation ignored), or the payload itself, exactly.
    """
    if not reply or not buttons:
        return None
    number = _NUMBER_REPLY.match(reply)
    if number:
        index = int(number.group(1))
        if 1 <= index <= len(buttons):
            return _payload(buttons[index - 1]) or None
        return None
    folded = fold(reply)
    if folded:
        for button in buttons:
            if fold(_title(button)) == folded:
                return _payload(button) or None
    for button in buttons:
        payload = _payload(button)
        if payload and reply.strip() == payload:
            return payload
    return None
