"""The one client for OpenAI-compatible LLM endpoints (OpenAI, Gemini's and xAI's compatible
endpoints, OpenRouter, vLLM, Ollama: each is a base URL): `LlmClient`.

Async on purpose: the action server and the Rasa server are single asyncio loops, and a
blocking call would stall every conversation. (`helpdesk.llm.embed` has the one sync path,
for building the knowledge index.)

Every call goes through the chain of providers (LLM_* settings, then LLM_FALLBACKS): a
per-request timeout and a deadline for the whole chain; retries with backoff on the same
provider after a 429, a 5xx or a dropped connection (our retries only: the `openai`
client's own are off; the policy is `helpdesk.llm.retry`); the next provider after a timeout,
another 4xx or retries used up. Answers are JSON checked against a schema; refusals, invalid
JSON and wrong shapes are "no answer". Usage and cost are recorded in Redis and budgets
checked before each call (`helpdesk.llm.budget`).

What the bot asks with it is in `helpdesk.llm.uses` (each use takes a client) and, bound to
the process's default client, in `helpdesk.llm.default`.
"""
import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Sequence, Tuple, TypeVar

import httpx
import jsonschema
# The client imports these lazily on first use, which blocked the event loop for about
# 0.25 s in the first LLM call of a process (measured); importing them here moves that to
# start-up.
import openai.resources.audio  # noqa: F401
import openai.resources.chat  # noqa: F401
import openai.resources.embeddings  # noqa: F401
import redis
import redis.asyncio as aioredis
from openai import AsyncOpenAI

from helpdesk import redis_keys
from helpdesk.config import LlmConfig, llm_config
from helpdesk.llm.budget import Usage, UsageMeter, estimate_tokens
from helpdesk.llm.prompts import Prompt
from helpdesk.llm.prompts import prompts as project_prompts
from helpdesk.llm.providers import NO_KEY, Provider, provider_chain, providers_for
from helpdesk.llm.retry import failure_verdict
from helpdesk.llm.schemas import provider_schema
from helpdesk.settings import LlmSettings, load_llm, load_settings

logger = logging.getLogger("helpdesk.llm")

T = TypeVar("T")
# operation(openai_client, model, timeout_seconds) -> the provider's answer
Operation = Callable[[AsyncOpenAI, str, float], Awaitable[T]]


@dataclass(frozen=True)
class CallResult:
    value: Any
    provider: Provider
    model: str
    latency_seconds: float


def _strip_fences(text: str) -> str:
    """Models often wrap JSON in ```json fences even when asked not to."""
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


class LlmClient:
    """Provider chain, budgets, cache and JSON answers; one per event loop (`helpdesk.llm.default`)."""

    def __init__(self, providers: Sequence[Provider], config: LlmConfig,
                 redis_client: aioredis.Redis, prompt_set: Optional[Mapping[str, Prompt]] = None,
                 *, owns_redis: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.providers = list(providers)
        self.config = config
        self.redis = redis_client
        self.prompts = prompt_set if prompt_set is not None else project_prompts()
        self.meter = UsageMeter(redis_client, config, clock)
        self._owns_redis = owns_redis
        self._openai: Dict[Tuple[str, str], AsyncOpenAI] = {}

    @classmethod
    def from_settings(cls, llm: Optional[LlmSettings] = None, redis_url: Optional[str] = None,
                      config: Optional[LlmConfig] = None) -> Optional["LlmClient"]:
        """A client for the configured providers, None when no LLM is configured."""
        config = config or llm_config()
        chain = provider_chain(llm if llm is not None else load_llm(), config.default_base_url)
        if not chain:
            return None
        url = redis_url or load_settings().redis_url
        return cls(chain, config,
                   aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def can(self, kind: str) -> bool:
        """Whether some provider serves this kind of call (chat, vision, transcribe, embedding)."""
        return bool(providers_for(self.providers, kind))

    def models(self, kind: str) -> str:
        """The chain's models for a kind, for cache keys (another chain, another answer)."""
        return "|".join(p.model_for(kind) or "" for p in providers_for(self.providers, kind))

    async def close(self) -> None:
        for client in self._openai.values():
            await client.close()
        self._openai.clear()
        if self._owns_redis:
            await self.redis.close()
            await self.redis.connection_pool.disconnect()

    def _client_for(self, provider: Provider) -> AsyncOpenAI:
        key = (provider.base_url, provider.api_key or "")
        if key not in self._openai:
            self._openai[key] = AsyncOpenAI(
                base_url=provider.base_url,
                api_key=provider.api_key or NO_KEY,
                max_retries=0,  # retries are ours (run_chain), never stacked on the library's
                timeout=httpx.Timeout(30.0, connect=self.config.connect_timeout_seconds),
            )
        return self._openai[key]

    # --- the chain ----------------------------------------------------------------------

    async def run_chain(self, use: str, kind: str, operation: Operation) -> Optional[CallResult]:
        """The first provider answer within the use's deadline, or None (logged, counted)."""
        settings = self.config.use(use)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.deadline_seconds
        for provider in providers_for(self.providers, kind):
            model = provider.model_for(kind) or ""
            client = self._client_for(provider)
            attempt = 0
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    logger.warning("LLM deadline of %gs passed", settings.deadline_seconds,
                                   extra={"use": use, "provider": provider.label})
                    await self.meter.count(use, "failed")
                    return None
                timeout = min(settings.timeout_seconds, remaining)
                started = loop.time()
                try:
                    value = await asyncio.wait_for(operation(client, model, timeout), timeout)
                except Exception as error:  # every failure has a verdict; none escapes
                    verdict, wait, why = failure_verdict(error, attempt, self.config)
                    logger.warning("LLM request failed (%s), %s", why,
                                   "retrying" if verdict == "retry" else "next provider",
                                   extra={"use": use, "provider": provider.label, "model": model,
                                          "attempt": attempt + 1,
                                          "latency_ms": round((loop.time() - started) * 1000)})
                    if verdict == "retry" and wait is not None and \
                            deadline - loop.time() > wait + 0.01:
                        await asyncio.sleep(wait)
                        attempt += 1
                        continue
                    break
                return CallResult(value, provider, model, loop.time() - started)
        logger.warning("LLM unavailable: every provider failed", extra={"use": use})
        await self.meter.count(use, "failed")
        return None

    # --- JSON answers -------------------------------------------------------------------

    async def chat_json(self, use: str, conversation_id: Optional[str], prompt: Prompt,
                        values: Mapping[str, str], schema: Dict[str, Any], *, kind: str = "chat",
                        image_url: Optional[str] = None, extra_tokens: int = 0
                        ) -> Optional[Dict[str, Any]]:
        """One structured answer: a dict valid against `schema`, or None."""
        if not self.can(kind):
            return None
        values = {**values, "schema": json.dumps(schema, ensure_ascii=False)}
        system = prompt.render("system", values)
        user_text = prompt.render("user", values)
        content: Any = user_text
        if image_url:
            content = [{"type": "text", "text": user_text},
                       {"type": "image_url",
                        "image_url": {"url": image_url, "detail": self.config.screenshot.detail}}]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        estimated = estimate_tokens(system) + estimate_tokens(user_text) + extra_tokens
        if await self.meter.check(use, conversation_id, estimated):
            return None
        settings = self.config.use(use)

        async def operation(client: AsyncOpenAI, model: str, timeout: float) -> Any:
            kwargs: Dict[str, Any] = {"model": model, "messages": messages, "timeout": timeout}
            if settings.max_output_tokens:
                kwargs["max_tokens"] = settings.max_output_tokens
            if settings.temperature is not None:
                kwargs["temperature"] = settings.temperature
            mode = self.config.structured_mode(model)
            if mode == "json_schema":
                kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": use, "schema": provider_schema(schema), "strict": True}}
            elif mode == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
            return await client.chat.completions.create(**kwargs)

        result = await self.run_chain(use, kind, operation)
        if result is None:
            return None
        completion = result.value
        choice = completion.choices[0] if completion.choices else None
        text = (choice.message.content if choice and choice.message else None) or ""
        await self.meter.record(conversation_id, self._chat_usage(use, result.model, completion,
                                                                  estimated, text))
        log = {"use": use, "provider": result.provider.label, "model": result.model,
               "prompt": prompt.tag, "latency_ms": round(result.latency_seconds * 1000)}
        if choice is None:
            return await self.invalid(use, "no choices in the answer", log)
        if getattr(choice.message, "refusal", None) or choice.finish_reason == "content_filter":
            logger.warning("LLM refused", extra={**log, "finish_reason": choice.finish_reason})
            await self.meter.count(use, "refused")
            return None
        if not text.strip():
            return await self.invalid(use, f"empty answer (finish {choice.finish_reason})", log)
        try:
            data = json.loads(_strip_fences(text))
        except ValueError:
            return await self.invalid(use, f"not JSON (finish {choice.finish_reason})", log)
        try:
            jsonschema.Draft7Validator(schema).validate(data)
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            return await self.invalid(use, f"schema: {where}: {error.validator}", log)
        logger.info("LLM answer", extra={**log, "outcome": "ok"})
        return data

    def _chat_usage(self, use: str, model: str, completion: Any, estimated_prompt: int,
                    text: str) -> Usage:
        usage = getattr(completion, "usage", None)
        if usage is None or usage.prompt_tokens is None:
            return Usage(use=use, model=model, prompt_tokens=estimated_prompt,
                         completion_tokens=estimate_tokens(text), estimated=True)
        details = getattr(usage, "prompt_tokens_details", None)
        return Usage(use=use, model=model, prompt_tokens=usage.prompt_tokens or 0,
                     completion_tokens=usage.completion_tokens or 0,
                     cached_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0)

    async def invalid(self, use: str, why: str, log: Optional[Dict[str, Any]] = None) -> None:
        """Log and count an answer that cannot be used; returns None for the caller."""
        logger.warning("LLM answer unusable: %s", why, extra={**(log or {}), "use": use,
                                                              "outcome": "invalid"})
        await self.meter.count(use, "invalid")
        return None

    # --- cache --------------------------------------------------------------------------

    @staticmethod
    def digest(*parts: Any) -> str:
        raw = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()
        return hashlib.sha256(raw).hexdigest()

    async def cache_get(self, use: str, digest: str) -> Optional[Any]:
        if not self.config.use(use).cache_ttl_seconds:
            return None
        try:
            raw = await self.redis.get(redis_keys.llm_cache(use, digest))
        except redis.RedisError as error:
            logger.warning("LLM cache unreadable: %s", error, extra={"use": use})
            return None
        if raw is None:
            return None
        await self.meter.count(use, "cache_hit")
        return json.loads(raw)

    async def cache_set(self, use: str, digest: str, value: Any) -> None:
        ttl = self.config.use(use).cache_ttl_seconds
        if not ttl:
            return
        try:
            await self.redis.set(redis_keys.llm_cache(use, digest),
                                 json.dumps(value, ensure_ascii=False), ex=ttl)
        except redis.RedisError as error:
            logger.warning("LLM cache not written: %s", error, extra={"use": use})
