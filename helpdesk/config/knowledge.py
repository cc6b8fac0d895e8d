"""The knowledge base's settings from `config/knowledge.yml`, checked on load so a broken
value is a `ConfigError` naming the file and the field, not a wrong answer later."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from helpdesk.config.business import read_yaml
from helpdesk.errors import ConfigError
from helpdesk.settings import PROJECT_DIR, load_settings

FUSIONS = ("blend", "rrf")


@dataclass(frozen=True)
class ChunkingSettings:
    max_chars: int


@dataclass(frozen=True)
class EmbedderSettings:
    kind: str
    dimension: int
    char_ngram_min: int
    char_ngram_max: int
    lemma_weight: float
    bigram_weight: float
    char_weight: float


@dataclass(frozen=True)
class LexicalSettings:
    k1: float
    b: float


@dataclass(frozen=True)
class RetrievalSettings:
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
class AnswerSettings:
    max_chars: int
    trimmed_marker: str
    llm_passages: int
    source_format: str
    sources_separator: str


@dataclass(frozen=True)
class KnowledgeSettings:
    articles_dir: Path
    index_dir: Path
    spacy_model: Path
    chunking: ChunkingSettings
    embedder: EmbedderSettings
    lexical: LexicalSettings
    retrieval: RetrievalSettings
    answer: AnswerSettings

    def index_parameters(self) -> Dict[str, Any]:
        """What an index depends on besides its articles: recorded in it, checked on load."""
        return {"chunking": asdict(self.chunking), "lexical": asdict(self.lexical)}


def _section(data: Dict[str, Any], key: str, where: str) -> Dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping")
    return value


def _number(data: Dict[str, Any], key: str, where: str, kind: type = float,
            minimum: Optional[float] = None, maximum: Optional[float] = None) -> Any:
    if key not in data:
        raise ConfigError(f"{where}: missing '{key}'")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        kind is int and not isinstance(value, int)
    ):
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ConfigError(f"{where}: '{key}' must be between {minimum} and {maximum}, got {value!r}")
    return kind(value)


def _text(data: Dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _path(data: Dict[str, Any], key: str, where: str) -> Path:
    path = Path(_text(data, key, where))
    return path if path.is_absolute() else PROJECT_DIR / path


def load_knowledge_settings(path: Optional[Path] = None) -> KnowledgeSettings:
    """Read `knowledge.yml` from the configured config directory (or `path`)."""
    path = path or load_settings().config_dir / "knowledge.yml"
    data = read_yaml(path)
    where = str(path)
    chunking = _section(data, "chunking", where)
    embedder = _section(data, "embedder", where)
    lexical = _section(data, "lexical", where)
    retrieval = _section(data, "retrieval", where)
    answer = _section(data, "answer", where)

    embedder_settings = EmbedderSettings(
        kind=_text(embedder, "kind", f"{where}: embedder"),
        dimension=_number(embedder, "dimension", f"{where}: embedder", int, 16, 1 << 16),
        char_ngram_min=_number(embedder, "char_ngram_min", f"{where}: embedder", int, 1, 10),
        char_ngram_max=_number(embedder, "char_ngram_max", f"{where}: embedder", int, 1, 10),
        lemma_weight=_number(embedder, "lemma_weight", f"{where}: embedder", float, 0, 10),
        bigram_weight=_number(embedder, "bigram_weight", f"{where}: embedder", float, 0, 10),
        char_weight=_number(embedder, "char_weight", f"{where}: embedder", float, 0, 10),
    )
    if embedder_settings.char_ngram_min > embedder_settings.char_ngram_max:
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

    return KnowledgeSettings(
        articles_dir=_path(data, "articles_dir", where),
        index_dir=_path(data, "index_dir", where),
        spacy_model=_path(data, "spacy_model", where),
        chunking=ChunkingSettings(
            max_chars=_number(chunking, "max_chars", f"{where}: chunking", int, 200, 100_000)
        ),
        embedder=embedder_settings,
        lexical=LexicalSettings(
            k1=_number(lexical, "k1", f"{where}: lexical", float, 0, 10),
            b=_number(lexical, "b", f"{where}: lexical", float, 0, 1),
        ),
        retrieval=RetrievalSettings(
            fusion=fusion,
            lexical_weight=_number(retrieval, "lexical_weight", f"{where}: retrieval", float, 0, 1),
            dense_weight=_number(retrieval, "dense_weight", f"{where}: retrieval", float, 0, 1),
            rrf_k=_number(retrieval, "rrf_k", f"{where}: retrieval", int, 1, 10_000),
            candidates=_number(retrieval, "candidates", f"{where}: retrieval", int, 1, 10_000),
            top_k=_number(retrieval, "top_k", f"{where}: retrieval", int, 1, 100),
            min_score=_number(retrieval, "min_score", f"{where}: retrieval", float, 0, 1),
            heading_weight=_number(retrieval, "heading_weight", f"{where}: retrieval", float, 0, 10),
            faiss_threads=_number(retrieval, "faiss_threads", f"{where}: retrieval", int, 0, 256),
        ),
        answer=AnswerSettings(
            max_chars=_number(answer, "max_chars", answer_where, int, 50, 4000),
            trimmed_marker=marker,
            llm_passages=_number(answer, "llm_passages", answer_where, int, 1, 20),
            source_format=source_format,
            sources_separator=separator,
        ),
    )
