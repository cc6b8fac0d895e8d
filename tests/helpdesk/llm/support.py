"""What the LLM tests share: fake OpenAI servers, a fast configuration (small timeouts and
backoff so failure tests stay quick), providers pointing at the fakes, a client on the
session's real Redis, the LLM_* environment for code that builds its own client, the ticket
subject the chain and retry tests ask for, and what the uses are given."""
import asyncio
import base64
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest
import redis.asyncio as aioredis

from helpdesk.config import LlmConfig, load_llm_config
from helpdesk.llm import LlmClient, Provider
from helpdesk.llm import uses as llm_uses
from tests.fakes.openai_server import FakeOpenAI

PROJECT = Path(__file__).resolve().parents[3]
CHAT_MODEL = "gpt-4o-mini"
FALLBACK_MODEL = "gemini-1.5-flash"
VISION_MODEL = "gpt-4o"
TRANSCRIBE_MODEL = "whisper-1"
EMBEDDING_MODEL = "text-embedding-3-small"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fallback_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def fast_config(*, timeout: float = 1.0, deadline: float = 4.0, retries: int = 1,
                backoff: float = 0.01, backoff_max: float = 0.2, cache: Optional[int] = None,
                structured_output: str = "json_object", **budgets: Any) -> LlmConfig:
    """The project's config/llm.yml with test timings (and budget overrides)."""
    config = load_llm_config(PROJECT / "config" / "llm.yml")
    uses = {
        name: dataclasses.replace(
            use, timeout_seconds=timeout, deadline_seconds=deadline,
            cache_ttl_seconds=use.cache_ttl_seconds if cache is None else cache)
        for name, use in config.uses.items()
    }
    return dataclasses.replace(
        config, retries=retries, backoff_initial_seconds=backoff,
        backoff_max_seconds=backoff_max, uses=uses, structured_output=structured_output,
        budgets=dataclasses.replace(config.budgets, **budgets))


def provider(server: FakeOpenAI, position: int = 0, *, chat: Optional[str] = CHAT_MODEL,
             vision: Optional[str] = VISION_MODEL, transcribe: Optional[str] = TRANSCRIBE_MODEL,
             embedding: Optional[str] = EMBEDDING_MODEL, api_key: str = "sk-test") -> Provider:
    return Provider(base_url=server.base_url, api_key=api_key, chat_model=chat,
                    vision_model=vision, transcribe_model=transcribe,
                    embedding_model=embedding if position == 0 else None, position=position)


def client_for(redis_url: str, providers: Sequence[Provider],
               config: Optional[LlmConfig] = None) -> LlmClient:
    """Build inside the coroutine that uses it (connections belong to its loop)."""
    return LlmClient(providers, config or fast_config(), aioredis.Redis.from_url(redis_url))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


SUBJECT = {"subject": "Caja 2 no enciende"}


def subject(redis_url, providers, config=None, conversation_id="5491100000001"):
    """phrase_subject through a fresh client; returns (answer, client usage for the month)."""
    async def scenario():
        client = client_for(redis_url, providers, config)
        try:
            answer = await llm_uses.phrase_subject(client, "POS", "la caja 2 no enciende",
                                                   conversation_id)
            return answer, await client.meter.month_usage()
        finally:
            await client.close()

    return run(scenario())


def chain(primary_fake, fallback):
    return [provider(primary_fake, 0), provider(fallback, 1, chat=FALLBACK_MODEL)]


def configure_env(monkeypatch: pytest.MonkeyPatch, redis_url: str,
                  fake: Optional[FakeOpenAI] = None) -> None:
    """The LLM_* settings at the fake (all unset without one) and REDIS_URL, for the code that
    builds its own client from the environment."""
    for name in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_VISION_MODEL",
                 "LLM_EMBEDDING_MODEL", "LLM_TRANSCRIBE_MODEL", "LLM_FALLBACKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    if fake is not None:
        monkeypatch.setenv("LLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("LLM_API_KEY", "sk-test")
        monkeypatch.setenv("LLM_MODEL", CHAT_MODEL)
        monkeypatch.setenv("LLM_VISION_MODEL", VISION_MODEL)
        monkeypatch.setenv("LLM_TRANSCRIBE_MODEL", TRANSCRIBE_MODEL)
        monkeypatch.setenv("LLM_EMBEDDING_MODEL", EMBEDDING_MODEL)


# --- what the uses are given (test_uses.py, test_default.py) -----------------------------

CONVERSATION = "5491122334455"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
                       "hKmMIQAAAABJRU5ErkJggg==")


@dataclass
class Chunk:
    title: str
    heading: str
    text: str
    score: float = 1.0


PASSAGES = [
    Chunk("Cierre de caja", "Arqueo", "Cuente el efectivo y compárelo con el informe Z."),
    {"title": "Impresora fiscal", "heading": "Atasco de papel",
     "text": "Abra la tapa, retire el papel y vuelva a cerrarla."},
    {"title": "Cierre de caja", "heading": "Diferencias", "text": "Anote la diferencia."},
]

SCREENSHOT = {"error_messages": ["  Error 1042: impresora fiscal sin papel ", "",
                                 "Error 1042: impresora fiscal sin papel"],
              "system": "impresora fiscal", "store": None,
              "description": "La caja muestra un error de la impresora fiscal."}

INTENTS = {
    "report_incident": ["la caja no enciende", "no anda el posnet"],
    "ask_howto": ["cómo hago el cierre de caja"],
    "greet": ["hola", "buen día"],
}
ENTITIES = ["store", "system"]

OGG = b"OggS\x00\x02" + bytes(range(200))
