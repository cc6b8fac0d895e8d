"""Hybrid retrieval: BM25 on lemmas and dense FAISS search, fused, with a threshold.

Both methods score the question; their candidates are pooled and every pooled chunk gets
both scores (the dense one straight from the stored vector), so nothing depends on which
method happened to list it. Each passage carries:

- `lexical`: BM25 normalised to 0..1 (see `knowledge.lexical`);
- `dense`: cosine of the question and chunk vectors (negatives count as 0);
- `relevance`: their weighted mean, the absolute measure held against `min_score`;
- `score`: what ranks the articles: with `fusion: blend` the same weighted mean but with
  BM25 not capped at 1 (so chunks matching every word are still ordered), with `fusion: rrf`
  the reciprocal rank fusion score;
- `heading_match`: how well the section heading matches the question. Articles come in the
  order of their best `score`; within an article, passages are ordered by `relevance +
  heading_weight × heading_match`, so the section titled after the question ("Cómo cambiar
  el rollo") comes before the article's summary, which mentions every subject.

A `KnowledgeBase` is loaded once per process and is read-only afterwards, so it can be
searched from several threads (the action server calls it from a worker thread).
"""
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import faiss
import numpy as np

from knowledge.chunking import Chunk
from knowledge.embedder import Embedder, identities_match, make_embedder
from knowledge.index import IndexMismatchError, LoadedIndex, read_index
from knowledge.lemmas import Analyzer, analyzer
from helpdesk.config import KnowledgeConfig, RetrievalConfig, load_knowledge_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Passage:
    path: str
    title: str
    heading: str
    text: str
    score: float
    relevance: float
    lexical: float
    dense: float
    heading_match: float  # how well the section heading matches the question (0..1)
    lexical_rank: Optional[int]  # 1-based rank among the lexical candidates, None if not one
    dense_rank: Optional[int]

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


class KnowledgeBase:
    def __init__(
        self,
        index: LoadedIndex,
        embedder: Embedder,
        text_analyzer: Analyzer,
        settings: RetrievalConfig,
    ) -> None:
        meta = index.meta
        if not identities_match(meta.get("analyzer") or {}, text_analyzer.identity):
            raise IndexMismatchError(
                f"the index was built with analyzer {meta.get('analyzer')}, this process uses "
                f"{text_analyzer.identity} (another lemma table, stop words or analyzer version): "
                "rebuild it with `make knowledge`"
            )
        if meta.get("dimension") != embedder.dimension or not identities_match(
            meta.get("embedder") or {}, embedder.identity
        ):
            raise IndexMismatchError(
                f"the index was built with embedder {meta.get('embedder')} "
                f"but is queried with {embedder.identity}: rebuild it with `make knowledge` "
                "after changing the embedder"
            )
        if settings.faiss_threads:
            # process-wide; FAISS serves only this knowledge base in the bot's processes
            faiss.omp_set_num_threads(settings.faiss_threads)
        self.index = index
        self.embedder = embedder
        self.analyzer = text_analyzer
        self.settings = settings
        self.chunks: List[Chunk] = index.chunks
        self._heading_terms = [frozenset(text_analyzer.terms(h)) if h else frozenset()
                               for h in index.headings]

    @classmethod
    def load(
        cls,
        settings: Optional[KnowledgeConfig] = None,
        embedder: Optional[Embedder] = None,
        index_dir: Optional[Path] = None,
    ) -> "KnowledgeBase":
        """The index of `settings` (config/knowledge.yml by default), checked against the
        embedder that will embed the questions."""
        settings = settings or load_knowledge_config()
        index = read_index(Path(index_dir or settings.index_dir))
        knowledge_base = cls(
            index,
            embedder or make_embedder(settings),
            analyzer(settings.spacy_model),
            settings.retrieval,
        )
        stale = {k: v for k, v in settings.index_parameters().items()
                 if index.meta.get("parameters", {}).get(k) != v}
        if stale:
            logger.warning(
                "knowledge index at %s was built with other %s settings than config/knowledge.yml: "
                "run `make knowledge`", index_dir or settings.index_dir, ", ".join(sorted(stale)),
            )
        return knowledge_base

    def __len__(self) -> int:
        return len(self.chunks)

    def search(
        self,
        question: str,
        top_k: Optional[int] = None,
        min_score: Optional[float] = None,
        per_article: bool = False,
    ) -> List[Passage]:
        """The best passages for `question`, best first, none below the threshold.

        `per_article` keeps only the best passage of each article (distinct sources).
        `min_score` overrides the configured threshold (0 returns the full ranking).
        """
        s = self.settings
        top_k = s.top_k if top_k is None else top_k
        threshold = s.min_score if min_score is None else min_score
        count = len(self.chunks)
        if not question.strip() or top_k <= 0:
            return []
        terms = self.analyzer.terms(question)
        query = self.embedder.embed([question]).astype(np.float32)
        if not np.any(query):
            dense_ids = np.zeros(0, dtype=np.int64)
        else:
            _, found = self.index.dense.search(query, min(s.candidates, count))
            dense_ids = found[0][found[0] >= 0]

        # ranked by the raw BM25 score; the normalised one (capped at 1) is for relevance
        lexical_raw = self.index.lexical.scores(terms)
        reference = self.index.lexical.reference(terms)
        lexical_uncapped = lexical_raw / reference if reference > 0 else lexical_raw
        lexical_all = np.minimum(lexical_uncapped, 1.0)
        pool = min(s.candidates, count)
        lexical_ids = np.argpartition(-lexical_raw, pool - 1)[:pool] if pool < count else np.arange(count)
        lexical_ids = lexical_ids[lexical_raw[lexical_ids] > 0]
        lexical_ids = lexical_ids[np.lexsort((lexical_ids, -lexical_raw[lexical_ids]))]

        candidates = np.unique(np.concatenate([dense_ids.astype(np.int64), lexical_ids.astype(np.int64)]))
        if candidates.size == 0:
            return []
        vectors = self.index.dense.reconstruct_batch(candidates)
        dense_scores = np.clip(vectors @ query[0], 0.0, 1.0)
        lexical_scores = lexical_all[candidates]
        weight_sum = s.lexical_weight + s.dense_weight
        relevance = (s.lexical_weight * lexical_scores + s.dense_weight * dense_scores) / weight_sum

        lexical_rank = {int(c): r + 1 for r, c in enumerate(lexical_ids)}
        dense_rank = {int(c): r + 1 for r, c in enumerate(dense_ids)}
        if s.fusion == "rrf":
            score = np.array([
                (s.lexical_weight / (s.rrf_k + lexical_rank[int(c)]) if int(c) in lexical_rank else 0.0)
                + (s.dense_weight / (s.rrf_k + dense_rank[int(c)]) if int(c) in dense_rank else 0.0)
                for c in candidates
            ])
        else:
            # as relevance, but BM25 above the reference still counts, so chunks that match
            # every question word are not tied
            score = (s.lexical_weight * lexical_uncapped[candidates] + s.dense_weight * dense_scores) / weight_sum

        heading_match = self._heading_match(terms, reference, query[0], candidates)
        section_key = relevance + s.heading_weight * heading_match

        # articles in the order of their best passage (fused score, then relevance, then index
        # order: repeatable); within an article, sections whose heading matches the question
        # first, so the passage quoted is the section that answers rather than the summary
        kept = np.flatnonzero(relevance >= threshold)
        if kept.size == 0:
            return []
        paths = [self.chunks[int(candidates[i])].path for i in kept]
        article_rank: Dict[str, int] = {}
        for position in np.lexsort((candidates[kept], -relevance[kept], -score[kept])):
            article_rank.setdefault(paths[position], len(article_rank))
        order = sorted(range(kept.size), key=lambda i: (
            article_rank[paths[i]], -section_key[kept[i]], -score[kept[i]], int(candidates[kept[i]])))

        passages: List[Passage] = []
        seen_articles = set()
        for i in order:
            position = int(kept[i])
            number = int(candidates[position])
            chunk = self.chunks[number]
            if per_article:
                if chunk.path in seen_articles:
                    continue
                seen_articles.add(chunk.path)
            passages.append(Passage(
                path=chunk.path,
                title=chunk.title,
                heading=chunk.heading,
                text=chunk.text,
                score=float(score[position]),
                relevance=float(relevance[position]),
                lexical=float(lexical_scores[position]),
                dense=float(dense_scores[position]),
                heading_match=float(heading_match[position]),
                lexical_rank=lexical_rank.get(number),
                dense_rank=dense_rank.get(number),
            ))
            if len(passages) >= top_k:
                break
        return passages

    def _heading_match(self, terms: List[str], reference: float, query: np.ndarray,
                       candidates: np.ndarray) -> np.ndarray:
        """How well each candidate's section heading matches the question (0..1): the share
        of the question's lemmas (weighted by idf) in the heading, and the cosine of the
        question and heading vectors, weighted as the two retrieval methods."""
        s = self.settings
        lexical = self.index.lexical
        heading_numbers = self.index.heading_of_chunk[candidates]
        wanted = set(terms)
        overlap = np.zeros(len(candidates), dtype=np.float32)
        if reference > 0:
            for i, number in enumerate(heading_numbers):
                shared = wanted & self._heading_terms[number]
                if shared:
                    overlap[i] = sum(lexical.idf_of(t) for t in shared) / reference
        cosine = np.clip(self.index.heading_vectors[heading_numbers] @ query, 0.0, 1.0)
        return (s.lexical_weight * overlap + s.dense_weight * cosine) / (s.lexical_weight + s.dense_weight)

    def with_settings(self, settings: RetrievalConfig) -> "KnowledgeBase":
        """The same loaded index searched with other retrieval settings (evaluation)."""
        clone = object.__new__(KnowledgeBase)
        clone.__dict__.update(self.__dict__)
        clone.settings = settings
        return clone


_shared: Dict[KnowledgeConfig, KnowledgeBase] = {}
_shared_lock = threading.Lock()


def shared_knowledge_base(settings: Optional[KnowledgeConfig] = None) -> KnowledgeBase:
    """The process-wide knowledge base of `settings`, loaded on first use.

    A failed load is not remembered: once `make knowledge` has built the index, the next
    question loads it without a restart. A rebuilt index is picked up by a restart."""
    settings = settings or load_knowledge_config()
    with _shared_lock:
        if settings not in _shared:
            _shared[settings] = KnowledgeBase.load(settings)
        return _shared[settings]


def forget_shared_knowledge_bases() -> None:
    """Drop the loaded knowledge bases (tests, or after a rebuild in the same process)."""
    with _shared_lock:
        _shared.clear()
