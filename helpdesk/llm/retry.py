"""The retry policy of every LLM request, async (`helpdesk.llm.client`) and sync (the index
build's embedder, `helpdesk.llm.embed`): retry a 429, a 5xx or a dropped connection on the same
provider with backoff, honouring the provider's Retry-After while it is short; anything else
(a timeout, another 4xx, a quota used up, retries used up) goes to the next provider.

It reads the `openai` library's errors, so it is listed with the client modules in
tests/test_layout.py; it sends nothing itself.
"""
import asyncio
import random
from typing import Optional, Tuple

import openai

from helpdesk.config import LlmConfig


def _retry_after(error: openai.APIStatusError) -> Optional[float]:
    """Seconds the provider asks us to wait (retry-after-ms or retry-after in seconds)."""
    headers = error.response.headers if error.response is not None else {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: use our own backoff
    return None


def _error_code(error: openai.APIStatusError) -> Optional[str]:
    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    code = inner.get("code") or inner.get("type")
    return str(code) if code else None


def backoff_seconds(attempt: int, config: LlmConfig) -> float:
    base = config.backoff_initial_seconds * (2 ** attempt)
    return min(base, config.backoff_max_seconds) * random.uniform(0.75, 1.0)


def failure_verdict(error: BaseException, attempt: int, config: LlmConfig
                    ) -> Tuple[str, Optional[float], str]:
    """("retry", seconds, why) or ("next", None, why) for a failed request: retry a 429, a
    5xx or a dropped connection while retries last; anything else goes to the next provider."""
    if isinstance(error, (asyncio.TimeoutError, openai.APITimeoutError)):
        return "next", None, "timeout"
    wait: Optional[float] = None
    if isinstance(error, openai.APIConnectionError):
        why = "connection"
    elif isinstance(error, openai.APIStatusError):
        code = _error_code(error)
        why = f"http {error.status_code}" + (f" {code}" if code else "")
        if error.status_code == 429 and code == "insufficient_quota":
            return "next", None, why  # no amount of waiting helps
        if error.status_code != 429 and error.status_code < 500:
            return "next", None, why
        wait = _retry_after(error)
        if wait is not None and wait > config.backoff_max_seconds:
            return "next", None, f"{why} retry-after {wait:g}s"
    else:
        return "next", None, f"{type(error).__name__}: {error}"[:300]
    if attempt >= config.retries:
        return "next", None, why
    return "retry", wait if wait is not None else backoff_seconds(attempt, config), why
