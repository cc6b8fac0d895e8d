"""Text to vectors for the dense side of retrieval.

`Embedder` is what the index build and retrieval need: a `dimension`, an `identity` recorded
in the index (an index is only queried with the embedder that built it), and `embed(texts)`
returning one L2-normalised float32 row per text.

`HashedEmbedder` is the default: local and download-free. Each text becomes weighted
features (lemmas, pairs of neighbouring lemmas, character n-grams of the words) that are
hashed with a sign into a fixed number of dimensions. Feature families are normalised
separately and weighted, so a text with many long words does not drown its lemmas in
n-grams. Same text, same vector, in any process (the hash is blake2b, not Python's salted
`hash`).

Another embedder (an OpenAI-compatible embedding model, `helpdesk/llm/embed.py`) plugs in
by registering a factory with `register_embedder(kind, factory)`; `config/knowledge.yml`
`embedder.kind` chooses it.
"""
import hashlib
import math
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Dict, List, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from helpdesk.errors import ConfigError
from knowledge.lemmas import Analyzer, analyzer
from helpdesk.config import EmbedderConfig, KnowledgeConfig

HASHED_VERSION = "hashed-lemma-char/1"


@runtime_checkable
class Embedder(Protocol):
    dimension: int

    @property
    def identity(self) -> Dict[str, Any]:
        """JSON-able description of the embedder and every parameter its vectors depend on."""

    def embed(self, texts: List[str]) -> np.ndarray:
        """Shape (len(texts), dimension), float32, each row of norm 1 (or 0 for no features)."""


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of unit length; all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


@lru_cache(maxsize=1 << 18)
def _bucket(feature: str, dimension: int) -> Tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dimension, (1.0 if (value >> 63) & 1 else -1.0)


class HashedEmbedder:
    """Signed feature hashing of lemmas, lemma pairs and character n-grams."""

    def __init__(self, settings: EmbedderConfig, text_analyzer: Analyzer) -> None:
        self.settings = settings
        self.dimension = settings.dimension
        self._analyzer = text_analyzer

    @property
    def identity(self) -> Dict[str, Any]:
        s = self.settings
        return {
            "kind": "hashed",
            "version": HASHED_VERSION,
            "analyzer": self._analyzer.identity,
            "dimension": s.dimension,
            "char_ngrams": [s.char_ngram_min, s.char_ngram_max],
            "weights": {"lemma": s.lemma_weight, "bigram": s.bigram_weight, "char": s.char_weight},
        }

    def features(self, text: str) -> List[Tuple[str, Counter]]:
        """The feature families of a text with their counts (also what tests look at)."""
        analysis = self._analyzer.analyse(text)
        lemmas = Counter(f"l:{term}" for term in analysis.terms)
        bigrams = Counter(f"b:{a}_{b}" for a, b in zip(analysis.terms, analysis.terms[1:]))
        grams: Counter = Counter()
        low, high = self.settings.char_ngram_min, self.settings.char_ngram_max
        for word in analysis.words:
            padded = f"<{word}>"
            for size in range(low, high + 1):
                for start in range(0, max(len(padded) - size + 1, 0)):
                    grams[f"c:{padded[start:start + size]}"] += 1
        return [("lemma", lemmas), ("bigram", bigrams), ("char", grams)]

    def _family_vector(self, counts: Counter) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float64)
        for feature, count in counts.items():
            index, sign = _bucket(feature, self.dimension)
            vector[index] += sign * (1.0 + math.log(count))
        norm = np.linalg.norm(vector)
        return vector / norm if norm > 0 else vector

    def embed(self, texts: List[str]) -> np.ndarray:
        weights = {
            "lemma": self.settings.lemma_weight,
            "bigram": self.settings.bigram_weight,
            "char": self.settings.char_weight,
        }
        rows = np.zeros((len(texts), self.dimension), dtype=np.float64)
        for row, text in enumerate(texts):
            for family, counts in self.features(text):
                if weights[family] and counts:
                    rows[row] += weights[family] * self._family_vector(counts)
        return normalise_rows(rows)


EmbedderFactory = Callable[[KnowledgeConfig], Embedder]
_FACTORIES: Dict[str, EmbedderFactory] = {}


def register_embedder(kind: str, factory: EmbedderFactory) -> None:
    """Make `embedder.kind: <kind>` in config/knowledge.yml build an embedder with `factory`."""
    _FACTORIES[kind] = factory


def _hashed(settings: KnowledgeConfig) -> Embedder:
    return HashedEmbedder(settings.embedder, analyzer(settings.spacy_model))


register_embedder("hashed", _hashed)


def make_embedder(settings: KnowledgeConfig) -> Embedder:
    """The embedder `config/knowledge.yml` names."""
    factory = _FACTORIES.get(settings.embedder.kind)
    if factory is None:
        raise ConfigError(
            f"knowledge.yml: embedder kind {settings.embedder.kind!r} is not available "
            f"(known: {', '.join(sorted(_FACTORIES))})"
        )
    return factory(settings)


def embed_in_batches(embedder: Embedder, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    """Embed many texts (remote embedders take batches); checks what the embedder returns."""
    parts: List[np.ndarray] = []
    for start in range(0, len(texts), batch):
        part = np.asarray(embedder.embed(list(texts[start:start + batch])), dtype=np.float32)
        expected = (min(batch, len(texts) - start), embedder.dimension)
        if part.shape != expected:
            raise ValueError(f"embedder returned shape {part.shape}, expected {expected}")
        parts.append(part)
    if not parts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return normalise_rows(np.vstack(parts))


def identities_match(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return _canonical(a) == _canonical(b)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value

