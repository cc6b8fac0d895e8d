"""`config/llm.yml`: timeouts, retries, budgets, prices, cache lifetimes and per-use limits of
the LLM client. Designers and operators tune these without touching code; a broken file
raises `ConfigError` naming the file and the field.

Two keys are read apart, by `dialogue_llm_config` for the action server's LLM steps (the
client's `LlmConfig` ignores them):

    nlu_fallback.never_chosen          intents the LLM is never offered
    screenshot.max_images_per_message  images of one message sent to the vision model
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from helpdesk.config.reader import NumberStyle, number, read_yaml, section
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings

USES = ("knowledge_answer", "screenshot", "intent", "subject", "transcription", "embedding")
STRUCTURED_MODES = ("json_schema", "json_object", "none")


@dataclass(frozen=True)
class UseConfig:
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
class BudgetConfig:
    conversation_tokens: int
    conversation_window_hours: float
    max_context_tokens: int
    monthly_usd: float
    monthly_warning_fraction: float
    ticket_cost_alert_usd: float


@dataclass(frozen=True)
class NluFallbackConfig:
    min_confidence: float
    examples_per_intent: int
    require_entities_in_text: bool


@dataclass(frozen=True)
class LlmKnowledgeConfig:
    max_passages: int
    max_passage_chars: int


@dataclass(frozen=True)
class ScreenshotConfig:
    max_image_bytes: int
    mime_types: Tuple[str, ...]
    detail: str
    image_token_estimate: int


@dataclass(frozen=True)
class TranscriptionConfig:
    language: Optional[str]
    max_audio_bytes: int
    assumed_audio_bytes_per_second: float


@dataclass(frozen=True)
class EmbeddingConfig:
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
    uses: Dict[str, UseConfig]
    budgets: BudgetConfig
    prices: Dict[str, Price]
    nlu_fallback: NluFallbackConfig
    knowledge: LlmKnowledgeConfig
    screenshot: ScreenshotConfig
    transcription: TranscriptionConfig
    embedding: EmbeddingConfig

    def use(self, name: str) -> UseConfig:
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


def _mode(value: Any, where: str) -> str:
    if value not in STRUCTURED_MODES:
        raise ConfigError(f"{where}: must be one of {', '.join(STRUCTURED_MODES)}, got {value!r}")
    return value


def _uses(data: Dict[str, Any], where: str) -> Dict[str, UseConfig]:
    entries = section(data, "uses", where)
    unknown = set(entries) - set(USES)
    if unknown:
        raise ConfigError(f"{where}: uses.{sorted(unknown)[0]} is not a use ({', '.join(USES)})")
    uses = {}
    for name in USES:
        entry = entries.get(name) or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: uses.{name} must be a mapping")
        at = f"{where}: uses.{name}"
        timeout = number(entry, "timeout_seconds", at, 10, minimum=0.001)
        deadline = number(entry, "deadline_seconds", at, timeout * 2, minimum=0.001)
        if deadline < timeout:
            raise ConfigError(f"{at}: 'deadline_seconds' must not be below 'timeout_seconds'")
        uses[name] = UseConfig(
            timeout_seconds=float(timeout),
            deadline_seconds=float(deadline),
            max_output_tokens=number(entry, "max_output_tokens", at, whole=True, minimum=1,
                                      optional=True),
            temperature=number(entry, "temperature", at, maximum=2, optional=True),
            cache_ttl_seconds=number(entry, "cache_ttl_seconds", at, 0, whole=True),
        )
    return uses


def _prices(data: Dict[str, Any], where: str) -> Dict[str, Price]:
    prices = {}
    for model, entry in section(data, "prices", where).items():
        at = f"{where}: prices.{model}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping with input/output or per_audio_minute")
        unknown = set(entry) - {"input", "output", "cached_input", "per_audio_minute"}
        if unknown:
            raise ConfigError(f"{at}: unknown field '{sorted(unknown)[0]}'")
        prices[str(model)] = Price(
            input=float(number(entry, "input", at, 0)),
            output=float(number(entry, "output", at, 0)),
            cached_input=number(entry, "cached_input", at, optional=True),
            per_audio_minute=number(entry, "per_audio_minute", at, optional=True),
        )
    return prices


def load_llm_config(path: Path) -> LlmConfig:
    data = read_yaml(path)
    where = str(path)
    request = section(data, "request", where)
    at = f"{where}: request"
    by_model = request.get("structured_output_by_model") or {}
    if not isinstance(by_model, dict):
        raise ConfigError(f"{at}: 'structured_output_by_model' must be a mapping")
    budgets = section(data, "budgets", where)
    bat = f"{where}: budgets"
    nlu = section(data, "nlu_fallback", where)
    nat = f"{where}: nlu_fallback"
    knowledge = section(data, "knowledge", where)
    kat = f"{where}: knowledge"
    screenshot = section(data, "screenshot", where)
    sat = f"{where}: screenshot"
    mime_types = screenshot.get("mime_types") or ["image/jpeg", "image/png", "image/webp"]
    if not isinstance(mime_types, list) or not all(isinstance(m, str) for m in mime_types):
        raise ConfigError(f"{sat}: 'mime_types' must be a list of text")
    detail = screenshot.get("detail", "auto")
    if detail not in ("low", "high", "auto"):
        raise ConfigError(f"{sat}: 'detail' must be low, high or auto, got {detail!r}")
    transcription = section(data, "transcription", where)
    tat = f"{where}: transcription"
    language = transcription.get("language", "es")
    if language is not None and not isinstance(language, str):
        raise ConfigError(f"{tat}: 'language' must be a language code such as es")
    embedding = section(data, "embedding", where)
    eat = f"{where}: embedding"
    require_entities = nlu.get("require_entities_in_text", True)
    if not isinstance(require_entities, bool):
        raise ConfigError(f"{nat}: 'require_entities_in_text' must be true or false")
    base_url = data.get("default_base_url", "https://api.openai.com/v1")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: 'default_base_url' must be an http(s) URL")
    config = LlmConfig(
        default_base_url=base_url.rstrip("/"),
        connect_timeout_seconds=float(number(request, "connect_timeout_seconds", at, 3,
                                              minimum=0.001)),
        retries=number(request, "retries", at, 1, whole=True, maximum=10),
        backoff_initial_seconds=float(number(request, "backoff_initial_seconds", at, 0.5)),
        backoff_max_seconds=float(number(request, "backoff_max_seconds", at, 4)),
        structured_output=_mode(request.get("structured_output", "json_object"),
                                f"{at}.structured_output"),
        structured_output_by_model={
            str(model): _mode(mode, f"{at}.structured_output_by_model.{model}")
            for model, mode in by_model.items()
        },
        uses=_uses(data, where),
        budgets=BudgetConfig(
            conversation_tokens=number(budgets, "conversation_tokens", bat, 4000, whole=True),
            conversation_window_hours=float(number(budgets, "conversation_window_hours", bat,
                                                    24, minimum=0.001)),
            max_context_tokens=number(budgets, "max_context_tokens", bat, 8000, whole=True,
                                       minimum=1),
            monthly_usd=float(number(budgets, "monthly_usd", bat, 500)),
            monthly_warning_fraction=float(number(budgets, "monthly_warning_fraction", bat, 0.8,
                                                   maximum=1)),
            ticket_cost_alert_usd=float(number(budgets, "ticket_cost_alert_usd", bat, 0.10)),
        ),
        prices=_prices(data, where),
        nlu_fallback=NluFallbackConfig(
            min_confidence=float(number(nlu, "min_confidence", nat, 0.6, maximum=1)),
            examples_per_intent=number(nlu, "examples_per_intent", nat, 5, whole=True),
            require_entities_in_text=require_entities,
        ),
        knowledge=LlmKnowledgeConfig(
            max_passages=number(knowledge, "max_passages", kat, 5, whole=True, minimum=1),
            max_passage_chars=number(knowledge, "max_passage_chars", kat, 1500, whole=True,
                                      minimum=50),
        ),
        screenshot=ScreenshotConfig(
            max_image_bytes=number(screenshot, "max_image_bytes", sat, 10_000_000, whole=True,
                                    minimum=1),
            mime_types=tuple(m.lower() for m in mime_types),
            detail=detail,
            image_token_estimate=number(screenshot, "image_token_estimate", sat, 1100,
                                         whole=True),
        ),
        transcription=TranscriptionConfig(
            language=language or None,
            max_audio_bytes=number(transcription, "max_audio_bytes", tat, 25_000_000,
                                    whole=True, minimum=1),
            assumed_audio_bytes_per_second=float(number(
                transcription, "assumed_audio_bytes_per_second", tat, 2000, minimum=1)),
        ),
        embedding=EmbeddingConfig(
            batch_size=number(embedding, "batch_size", eat, 64, whole=True, minimum=1,
                               maximum=2048),
            dimensions=number(embedding, "dimensions", eat, whole=True, minimum=1,
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


# --- what the dialogue's LLM steps read beyond the client's own settings ---------------------


# "screenshot.max_images_per_message must be a whole number (0 or more), got -1"
_AT_LEAST_DOTTED = NumberStyle(field="{where}.{key}", wrong="{kind} ({minimum} or more)",
                               limits="{kind} ({minimum} or more)", null_is_missing=False)


@dataclass(frozen=True)
class DialogueLlmConfig:
    never_chosen: Tuple[str, ...]
    max_images_per_message: int


def load_dialogue_llm_config(path: Path) -> DialogueLlmConfig:
    data = read_yaml(path)
    where = str(path)
    nlu = data.get("nlu_fallback") or {}
    screenshot = data.get("screenshot") or {}
    if not isinstance(nlu, dict) or not isinstance(screenshot, dict):
        raise ConfigError(f"{where}: 'nlu_fallback' and 'screenshot' must be mappings")
    never = nlu.get("never_chosen", [])
    if not isinstance(never, list) or not all(isinstance(i, str) and i for i in never):
        raise ConfigError(f"{where}: nlu_fallback.never_chosen must be a list of intent names")
    images = number(screenshot, "max_images_per_message", f"{where}: screenshot", 3, whole=True,
                    style=_AT_LEAST_DOTTED)
    return DialogueLlmConfig(never_chosen=tuple(never), max_images_per_message=images)


@lru_cache(maxsize=None)
def _dialogue_config_at(path: Path) -> DialogueLlmConfig:
    return load_dialogue_llm_config(path)


def dialogue_llm_config() -> DialogueLlmConfig:
    """config/llm.yml of the configured config directory, read once per process."""
    return _dialogue_config_at(load_settings().config_dir / "llm.yml")
