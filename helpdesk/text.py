"""Text normalisation used to compare what staff write with designer-edited phrases."""
import re
import unicodedata

_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w\s#-]", re.UNICODE)


def fold(text: str) -> str:
    """Lower-case, strip accents (ñ stays ñ), turn punctuation into spaces, collapse spaces."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    kept = []
    for index, char in enumerate(decomposed):
        if unicodedata.category(char) == "Mn":
            # keep the tilde of ñ, drop every other combining mark
            if char == "\u0303" and index > 0 and decomposed[index - 1] == "n":
                kept.append(char)
            continue
        kept.append(char)
    folded = unicodedata.normalize("NFC", "".join(kept))
    folded = _NON_WORD.sub(" ", folded)
    return _SPACES.sub(" ", folded).strip()


def ascii_digits(text: str) -> str:
    """Every decimal digit of any script as its ASCII digit, everything else kept:
    full-width "５４９" and Arabic-Indic "٥٤٩" become "549", so a number has one spelling
    wherever a key or an id is built from it."""
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)


def only_digits(text: str) -> str:
    """The decimal digits of the text (any script) as ASCII digits, nothing else:
    "+54 9 11 2233-4455" and "＋５４ ９ １１…" both give "5491122334455"."""
    return "".join(str(unicodedata.decimal(char)) for char in text if char.isdecimal())


def contains_phrase(folded_text: str, folded_phrase: str) -> bool:
    """Whole-word containment of an already folded phrase in already folded text."""
    if not folded_phrase:
        return False
    return re.search(rf"(?<!\w){re.escape(folded_phrase)}(?!\w)", folded_text) is not None


def word_count(text: str) -> int:
    return len(fold(text).split())
