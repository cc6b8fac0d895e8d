"""Embeddings from an OpenAI-compatible embedding model for the knowledge index.

`OpenAIEmbedder` fits the knowledge index's `Embedder` protocol (`dimension`, `identity`,
sync `embed(texts)`), so it is for BUILD TIME ONLY: `embed` blocks on HTTP, which is fine in
`make knowledge` and would stall the action server's loop. At query time use `aembed`
(async, through the default client: `helpdesk.llm.default.embed`), or run `embed` in a thread.
`embedder()` is the configured one.

Only the primary provider embeds (LLM_EMBEDDING_MODEL): vectors of another model do not
match the index, so there is no fallback. Failures raise `LlmUnavailable` (a build must not
write an index with holes). Usage is recorded in Redis when Redis answers; the build does
not need it.
"""
import logging
import time
from typing import Any, Dict, List, Optional

import httpx
import numpy as np
import redis
from openai import OpenAI

from helpdesk.config import LlmConfig, llm_config
from helpdesk.llm import default as llm_default
from helpdesk.llm.budget import Usage, estimate_tokens, monthly_budget_reached, record_sync
from helpdesk.llm.providers import NO_KEY, Provider, provider_chain, providers_for
from helpdesk.llm.retry import failure_verdict  # the same retry rules as the async chain
from helpdesk.llm.uses import vectors_from
from helpdesk.settings import load_llm, load_settings

logger = logging.getLogger("helpdesk.llm")
PROBE_TEXT = "dimensión"


class LlmUnavailable(Exception):
    """The embedding model could not embed (provider failures, monthly budget reached)."""


class OpenAIEmbedder:
    def __init__(self, provider: Provider, config: LlmConfig,
                 redis_client: Optional[redis.Redis] = None) -> None:
        if not provider.embedding_model:
            raise ValueError("the provider has no embedding model")
        self.provider = provider
        self.model = provider.embedding_model
        self.config = config
        self.redis = redis_client
        use = config.use("embedding")
        self._client = OpenAI(base_url=provider.base_url, api_key=provider.api_key or NO_KEY,
                              max_retries=0,
                              timeout=httpx.Timeout(use.timeout_seconds,
                                                    connect=config.connect_timeout_seconds))
        self._dimension: Optional[int] = config.embedding.dimensions

    @classmethod
    def from_settings(cls, config: Optional[LlmConfig] = None) -> Optional["OpenAIEmbedder"]:
        """The configured embedding model, None without LLM_EMBEDDING_MODEL."""
        config = config or llm_config()
        providers = providers_for(provider_chain(load_llm(), config.default_base_url), "embedding")
        if not providers:
            return None
        client = redis.Redis.from_url(load_settings().redis_url, socket_timeout=2,
                                      socket_connect_timeout=2)
        return cls(providers[0], config, client)

    @property
    def dimension(self) -> int:
        """The vectors' size: configured, or learnt from one request the first time."""
        if self._dimension is None:
            self._dimension = int(self.embed([PROBE_TEXT]).shape[1])
        return self._dimension

    @property
    def identity(self) -> Dict[str, Any]:
        """What the vectors depend on; an index is only queried with a matching embedder."""
        return {"kind": "openai", "model": self.model, "dimension": self.dimension}

    def embed(self, texts: List[str]) -> np.ndarray:
        """(len(texts), dimension) float32 unit rows. Blocks: build time only."""
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        batch = self.config.embedding.batch_size
        parts = [self._embed_batch(texts[i:i + batch]) for i in range(0, len(texts), batch)]
        vectors = np.vstack(parts)
        if self._dimension is not None and vectors.shape[1] != self._dimension:
            raise LlmUnavailable(f"{self.model} returned {vectors.shape[1]} dimensions, "
                                 f"expected {self._dimension}")
        self._dimension = int(vectors.shape[1])
        return vectors

    async def aembed(self, texts: List[str]) -> Optional[np.ndarray]:
        """Query-time embedding without blocking the loop; None when it cannot be had."""
        return await llm_default.embed(texts)

    def close(self) -> None:
        self._client.close()
        if self.redis is not None:
            self.redis.close()

    # ----------------------------------------------------------------------------------

    def _budget_reached(self) -> bool:
        if self.redis is None:
            return False
        try:
            return monthly_budget_reached(self.redis, self.config)
        except redis.RedisError as error:
            logger.warning("LLM budget not checked (Redis: %s); index build goes on", error)
            return False

    def _embed_batch(self, texts: List[str]) -> np.ndarray:
        if self._budget_reached():
            raise LlmUnavailable("the monthly LLM budget is reached")
        kwargs: Dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.config.embedding.dimensions:
            kwargs["dimensions"] = self.config.embedding.dimensions
        attempt = 0
        while True:
            try:
                response = self._client.embeddings.create(**kwargs)
                break
            except Exception as error:
                verdict, wait, why = failure_verdict(error, attempt, self.config)
                logger.warning("embedding request failed (%s)", why, extra={
                    "use": "embedding", "provider": self.provider.label, "attempt": attempt + 1})
                if verdict != "retry" or wait is None:
                    raise LlmUnavailable(f"embedding with {self.model} failed: {why}") from error
                time.sleep(wait)
                attempt += 1
        usage = getattr(response, "usage", None)
        self._record(Usage(use="embedding", model=self.model,
                           prompt_tokens=usage.prompt_tokens if usage else
                           sum(estimate_tokens(t) for t in texts),
                           estimated=usage is None))
        try:
            return vectors_from(response, len(texts))
        except ValueError as error:
            raise LlmUnavailable(f"embedding with {self.model}: {error}") from error

    def _record(self, usage: Usage) -> None:
        if self.redis is None:
            return
        try:
            record_sync(self.redis, self.config, usage)
        except redis.RedisError as error:
            logger.warning("embedding usage not recorded (Redis: %s)", error)


def embedder() -> Optional[OpenAIEmbedder]:
    """The sync embedder for index builds (`OpenAIEmbedder`), or None."""
    return OpenAIEmbedder.from_settings()
