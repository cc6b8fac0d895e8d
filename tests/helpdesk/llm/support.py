"""What the LLM tests share: fake OpenAI servers, a fast configuration (small timeouts and
backoff so failure tests stay quick), providers pointing at the fakes, and a client on the
session's real Redis."""
import asyncio
import dataclasses
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest
import redis.asyncio as aioredis

from helpdesk.llm import LlmClient
from helpdesk.config import LlmConfig, load_llm_config
from helpdesk.llm import Provider
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
