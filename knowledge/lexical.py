"""BM25 over lemmas: the lexical half of retrieval.

The document side of BM25 (term frequency saturated by `k1`, length normalised by `b`) is
computed once at build time, so a query only adds `idf × weight` for each posting of each of
its terms: a few numpy operations, whatever the number of chunks.

Scores are also given on a 0..1 scale (`normalised`) so they can be blended with the dense
cosine and held against a threshold: the BM25 score divided by what a chunk of average
length containing every query term once would get. Words of the query that no article uses
count in that reference too (with the largest idf), so a question about football that shares
one word with the articles is not a full match.
"""
import math
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from helpdesk.config import LexicalConfig


@dataclass
class LexicalIndex:
    terms: List[str]  # sorted vocabulary
    offsets: np.ndarray  # int64, len(terms) + 1: postings of term i are [offsets[i], offsets[i+1])
    docs: np.ndarray  # int32 chunk numbers
    weights: np.ndarray  # float32 BM25 document-side weight of the term in that chunk
    idf: np.ndarray  # float32 per term
    chunk_count: int

    def __post_init__(self) -> None:
        self._term_ids: Dict[str, int] = {term: i for i, term in enumerate(self.terms)}
        self.unknown_idf = _idf(self.chunk_count, 0)

    @classmethod
    def build(cls, documents: Sequence[Sequence[str]], settings: LexicalConfig) -> "LexicalIndex":
        """`documents`: the terms (lemmas) of each chunk, in chunk order."""
        count = len(documents)
        lengths = np.array([len(d) for d in documents], dtype=np.float64)
        average = float(lengths.mean()) if count and lengths.sum() else 1.0
        postings: Dict[str, List[tuple]] = {}
        for number, terms in enumerate(documents):
            norm = settings.k1 * (1.0 - settings.b + settings.b * lengths[number] / average)
            for term, tf in sorted(Counter(terms).items()):
                weight = tf * (settings.k1 + 1.0) / (tf + norm)
                postings.setdefault(term, []).append((number, weight))
        vocabulary = sorted(postings)
        offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        docs: List[int] = []
        weights: List[float] = []
        idf = np.zeros(len(vocabulary), dtype=np.float32)
        for i, term in enumerate(vocabulary):
            entries = postings[term]
            docs.extend(n for n, _ in entries)
            weights.extend(w for _, w in entries)
            offsets[i + 1] = len(docs)
            idf[i] = _idf(count, len(entries))
        return cls(
            terms=vocabulary,
            offsets=offsets,
            docs=np.array(docs, dtype=np.int32),
            weights=np.array(weights, dtype=np.float32),
            idf=idf,
            chunk_count=count,
        )

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """Raw BM25 score of every chunk (float32, one per chunk)."""
        scores = np.zeros(self.chunk_count, dtype=np.float32)
        for term in set(query_terms):
            index = self._term_ids.get(term)
            if index is None:
                continue
            start, end = self.offsets[index], self.offsets[index + 1]
            # a term appears once per chunk in its postings: plain fancy-index add is exact
            scores[self.docs[start:end]] += self.idf[index] * self.weights[start:end]
        return scores

    def reference(self, query_terms: Sequence[str]) -> float:
        """The score of an average-length chunk holding each query term once."""
        total = 0.0
        for term in set(query_terms):
            index = self._term_ids.get(term)
            total += float(self.idf[index]) if index is not None else self.unknown_idf
        return total

    def normalised(self, query_terms: Sequence[str]) -> np.ndarray:
        """Scores on 0..1 (see the module docstring)."""
        reference = self.reference(query_terms)
        if reference <= 0:
            return np.zeros(self.chunk_count, dtype=np.float32)
        return np.minimum(self.scores(query_terms) / reference, 1.0).astype(np.float32)

    def idf_of(self, term: str) -> float:
        index = self._term_ids.get(term)
        return float(self.idf[index]) if index is not None else self.unknown_idf

    def known(self, term: str) -> bool:
        return term in self._term_ids


def _idf(count: int, df: int) -> float:
    return math.log(1.0 + (count - df + 0.5) / (df + 0.5))
