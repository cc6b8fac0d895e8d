"""The ordered chain of OpenAI-compatible providers: the primary from LLM_* settings, then
the entries of LLM_FALLBACKS.

LLM_FALLBACKS is a comma-separated list of entries, each
    base_url|model[|KEY_ENV_NAME][|vision=MODEL][|transcribe=MODEL]
KEY_ENV_NAME names the variable holding that provider's key (read through
`helpdesk.settings`, never written here); without it the provider gets LLM_API_KEY when its
base URL is the primary's, and no key otherwise (local servers). A fallback serves images
or audio only when it names a model for them. Embeddings never fall back: vectors of another
model are not comparable with the index.
"""
from dataclasses import dataclass
from typing import List, Optional
from urllib.parse import urlparse

from helpdesk import settings as settings_module
from helpdesk.errors import ConfigError
from helpdesk.settings import LlmSettings

# what the `openai` client sends when a provider needs no key (Ollama, vLLM without auth)
NO_KEY = "no-key"
KINDS = ("chat", "vision", "transcribe", "embedding")


@dataclass(frozen=True)
class Provider:
    base_url: str
    api_key: Optional[str]
    chat_model: Optional[str] = None
    vision_model: Optional[str] = None
    transcribe_model: Optional[str] = None
    embedding_model: Optional[str] = None
    position: int = 0  # 0 = primary, 1.. = fallbacks in order

    def model_for(self, kind: str) -> Optional[str]:
        return {
            "chat": self.chat_model,
            "vision": self.vision_model,
            "transcribe": self.transcribe_model,
            "embedding": self.embedding_model,
        }[kind]

    @property
    def label(self) -> str:
        """Safe for logs and metrics: the host and the chain position, never the key."""
        host = urlparse(self.base_url).netloc or self.base_url
        return f"{host}#{self.position}"


def _valid_url(value: str, where: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{where}: '{value}' is not an http(s) base URL")
    return value.rstrip("/")


def parse_fallbacks(text: Optional[str], primary: Optional[Provider]) -> List[Provider]:
    providers: List[Provider] = []
    if not text:
        return providers
    for index, raw in enumerate(part.strip() for part in text.split(",")):
        if not raw:
            continue
        where = f"LLM_FALLBACKS entry {index + 1} ({raw.split('|', 1)[0]})"
        fields = [f.strip() for f in raw.split("|")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise ConfigError(f"{where}: expected base_url|model[|KEY_ENV_NAME][|vision=MODEL]")
        base_url = _valid_url(fields[0], where)
        options, key_env = {}, None
        for field in fields[2:]:
            if "=" in field:
                name, _, value = field.partition("=")
                if name not in ("vision", "transcribe"):
                    raise ConfigError(f"{where}: unknown option '{name}' (vision, transcribe)")
                options[name] = value.strip() or None
            elif field:
                if key_env:
                    raise ConfigError(f"{where}: more than one key variable")
                key_env = field
        if key_env:
            api_key = settings_module._env(key_env)
            if not api_key:
                raise ConfigError(f"{where}: the variable {key_env} named for its key is not set")
        elif primary is not None and primary.base_url == base_url:
            api_key = primary.api_key
        else:
            api_key = None
        providers.append(Provider(
            base_url=base_url,
            api_key=api_key,
            chat_model=fields[1],
            vision_model=options.get("vision"),
            transcribe_model=options.get("transcribe"),
            position=len(providers) + 1,
        ))
    return providers


def provider_chain(llm: Optional[LlmSettings], default_base_url: str) -> List[Provider]:
    """Primary first, then fallbacks; empty when no LLM is configured."""
    if llm is None:
        return []
    primary = Provider(
        base_url=_valid_url(llm.base_url, "LLM_BASE_URL") if llm.base_url else default_base_url,
        api_key=llm.api_key,
        chat_model=llm.model,
        vision_model=llm.vision_model,
        transcribe_model=llm.transcribe_model,
        embedding_model=llm.embedding_model,
        position=0,
    )
    return [primary, *parse_fallbacks(llm.fallbacks, primary)]


def providers_for(chain: List[Provider], kind: str) -> List[Provider]:
    """The providers able to serve a kind of call, in order (embeddings: the primary only)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if kind == "embedding":
        chain = chain[:1]
    return [p for p in chain if p.model_for(kind)]
