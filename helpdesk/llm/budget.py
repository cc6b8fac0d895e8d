"""Tokens and money the LLM spends, kept in Redis, and the budgets that stop it.

Every call's usage (from the provider's `usage` fields, estimated when a provider sends none)
is priced with `config/llm.yml` and added to three hashes: the conversation's (expiring with
its window), the UTC month's and the all-time one. Before a call, `check` says whether the
conversation's token budget or the month's money budget leaves room; when not, the use
answers None and the bot takes its path without an LLM. Alerts are log lines at ERROR or
WARNING with an `alert` field, each logged once per month or per conversation window.

Shared by every process (several action servers, workers): the counters are Redis's, so
the budget holds across processes. Two calls racing at the limit may both pass; the overshoot
is one call.
"""
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import redis
import redis.asyncio as aioredis

from helpdesk import redis_keys
from helpdesk.config import LlmConfig, Price

logger = logging.getLogger("helpdesk.llm")

CHARS_PER_TOKEN = 4
_UNPRICED_WARNED: set = set()  # models already warned about, once per process
MONTH_KEY_TTL_SECONDS = 400 * 24 * 3600
# outcome counters kept per use (besides calls/tokens/cost)
OUTCOMES = ("failed", "invalid", "refused", "skipped_budget", "cache_hit")

# skip reasons `check` returns
CONVERSATION_BUDGET = "conversation_budget"
MONTHLY_BUDGET = "monthly_budget"
CONTEXT_TOO_LARGE = "context_too_large"
BUDGET_UNKNOWN = "budget_unknown"


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token) for prompts and providers without `usage`."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass(frozen=True)
class Usage:
    """One call's consumption."""

    use: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    audio_seconds: Optional[float] = None
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def cost_usd(usage: Usage, price: Price) -> float:
    """USD of one call: audio by the minute when the price has a per-minute rate and the
    length is known, tokens otherwise (cached input at its own rate when given)."""
    if usage.audio_seconds is not None and price.per_audio_minute is not None:
        return usage.audio_seconds / 60.0 * price.per_audio_minute
    cached = min(usage.cached_tokens, usage.prompt_tokens) if price.cached_input is not None else 0
    fresh = usage.prompt_tokens - cached
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    output = usage.completion_tokens * price.output
    return (fresh * price.input + cached * cached_rate + output) / 1e6


def month_of(timestamp: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(timestamp))


def _increments(usage: Usage, cost: float) -> List[Tuple[str, Any]]:
    """(field, amount) pairs a call adds to each usage hash."""
    pairs: List[Tuple[str, Any]] = []
    for prefix in ("", f"{usage.use}:"):
        pairs += [
            (f"{prefix}calls", 1),
            (f"{prefix}prompt_tokens", usage.prompt_tokens),
            (f"{prefix}completion_tokens", usage.completion_tokens),
            (f"{prefix}cost_usd", cost),
        ]
    if usage.estimated:
        pairs.append(("estimated_calls", 1))
    return pairs


def _apply(pipe: Any, key: str, pairs: List[Tuple[str, Any]]) -> None:
    for field, amount in pairs:
        if isinstance(amount, float):
            pipe.hincrbyfloat(key, field, amount)
        else:
            pipe.hincrby(key, field, amount)


def parse_usage(raw: Mapping[Any, Any]) -> Dict[str, Any]:
    """A usage hash as numbers: totals, and the same by use under `by_use`."""
    def number(value: Any) -> Any:
        text = value.decode() if isinstance(value, bytes) else str(value)
        return float(text) if "." in text or "e" in text.lower() else int(text)

    result: Dict[str, Any] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                              "cost_usd": 0.0, "by_use": {}}
    for key, value in raw.items():
        field = key.decode() if isinstance(key, bytes) else str(key)
        amount = number(value)
        if ":" in field:
            use, _, name = field.partition(":")
            result["by_use"].setdefault(use, {})[name] = amount
        else:
            result[field] = amount
    result["cost_usd"] = float(result["cost_usd"])
    for per_use in result["by_use"].values():
        if "cost_usd" in per_use:
            per_use["cost_usd"] = float(per_use["cost_usd"])
    return result


class UsageMeter:
    """Budget checks and usage records on an async Redis client (Rasa and action servers)."""

    def __init__(self, client: aioredis.Redis, config: LlmConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.config = config
        self.clock = clock

    @property
    def _window_seconds(self) -> int:
        return max(1, int(self.config.budgets.conversation_window_hours * 3600))

    async def check(self, use: str, conversation_id: Optional[str],
                    estimated_prompt_tokens: int) -> Optional[str]:
        """None when the call may go ahead, else why not (and the skip is counted)."""
        budgets = self.config.budgets
        if estimated_prompt_tokens > budgets.max_context_tokens:
            reason = CONTEXT_TOO_LARGE
        else:
            month = month_of(self.clock())
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.hget(redis_keys.llm_usage_month(month), "cost_usd")
                if conversation_id:
                    pipe.hmget(redis_keys.llm_usage_conversation(conversation_id),
                               "prompt_tokens", "completion_tokens")
                values = await pipe.execute()
            except redis.RedisError as error:
                # no budget check, no call: money is not spent blind
                logger.warning("LLM budget unknown, Redis failed: %s", error,
                               extra={"use": use, "reason": BUDGET_UNKNOWN})
                return BUDGET_UNKNOWN
            month_cost = float(values[0] or 0)
            used = sum(int(v or 0) for v in values[1]) if conversation_id else 0
            if month_cost >= budgets.monthly_usd:
                reason = MONTHLY_BUDGET
                await self._alert_monthly_exceeded(month, month_cost)
            elif conversation_id and (used >= budgets.conversation_tokens or
                                      used + estimated_prompt_tokens > budgets.conversation_tokens):
                reason = CONVERSATION_BUDGET
            else:
                return None
        logger.info("LLM call skipped: %s", reason, extra={
            "use": use, "reason": reason, "estimated_prompt_tokens": estimated_prompt_tokens})
        await self.count(use, "skipped_budget")
        return reason

    async def record(self, conversation_id: Optional[str], usage: Usage) -> float:
        """Add one call's usage everywhere; returns its cost in USD. Never raises."""
        if not self.config.is_priced(usage.model) and usage.model not in _UNPRICED_WARNED:
            _UNPRICED_WARNED.add(usage.model)
            logger.warning("LLM model %s has no price in config/llm.yml and no default: its "
                           "calls count as free and the monthly budget cannot stop them",
                           usage.model, extra={"model": usage.model})
        cost = cost_usd(usage, self.config.price_for(usage.model))
        month = month_of(self.clock())
        pairs = _increments(usage, cost)
        month_key = redis_keys.llm_usage_month(month)
        try:
            pipe = self.client.pipeline(transaction=True)
            _apply(pipe, month_key, pairs)
            pipe.expire(month_key, MONTH_KEY_TTL_SECONDS)
            _apply(pipe, redis_keys.llm_usage_total(), pairs)
            if conversation_id:
                key = redis_keys.llm_usage_conversation(conversation_id)
                _apply(pipe, key, pairs)
                pipe.expire(key, self._window_seconds, nx=True)
                pipe.hget(key, "cost_usd")
            pipe.hget(month_key, "cost_usd")
            results = await pipe.execute()
        except redis.RedisError as error:
            logger.error("LLM usage not recorded, Redis failed: %s", error,
                         extra={"use": usage.use, "model": usage.model, "cost_usd": cost})
            return cost
        logger.info("LLM usage", extra={
            "use": usage.use, "model": usage.model, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cost_usd": round(cost, 6),
            "estimated": usage.estimated})
        month_cost = float(results[-1] or 0)
        budgets = self.config.budgets
        if month_cost >= budgets.monthly_usd:
            await self._alert_monthly_exceeded(month, month_cost)
        elif month_cost >= budgets.monthly_usd * budgets.monthly_warning_fraction:
            if await self._first_alert("monthly_warning", month, MONTH_KEY_TTL_SECONDS):
                logger.warning(
                    "LLM monthly spend %s USD passed %d%% of the %s USD budget",
                    round(month_cost, 4), round(budgets.monthly_warning_fraction * 100),
                    budgets.monthly_usd,
                    extra={"alert": "llm_monthly_warning", "month": month, "cost_usd": month_cost})
        if conversation_id:
            conversation_cost = float(results[-2] or 0)
            if conversation_cost > budgets.ticket_cost_alert_usd and await self._first_alert(
                    "ticket_cost", conversation_id, self._window_seconds):
                logger.warning(
                    "LLM cost of one conversation %.4f USD is above %.2f USD",
                    conversation_cost, budgets.ticket_cost_alert_usd,
                    extra={"alert": "llm_ticket_cost", "conversation_id": conversation_id,
                           "cost_usd": conversation_cost})
        return cost

    async def count(self, use: str, outcome: str) -> None:
        """Count an outcome (failed, invalid, refused, skipped_budget, cache_hit) of a use."""
        month_key = redis_keys.llm_usage_month(month_of(self.clock()))
        pairs = [(outcome, 1), (f"{use}:{outcome}", 1)]
        try:
            pipe = self.client.pipeline(transaction=False)
            _apply(pipe, month_key, pairs)
            pipe.expire(month_key, MONTH_KEY_TTL_SECONDS)
            _apply(pipe, redis_keys.llm_usage_total(), pairs)
            await pipe.execute()
        except redis.RedisError as error:
            logger.warning("LLM outcome not counted: %s", error, extra={"use": use})

    async def _first_alert(self, kind: str, scope: str, ttl: int) -> bool:
        try:
            return bool(await self.client.set(redis_keys.llm_alert_sent(kind, scope), "1",
                                              nx=True, ex=ttl))
        except redis.RedisError:
            return True  # better a repeated alert than a lost one

    async def _alert_monthly_exceeded(self, month: str, month_cost: float) -> None:
        if await self._first_alert("monthly_budget", month, MONTH_KEY_TTL_SECONDS):
            logger.error(
                "LLM monthly budget reached: %s USD of %s USD; LLM uses are off until next "
                "month", round(month_cost, 4), self.config.budgets.monthly_usd,
                extra={"alert": "llm_monthly_budget", "month": month, "cost_usd": month_cost})

    # --- reading, for metrics and callers ---------------------------------------------

    async def conversation_usage(self, conversation_id: str) -> Dict[str, Any]:
        return parse_usage(await self.client.hgetall(
            redis_keys.llm_usage_conversation(conversation_id)))

    async def month_usage(self, month: Optional[str] = None) -> Dict[str, Any]:
        month = month or month_of(self.clock())
        return parse_usage(await self.client.hgetall(redis_keys.llm_usage_month(month)))

    async def total_usage(self) -> Dict[str, Any]:
        return parse_usage(await self.client.hgetall(redis_keys.llm_usage_total()))

    async def reset_conversation(self, conversation_id: str) -> None:
        """A new incident starts with a fresh token budget (call when a ticket is done)."""
        await self.client.delete(redis_keys.llm_usage_conversation(conversation_id),
                                 redis_keys.llm_alert_sent("ticket_cost", conversation_id))


# --- sync side: workers, metrics endpoints and the index build ---------------------------


def read_usage(client: redis.Redis, month: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """{"month": ..., "total": ...} usage for a sync caller (metrics exporter, scripts)."""
    month = month or month_of(time.time())
    return {
        "month": parse_usage(client.hgetall(redis_keys.llm_usage_month(month))),
        "total": parse_usage(client.hgetall(redis_keys.llm_usage_total())),
    }


def monthly_budget_reached(client: redis.Redis, config: LlmConfig) -> bool:
    month = month_of(time.time())
    cost = client.hget(redis_keys.llm_usage_month(month), "cost_usd")
    return float(cost or 0) >= config.budgets.monthly_usd


def record_sync(client: redis.Redis, config: LlmConfig, usage: Usage) -> float:
    """Record a call made outside an event loop (embeddings during an index build)."""
    cost = cost_usd(usage, config.price_for(usage.model))
    month_key = redis_keys.llm_usage_month(month_of(time.time()))
    pairs = _increments(usage, cost)
    pipe = client.pipeline(transaction=True)
    _apply(pipe, month_key, pairs)
    pipe.expire(month_key, MONTH_KEY_TTL_SECONDS)
    _apply(pipe, redis_keys.llm_usage_total(), pairs)
    pipe.execute()
    return cost
