"""The knowledge base's settings from `config/knowledge.yml`, checked on load so a broken
value is a `ConfigError` naming the file and the field, not a wrong answer later."""
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional

from helpdesk.config.reader import BETWEEN, number, read_yaml, section
from helpdesk.errors import ConfigError
from helpdesk.settings import PROJECT_DIR, load_settings

FUSIONS = ("blend", "rrf")


@dataclass(frozen=True)
class ChunkingConfig:
    max_chars: int


@dataclass(frozen=True)
class EmbedderConfig:
    kind: str
    dimension: int
    char_ngram_min: int
    char_ngram_max: int
    lemma_weight: float
    bigram_weight: float
    char_weight: float


@dataclass(frozen=True)
class LexicalConfig:
    k1: float
    b: float


@dataclass(frozen=True)
class RetrievalConfig:
    fusion: str
    lexical_weight: float
    dense_weight: float
    rrf_k: int
    candidates: int
    top_k: int
    min_score: float
    heading_weight: float
    faiss_threads: int


@dataclass(frozen=True)
class AnswerConfig:
    max_chars: int
    trimmed_marker: str
    llm_passages: int
    source_format: str
    sources_separator: str


@dataclass(frozen=True)
class KnowledgeConfig:
    articles_dir: Path
    index_dir: Path
    spacy_model: Path
    chunking: ChunkingConfig
    embedder: EmbedderConfig
    lexical: LexicalConfig
    retrieval: RetrievalConfig
    answer: AnswerConfig

    def index_parameters(self) -> Dict[str, Any]:
        """What an index depends on besides its articles: recorded in it, checked on load."""
        return {"chunking": asdict(self.chunking), "lexical": asdict(self.lexical)}


def _text(data: Dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _path(data: Dict[str, Any], key: str, where: str) -> Path:
    path = Path(_text(data, key, where))
    return path if path.is_absolute() else PROJECT_DIR / path


def load_knowledge_config(path: Optional[Path] = None) -> KnowledgeConfig:
    """Read `knowledge.yml` from the configured config directory (or `path`)."""
    path = path or load_settings().config_dir / "knowledge.yml"
    data = read_yaml(path)
    where = str(path)
    chunking = section(data, "chunking", where, optional=False)
    embedder = section(data, "embedder", where, optional=False)
    lexical = section(data, "lexical", where, optional=False)
    retrieval = section(data, "retrieval", where, optional=False)
    answer = section(data, "answer", where, optional=False)
    at_embedder, at_retrieval = f"{where}: embedder", f"{where}: retrieval"

    embedder_config = EmbedderConfig(
        kind=_text(embedder, "kind", f"{where}: embedder"),
        dimension=number(embedder, "dimension", at_embedder, whole=True,
                         minimum=16, maximum=1 << 16, style=BETWEEN),
        char_ngram_min=number(embedder, "char_ngram_min", at_embedder, whole=True,
                              minimum=1, maximum=10, style=BETWEEN),
        char_ngram_max=number(embedder, "char_ngram_max", at_embedder, whole=True,
                              minimum=1, maximum=10, style=BETWEEN),
        lemma_weight=number(embedder, "lemma_weight", at_embedder,
                            minimum=0, maximum=10, style=BETWEEN),
        bigram_weight=number(embedder, "bigram_weight", at_embedder,
                             minimum=0, maximum=10, style=BETWEEN),
        char_weight=number(embedder, "char_weight", at_embedder,
                           minimum=0, maximum=10, style=BETWEEN),
    )
    if embedder_config.char_ngram_min > embedder_config.char_ngram_max:
        raise ConfigError(f"{where}: embedder: 'char_ngram_min' is larger than 'char_ngram_max'")

    fusion = _text(retrieval, "fusion", f"{where}: retrieval")
    if fusion not in FUSIONS:
        raise ConfigError(f"{where}: retrieval: 'fusion' must be one of {FUSIONS}, got {fusion!r}")
    answer_where = f"{where}: answer"
    source_format = _text(answer, "source_format", answer_where)
    if "{title}" not in source_format:
        raise ConfigError(f"{answer_where}: 'source_format' must contain {{title}}")
    separator = answer.get("sources_separator")
    marker = answer.get("trimmed_marker")
    if not isinstance(separator, str) or not isinstance(marker, str):
        raise ConfigError(f"{answer_where}: 'sources_separator' and 'trimmed_marker' must be strings")

    weights = [retrieval.get("lexical_weight"), retrieval.get("dense_weight")]
    if all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights) and sum(weights) <= 0:
        raise ConfigError(f"{where}: retrieval: 'lexical_weight' and 'dense_weight' cannot both be 0")

    return KnowledgeConfig(
        articles_dir=_path(data, "articles_dir", where),
        index_dir=_path(data, "index_dir", where),
        spacy_model=_path(data, "spacy_model", where),
        chunking=ChunkingConfig(
            max_chars=number(chunking, "max_chars", f"{where}: chunking", whole=True,
                             minimum=200, maximum=100_000, style=BETWEEN)
        ),
        embedder=embedder_config,
        lexical=LexicalConfig(
            k1=number(lexical, "k1", f"{where}: lexical", minimum=0, maximum=10, style=BETWEEN),
            b=number(lexical, "b", f"{where}: lexical", minimum=0, maximum=1, style=BETWEEN),
        ),
        retrieval=RetrievalConfig(
            fusion=fusion,
            lexical_weight=number(retrieval, "lexical_weight", at_retrieval,
                                  minimum=0, maximum=1, style=BETWEEN),
            dense_weight=number(retrieval, "dense_weight", at_retrieval,
                                minimum=0, maximum=1, style=BETWEEN),
            rrf_k=number(retrieval, "rrf_k", at_retrieval, whole=True,
                         minimum=1, maximum=10_000, style=BETWEEN),
            candidates=number(retrieval, "candidates", at_retrieval, whole=True,
                              minimum=1, maximum=10_000, style=BETWEEN),
            top_k=number(retrieval, "top_k", at_retrieval, whole=True,
                         minimum=1, maximum=100, style=BETWEEN),
            min_score=number(retrieval, "min_score", at_retrieval,
                             minimum=0, maximum=1, style=BETWEEN),
            heading_weight=number(retrieval, "heading_weight", at_retrieval,
                                  minimum=0, maximum=10, style=BETWEEN),
            faiss_threads=number(retrieval, "faiss_threads", at_retrieval, whole=True,
                                 minimum=0, maximum=256, style=BETWEEN),
        ),
        answer=AnswerConfig(
            max_chars=number(answer, "max_chars", answer_where, whole=True,
                             minimum=50, maximum=4000, style=BETWEEN),
            trimmed_marker=marker,
            llm_passages=number(answer, "llm_passages", answer_where, whole=True,
                                minimum=1, maximum=20, style=BETWEEN),
            source_format=source_format,
            sources_separator=separator,
        ),
    )


@lru_cache(maxsize=None)
def _config_at(path: Path) -> KnowledgeConfig:
    return load_knowledge_config(path)


def knowledge_config() -> KnowledgeConfig:
    """config/knowledge.yml of the configured config directory, read once per process."""
    return _config_at(load_settings().config_dir / "knowledge.yml")
