"""The knowledge index on disk: build it from chunks, write it atomically, read it back.

A directory (`build/knowledge/` by default) holds:

- `meta.json`: format, embedder identity and dimension, analyzer, the settings the chunks
  and BM25 weights depend on, a digest of the articles, and the sha256 of every other file;
- `chunks.json`: path, title, heading and text of each chunk, in index order;
- `dense.faiss`: FAISS inner-product index of the L2-normalised chunk vectors (cosine);
- `lexical_*.npy` and `lexical_terms.json`: the BM25 postings over lemmas;
- `headings.json` and `headings.npy`: the distinct section headings and their vectors, to
  choose the section of an article whose heading matches the question.

The files are written to a temporary sibling directory which then replaces the old one, so a
reader sees the old index or the new one, never half of each (the sha256 list catches a copy
that was cut short). The same articles and settings give byte-identical files: nothing
time-dependent is written and every list is in a fixed order.
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import faiss
import numpy as np

from knowledge.chunking import Chunk, article_files, chunk_articles
from knowledge.embedder import Embedder, embed_in_batches
from knowledge.lemmas import Analyzer, analyzer
from knowledge.lexical import LexicalIndex
from helpdesk.config import KnowledgeConfig, LexicalConfig

FORMAT = "helpdesk-knowledge-index/2"
META = "meta.json"
CHUNKS = "chunks.json"
DENSE = "dense.faiss"
LEXICAL_TERMS = "lexical_terms.json"
LEXICAL_ARRAYS = ("offsets", "docs", "weights", "idf")
HEADINGS = "headings.json"
HEADING_VECTORS = "headings.npy"


class KnowledgeIndexError(RuntimeError):
    """The index cannot be used; the message says what to do."""


class IndexMissingError(KnowledgeIndexError):
    pass


class IndexMismatchError(KnowledgeIndexError):
    """The index was built by another embedder or analyzer than the one asked to query it."""


class IndexCorruptError(KnowledgeIndexError):
    pass


@dataclass(frozen=True)
class BuildReport:
    index_dir: Path
    articles: int
    chunks: int
    dimension: int
    terms: int
    seconds: float


@dataclass
class LoadedIndex:
    meta: Dict[str, Any]
    chunks: List[Chunk]
    dense: "faiss.Index"
    lexical: LexicalIndex
    headings: List[str]  # distinct section headings ("" for introductions), sorted
    heading_vectors: np.ndarray  # one unit row per heading (zeros for "")
    heading_of_chunk: np.ndarray  # int32: the heading number of each chunk


def articles_digest(articles_dir: Path) -> str:
    """sha256 over the articles' names and bytes, in order: what the index was built from."""
    digest = hashlib.sha256()
    for file in article_files(articles_dir):
        digest.update(file.relative_to(articles_dir).as_posix().encode("utf-8") + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_index(
    chunks: Sequence[Chunk],
    embedder: Embedder,
    text_analyzer: Analyzer,
    lexical_settings: LexicalConfig,
    index_dir: Path,
    source: Dict[str, Any],
    parameters: Dict[str, Any],
) -> BuildReport:
    """Embed and index `chunks` and write the index to `index_dir` (replacing it)."""
    started = time.perf_counter()
    if not chunks:
        raise KnowledgeIndexError("no chunks to index")
    texts = [chunk.indexed_text() for chunk in chunks]
    vectors = embed_in_batches(embedder, texts)
    dense = faiss.IndexFlatIP(embedder.dimension)
    dense.add(vectors)
    lexical = LexicalIndex.build([text_analyzer.terms(t) for t in texts], lexical_settings)
    headings = sorted({chunk.heading for chunk in chunks})
    heading_vectors = embed_in_batches(embedder, headings)
    heading_vectors[[i for i, h in enumerate(headings) if not h]] = 0.0

    files: Dict[str, bytes] = {
        CHUNKS: _json_bytes([asdict(chunk) for chunk in chunks]),
        DENSE: faiss.serialize_index(dense).tobytes(),
        LEXICAL_TERMS: _json_bytes(lexical.terms),
        HEADINGS: _json_bytes(headings),
        HEADING_VECTORS: _npy_bytes(heading_vectors.astype(np.float32)),
    }
    for name in LEXICAL_ARRAYS:
        files[f"lexical_{name}.npy"] = _npy_bytes(getattr(lexical, name))
    meta = {
        "format": FORMAT,
        "embedder": embedder.identity,
        "dimension": embedder.dimension,
        "analyzer": text_analyzer.identity,
        "parameters": parameters,
        "source": source,
        "counts": {
            "articles": len({chunk.path for chunk in chunks}),
            "chunks": len(chunks),
            "terms": len(lexical.terms),
        },
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    files[META] = _json_bytes(meta)
    _replace_directory(Path(index_dir), files)
    return BuildReport(
        index_dir=Path(index_dir),
        articles=meta["counts"]["articles"],
        chunks=len(chunks),
        dimension=embedder.dimension,
        terms=len(lexical.terms),
        seconds=time.perf_counter() - started,
    )


def _replace_directory(target: Path, files: Dict[str, bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
    try:
        for name, data in files.items():
            with open(staging / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.rename(target, retired / target.name)
            os.rename(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_index(
    settings: KnowledgeConfig,
    embedder: Embedder,
    index_dir: Optional[Path] = None,
    articles_dir: Optional[Path] = None,
) -> BuildReport:
    """Chunk the articles, embed them and write the index (the `make knowledge` step)."""
    started = time.perf_counter()
    articles_dir = Path(articles_dir or settings.articles_dir)
    chunks = chunk_articles(articles_dir, settings.chunking.max_chars)
    report = write_index(
        chunks,
        embedder,
        analyzer(settings.spacy_model),
        settings.lexical,
        Path(index_dir or settings.index_dir),
        source={"articles_sha256": articles_digest(articles_dir)},
        parameters=settings.index_parameters(),
    )
    return BuildReport(**{**asdict(report), "seconds": time.perf_counter() - started})


def read_index(index_dir: Path) -> LoadedIndex:
    """Read and verify an index directory; the errors say how to fix it."""
    index_dir = Path(index_dir)
    meta_path = index_dir / META
    if not meta_path.is_file():
        raise IndexMissingError(
            f"knowledge index not found at {index_dir}: build it with `make knowledge` "
            "(or `python -m knowledge.build`)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IndexCorruptError(f"{meta_path}: unreadable ({error}); rebuild with `make knowledge`") from error
    if meta.get("format") != FORMAT:
        raise IndexMismatchError(
            f"{meta_path}: index format {meta.get('format')!r}, this code reads {FORMAT!r}: "
            "rebuild with `make knowledge`"
        )
    data: Dict[str, bytes] = {}
    for name, expected in sorted((meta.get("files") or {}).items()):
        path = index_dir / name
        try:
            data[name] = path.read_bytes()
        except OSError as error:
            raise IndexCorruptError(f"{path}: {error}; rebuild with `make knowledge`") from error
        if hashlib.sha256(data[name]).hexdigest() != expected:
            raise IndexCorruptError(f"{path}: content does not match meta.json; rebuild with `make knowledge`")
    needed = {CHUNKS, DENSE, LEXICAL_TERMS, HEADINGS, HEADING_VECTORS,
              *(f"lexical_{n}.npy" for n in LEXICAL_ARRAYS)}
    if not needed <= set(data):
        raise IndexCorruptError(f"{meta_path}: files missing from the index; rebuild with `make knowledge`")

    import io

    chunks = [Chunk(**entry) for entry in json.loads(data[CHUNKS].decode("utf-8"))]
    dense = faiss.deserialize_index(np.frombuffer(data[DENSE], dtype=np.uint8))
    arrays = {n: np.load(io.BytesIO(data[f"lexical_{n}.npy"]), allow_pickle=False) for n in LEXICAL_ARRAYS}
    lexical = LexicalIndex(
        terms=json.loads(data[LEXICAL_TERMS].decode("utf-8")), chunk_count=len(chunks), **arrays
    )
    headings = json.loads(data[HEADINGS].decode("utf-8"))
    heading_vectors = np.load(io.BytesIO(data[HEADING_VECTORS]), allow_pickle=False)
    number = {heading: i for i, heading in enumerate(headings)}
    if (dense.ntotal != len(chunks) or dense.d != meta.get("dimension")
            or heading_vectors.shape != (len(headings), dense.d)
            or any(chunk.heading not in number for chunk in chunks)):
        raise IndexCorruptError(f"{index_dir}: vectors do not match the chunks; rebuild with `make knowledge`")
    return LoadedIndex(
        meta=meta, chunks=chunks, dense=dense, lexical=lexical, headings=headings,
        heading_vectors=heading_vectors,
        heading_of_chunk=np.array([number[chunk.heading] for chunk in chunks], dtype=np.int32),
    )
