"""`config/llm.yml`: timeouts, retries, budgets, prices, cache lifetimes and per-use limits of
the LLM client. Designers and operators tune these without touching code; a broken file
raises `ConfigError` naming the file and the field.
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from helpdesk.config.business import read_yaml
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings

USES = ("knowledge_answer", "screenshot", "intent", "subject", "transcription", "embedding")
STRUCTURED_MODES = ("json_schema", "json_object", "none")


@dataclass(frozen=True)
class UseSettings:
    timeout_seconds: float
    deadline_seconds: float
    max_output_tokens: Optional[int]
    temperature: Optional[float]
    cache_ttl_seconds: int


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens, or per audio minute for transcription models."""

    input: float = 0.0
    output: float = 0.0
    cached_input: Optional[float] = None
    per_audio_minute: Optional[float] = None


@dataclass(frozen=True)
class Budgets:
    conversation_tokens: int
    conversation_window_hours: float
    max_context_tokens: int
    monthly_usd: float
    monthly_warning_fraction: float
    ticket_cost_alert_usd: float


@dataclass(frozen=True)
class NluFallbackSettings:
    min_confidence: float
    examples_per_intent: int
    require_entities_in_text: bool


@dataclass(frozen=True)
class KnowledgeSettings:
    max_passages: int
    max_passage_chars: int


@dataclass(frozen=True)
class ScreenshotSettings:
    max_image_bytes: int
    mime_types: Tuple[str, ...]
    detail: str
    image_token_estimate: int


@dataclass(frozen=True)
class TranscriptionSettings:
    language: Optional[str]
    max_audio_bytes: int
    assumed_audio_bytes_per_second: float


@dataclass(frozen=True)
class EmbeddingSettings:
    batch_size: int
    dimensions: Optional[int]


@dataclass(frozen=True)
class LlmConfig:
    default_base_url: str
    connect_timeout_seconds: float
    retries: int
    backoff_initial_seconds: float
    backoff_max_seconds: float
    structured_output: str
    structured_output_by_model: Dict[str, str]
    uses: Dict[str, UseSettings]
    budgets: Budgets
    prices: Dict[str, Price]
    nlu_fallback: NluFallbackSettings
    knowledge: KnowledgeSettings
    screenshot: ScreenshotSettings
    transcription: TranscriptionSettings
    embedding: EmbeddingSettings

    def use(self, name: str) -> UseSettings:
        return self.uses[name]

    def price_for(self, model: str) -> Price:
        """The model's price; "openrouter-style/prefixed" names also match without prefix."""
        for candidate in (model, model.rsplit("/", 1)[-1]):
            if candidate in self.prices:
                return self.prices[candidate]
        return self.prices.get("default", Price())

    def is_priced(self, model: str) -> bool:
        """False when the model's calls would count as free (no entry and no default)."""
        return "default" in self.prices or any(
            candidate in self.prices for candidate in (model, model.rsplit("/", 1)[-1]))

    def structured_mode(self, model: str) -> str:
        return self.structured_output_by_model.get(model, self.structured_output)


# --- checked reading ------------------------------------------------------------------


def _section(data: Dict[str, Any], key: str, where: str) -> Dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping")
    return value


def _number(data: Dict[str, Any], key: str, where: str, default: Any = None, *,
            integer: bool = False, minimum: float = 0, maximum: Optional[float] = None,
            optional: bool = False) -> Any:
    value = data.get(key, default)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: missing '{key}'")
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{where}: '{key}' must be {kind}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" + (f" and at most {maximum}" if maximum is not None else "")
        raise ConfigError(f"{where}: '{key}' must be {bounds}, got {value!r}")
    return value


def _mode(value: Any, where: str) -> str:
    if value not in STRUCTURED_MODES:
        raise ConfigError(f"{where}: must be one of {', '.join(STRUCTURED_MODES)}, got {value!r}")
    return value


def _uses(data: Dict[str, Any], where: str) -> Dict[str, UseSettings]:
    section = _section(data, "uses", where)
    unknown = set(section) - set(USES)
    if unknown:
        raise ConfigError(f"{where}: uses.{sorted(unknown)[0]} is not a use ({', '.join(USES)})")
    uses = {}
    for name in USES:
        entry = section.get(name) or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: uses.{name} must be a mapping")
        at = f"{where}: uses.{name}"
        timeout = _number(entry, "timeout_seconds", at, 10, minimum=0.001)
        deadline = _number(entry, "deadline_seconds", at, timeout * 2, minimum=0.001)
        if deadline < timeout:
            raise ConfigError(f"{at}: 'deadline_seconds' must not be below 'timeout_seconds'")
        uses[name] = UseSettings(
            timeout_seconds=float(timeout),
            deadline_seconds=float(deadline),
            max_output_tokens=_number(entry, "max_output_tokens", at, integer=True, minimum=1,
                                      optional=True),
            temperature=_number(entry, "temperature", at, maximum=2, optional=True),
            cache_ttl_seconds=_number(entry, "cache_ttl_seconds", at, 0, integer=True),
        )
    return uses


def _prices(data: Dict[str, Any], where: str) -> Dict[str, Price]:
    prices = {}
    for model, entry in _section(data, "prices", where).items():
        at = f"{where}: prices.{model}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping with input/output or per_audio_minute")
        unknown = set(entry) - {"input", "output", "cached_input", "per_audio_minute"}
        if unknown:
            raise ConfigError(f"{at}: unknown field '{sorted(unknown)[0]}'")
        prices[str(model)] = Price(
            input=float(_number(entry, "input", at, 0)),
            output=float(_number(entry, "output", at, 0)),
            cached_input=_number(entry, "cached_input", at, optional=True),
            per_audio_minute=_number(entry, "per_audio_minute", at, optional=True),
        )
    return prices


def load_llm_config(path: Path) -> LlmConfig:
    data = read_yaml(path)
    where = str(path)
    request = _section(data, "request", where)
    at = f"{where}: request"
    by_model = request.get("structured_output_by_model") or {}
    if not isinstance(by_model, dict):
        raise ConfigError(f"{at}: 'structured_output_by_model' must be a mapping")
    budgets = _section(data, "budgets", where)
    bat = f"{where}: budgets"
    nlu = _section(data, "nlu_fallback", where)
    nat = f"{where}: nlu_fallback"
    knowledge = _section(data, "knowledge", where)
    kat = f"{where}: knowledge"
    screenshot = _section(data, "screenshot", where)
    sat = f"{where}: screenshot"
    mime_types = screenshot.get("mime_types") or ["image/jpeg", "image/png", "image/webp"]
    if not isinstance(mime_types, list) or not all(isinstance(m, str) for m in mime_types):
        raise ConfigError(f"{sat}: 'mime_types' must be a list of text")
    detail = screenshot.get("detail", "auto")
    if detail not in ("low", "high", "auto"):
        raise ConfigError(f"{sat}: 'detail' must be low, high or auto, got {detail!r}")
    transcription = _section(data, "transcription", where)
    tat = f"{where}: transcription"
    language = transcription.get("language", "es")
    if language is not None and not isinstance(language, str):
        raise ConfigError(f"{tat}: 'language' must be a language code such as es")
    embedding = _section(data, "embedding", where)
    eat = f"{where}: embedding"
    require_entities = nlu.get("require_entities_in_text", True)
    if not isinstance(require_entities, bool):
        raise ConfigError(f"{nat}: 'require_entities_in_text' must be true or false")
    base_url = data.get("default_base_url", "https://api.openai.com/v1")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: 'default_base_url' must be an http(s) URL")
    config = LlmConfig(
        default_base_url=base_url.rstrip("/"),
        connect_timeout_seconds=float(_number(request, "connect_timeout_seconds", at, 3,
                                              minimum=0.001)),
        retries=_number(request, "retries", at, 1, integer=True, maximum=10),
        backoff_initial_seconds=float(_number(request, "backoff_initial_seconds", at, 0.5)),
        backoff_max_seconds=float(_number(request, "backoff_max_seconds", at, 4)),
        structured_output=_mode(request.get("structured_output", "json_object"),
                                f"{at}.structured_output"),
        structured_output_by_model={
            str(model): _mode(mode, f"{at}.structured_output_by_model.{model}")
            for model, mode in by_model.items()
        },
        uses=_uses(data, where),
        budgets=Budgets(
            conversation_tokens=_number(budgets, "conversation_tokens", bat, 4000, integer=True),
            conversation_window_hours=float(_number(budgets, "conversation_window_hours", bat,
                                                    24, minimum=0.001)),
            max_context_tokens=_number(budgets, "max_context_tokens", bat, 8000, integer=True,
                                       minimum=1),
            monthly_usd=float(_number(budgets, "monthly_usd", bat, 500)),
            monthly_warning_fraction=float(_number(budgets, "monthly_warning_fraction", bat, 0.8,
                                                   maximum=1)),
            ticket_cost_alert_usd=float(_number(budgets, "ticket_cost_alert_usd", bat, 0.10)),
        ),
        prices=_prices(data, where),
        nlu_fallback=NluFallbackSettings(
            min_confidence=float(_number(nlu, "min_confidence", nat, 0.6, maximum=1)),
            examples_per_intent=_number(nlu, "examples_per_intent", nat, 5, integer=True),
            require_entities_in_text=require_entities,
        ),
        knowledge=KnowledgeSettings(
            max_passages=_number(knowledge, "max_passages", kat, 5, integer=True, minimum=1),
            max_passage_chars=_number(knowledge, "max_passage_chars", kat, 1500, integer=True,
                                      minimum=50),
        ),
        screenshot=ScreenshotSettings(
            max_image_bytes=_number(screenshot, "max_image_bytes", sat, 10_000_000, integer=True,
                                    minimum=1),
            mime_types=tuple(m.lower() for m in mime_types),
            detail=detail,
            image_token_estimate=_number(screenshot, "image_token_estimate", sat, 1100,
                                         integer=True),
        ),
        transcription=TranscriptionSettings(
            language=language or None,
            max_audio_bytes=_number(transcription, "max_audio_bytes", tat, 25_000_000,
                                    integer=True, minimum=1),
            assumed_audio_bytes_per_second=float(_number(
                transcription, "assumed_audio_bytes_per_second", tat, 2000, minimum=1)),
        ),
        embedding=EmbeddingSettings(
            batch_size=_number(embedding, "batch_size", eat, 64, integer=True, minimum=1,
                               maximum=2048),
            dimensions=_number(embedding, "dimensions", eat, integer=True, minimum=1,
                               optional=True),
        ),
    )
    if config.backoff_max_seconds < config.backoff_initial_seconds:
        raise ConfigError(
            f"{at}: 'backoff_max_seconds' must not be below 'backoff_initial_seconds'")
    return config


@lru_cache(maxsize=1)
def llm_config() -> LlmConfig:
    """The process's `config/llm.yml` (HELPDESK_CONFIG_DIR), read once."""
    return load_llm_config(load_settings().config_dir / "llm.yml")
