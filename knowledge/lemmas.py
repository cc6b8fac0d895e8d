"""Words and lemmas of Spanish text, as both retrieval methods see them.

The lemmas are those of the project's spaCy pipeline (`build/spacy/es_lookup`: blank `es` +
the lookup lemmatizer): its lemma table, keyed by spaCy's 64-bit string hash, is read from
the pipeline's `lemmatizer/lookups/lookups.bin` once per process, and the stop words are
spaCy's Spanish list. spaCy itself is not imported: importing it imports TensorFlow (through
thinc), which would add half a gigabyte and seconds to the action server for a table lookup.
`tests/knowledge/test_lemmas.py` checks that the lemmas are spaCy's own.

Text is lower-cased and split into words (`\\w+`); stop words are left out; each word is
replaced by its lemma from the table (itself when absent), then folded (no accents, ñ as n)
so "contraseña", "contrasena" and "CONTRASEÑAS" meet.
"""
import ast
import hashlib
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, FrozenSet, List

from helpdesk.text import fold

# Recorded in the index with the digests of the lemma table and the stop words: a change to
# how text is analysed needs a rebuild.
ANALYZER_VERSION = "spacy-lookup-lemmas/3"
LEMMA_TABLE = Path("lemmatizer") / "lookups" / "lookups.bin"
_WORD = re.compile(r"\w+", re.UNICODE)
_MASK = (1 << 64) - 1
_M = 0xC6A4A7935BD1E995


class AnalyzerUnavailable(RuntimeError):
    """The spaCy pipeline (its lemma table) is missing: `make setup` builds it."""


@dataclass(frozen=True)
class Analysis:
    """The content words of a text (stop words left out): `words` as written (folded),
    `terms` their folded lemmas."""

    words: List[str]
    terms: List[str]


def spacy_hash(text: str) -> int:
    """spaCy's string id: MurmurHash64A of the UTF-8 bytes with seed 1 (`hash_string`)."""
    data = text.encode("utf-8")
    h = (1 ^ (len(data) * _M)) & _MASK
    whole = len(data) // 8 * 8
    for start in range(0, whole, 8):
        k = (int.from_bytes(data[start:start + 8], "little") * _M) & _MASK
        k ^= k >> 47
        h ^= (k * _M) & _MASK
        h = (h * _M) & _MASK
    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * _M) & _MASK
    h ^= h >> 47
    h = (h * _M) & _MASK
    return h ^ (h >> 47)


def spacy_stop_words(language: str = "es") -> FrozenSet[str]:
    """spaCy's stop words for `language`, read from its `lang/<language>/stop_words.py` as
    data (a literal string split on spaces), without importing spaCy."""
    spec = importlib.util.find_spec("spacy")
    if spec is None or not spec.submodule_search_locations:
        raise AnalyzerUnavailable("spaCy is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "lang" / language / "stop_words.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError) as error:
        raise AnalyzerUnavailable(f"{path}: {error}") from error
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "STOP_WORDS" for t in node.targets
        ):
            for part in ast.walk(node.value):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    return frozenset(part.value.split())
    raise AnalyzerUnavailable(f"{path}: no STOP_WORDS string found")


def _fold(text: str) -> str:
    """The project's folding, and ñ as n: staff without ñ on the keyboard write
    "contrasena" or "contrasenia", and no two words of the articles differ only there."""
    return fold(text).replace("ñ", "n")


def _kept(piece: str) -> bool:
    """Single letters are chat shorthand ("q", "k") except the fiscal closings X and Z."""
    return len(piece) > 1 or piece.isdigit() or piece in ("x", "z")


class Analyzer:
    def __init__(self, spacy_model: Path) -> None:
        import srsly  # spaCy's serialisation library; light, it does not import thinc

        table_path = Path(spacy_model) / LEMMA_TABLE
        if not table_path.is_file():
            raise AnalyzerUnavailable(
                f"spaCy lemma table not found at {table_path}: run `make setup` to build the pipeline"
            )
        raw = table_path.read_bytes()
        try:
            self._lemmas: Dict[int, str] = srsly.msgpack_loads(raw)["lemma_lookup"]
        except Exception as error:  # noqa: BLE001 - any decoding problem means the same thing
            raise AnalyzerUnavailable(f"{table_path}: not a spaCy lookups table ({error})") from error
        self._stop_words = spacy_stop_words("es")
        self.spacy_model = Path(spacy_model)
        self.identity: Dict[str, Any] = {
            "version": ANALYZER_VERSION,
            "lemma_table_sha256": hashlib.sha256(raw).hexdigest(),
            "stop_words_sha256": hashlib.sha256(" ".join(sorted(self._stop_words)).encode("utf-8")).hexdigest(),
        }

    def lemma(self, word: str) -> str:
        """The lemma of one lower-case word, as spaCy's lookup lemmatizer gives it."""
        return self._lemmas.get(spacy_hash(word), word)

    def is_stop(self, word: str) -> bool:
        return word in self._stop_words

    def analyse(self, text: str) -> Analysis:
        words, terms = [], []
        for word in _WORD.findall(text.lower()):
            if word in self._stop_words:
                continue
            words.extend(piece for piece in _fold(word).split() if _kept(piece))
            terms.extend(piece for piece in _fold(self.lemma(word)).split() if _kept(piece))
        return Analysis(words=words, terms=terms)

    def terms(self, text: str) -> List[str]:
        return self.analyse(text).terms


@lru_cache(maxsize=None)
def analyzer(spacy_model: Path) -> Analyzer:
    """The process-wide analyzer for a pipeline path (the table takes ~0.3 s to load)."""
    return Analyzer(Path(spacy_model))
