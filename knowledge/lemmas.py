"""Words and lemmas of Spanish text, as both retrieval methods see them.

The lookup lemmatizer of the project's spaCy pipeline turns "funcionó/funcionan" into
"funcionar"; lemmas are then folded (lower case, no accents, ñ as n) so "contraseña",
"contrasena" and "CONTRASEÑA" meet. The pipeline is loaded once per process and shared.
"""
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List

from helpdesk.text import fold

# Recorded in the index: a change to how text is analysed needs a rebuild.
ANALYZER_VERSION = "spacy-lookup-lemmas-folded/2"


class AnalyzerUnavailable(RuntimeError):
    """The spaCy pipeline is missing: `make setup` builds it."""


@dataclass(frozen=True)
class Analysis:
    """The content words of a text (stop words left out): `words` as written (folded),
    `terms` their folded lemmas."""

    words: List[str]
    terms: List[str]


def _fold(text: str) -> str:
    """The project's folding, and ñ as n: staff without ñ on the keyboard write
    "contrasena" or "contrasenia", and no two words of the articles differ only there."""
    return fold(text).replace("ñ", "n")


def _kept(piece: str) -> bool:
    """Single letters are chat shorthand ("q", "k") except the fiscal closings X and Z."""
    return len(piece) > 1 or piece.isdigit() or piece in ("x", "z")


class Analyzer:
    def __init__(self, spacy_model: Path) -> None:
        import spacy

        if not (Path(spacy_model) / "meta.json").is_file():
            raise AnalyzerUnavailable(
                f"spaCy pipeline not found at {spacy_model}: run `make setup` to build it"
            )
        self.spacy_model = Path(spacy_model)
        self._nlp = spacy.load(spacy_model)
        # spaCy's tokenizer keeps state in caches; one caller at a time (calls take ~30 µs)
        self._lock = threading.Lock()

    def analyse(self, text: str) -> Analysis:
        with self._lock:
            doc = self._nlp(text.lower())
            tokens = [(token.text, token.lemma_ or token.text, token.is_stop) for token in doc]
        words, terms = [], []
        for surface, lemma, is_stop in tokens:
            if is_stop:
                continue
            words.extend(piece for piece in _fold(surface).split() if _kept(piece))
            terms.extend(piece for piece in _fold(lemma).split() if _kept(piece))
        return Analysis(words=words, terms=terms)

    def terms(self, text: str) -> List[str]:
        return self.analyse(text).terms


@lru_cache(maxsize=None)
def analyzer(spacy_model: Path) -> Analyzer:
    """The process-wide analyzer for a pipeline path (spaCy takes about a second to load)."""
    return Analyzer(Path(spacy_model))
