"""A passage made ready to quote in a WhatsApp message: markdown the chat does not render
turned into what it does, and cut to a length at a sentence or line end, never mid-word."""
import re

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
# where a cut may fall: after a sentence end followed by a space or a line break, or at a line end
_BOUNDARY = re.compile(r"(?<=[.!?…])(?=\s)|(?=\n)")
# the "3." or "-" that starts a list item is not a sentence end
_LIST_MARKER = re.compile(r"\s*(?:\d+[.)]|[-*•])")


def whatsapp_markdown(text: str) -> str:
    """**bold** → *bold* (WhatsApp's bold), [text](url) → text (url), `code` → code."""
    text = _BOLD.sub(r"*\1*", text)
    text = _LINK.sub(r"\1 (\2)", text)
    return _CODE.sub(r"\1", text)


def trim(text: str, max_chars: int, marker: str = "") -> str:
    """`text` if it fits in `max_chars`; otherwise the longest start of it that ends at a
    sentence or line end and fits together with `marker`, then `marker`. Without such an end,
    the cut falls between words."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    room = max(max_chars - len(marker), 1)
    cut = None
    for match in _BOUNDARY.finditer(text):
        if match.start() > room:
            break
        line = text[text.rfind("\n", 0, match.start()) + 1: match.start()]
        if line.strip() and not _LIST_MARKER.fullmatch(line):
            cut = match.start()
    if cut is None:
        cut = text.rfind(" ", 0, room + 1)
        if cut <= 0:
            cut = room
    return text[:cut].rstrip() + marker


def passage_for_chat(heading: str, text: str, max_chars: int, marker: str) -> str:
    """The section heading in bold on its own line, then the (trimmed) text."""
    body = whatsapp_markdown(text)
    if heading:
        head = f"*{heading}*\n"
        return head + trim(body, max(max_chars - len(head), 1), marker)
    return trim(body, max_chars, marker)
