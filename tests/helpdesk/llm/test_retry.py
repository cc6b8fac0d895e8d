"""The retry policy (helpdesk.llm.retry): the same provider again after a 429, a 5xx or a
dropped connection, with backoff or the provider's short Retry-After; the next provider after
a timeout, another 4xx, a quota used up, a long Retry-After or retries used up. First the
verdicts themselves, then through the client's chain over real HTTP."""
import asyncio
import time

import httpx
import openai
import pytest

from helpdesk.llm.retry import backoff_seconds, failure_verdict
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (CHAT_MODEL, FALLBACK_MODEL, SUBJECT, chain,  # noqa: F401
                                        fake, fallback_fake, fast_config, subject)

REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def status_error(status, code=None, headers=None):
    """What the openai client raises for an HTTP error (its body: the inner "error" object)."""
    body = {"message": "x", "code": code}
    response = httpx.Response(status, headers=headers or {}, json={"error": body},
                              request=REQUEST)
    return openai.APIStatusError("x", response=response, body=body)


@pytest.mark.parametrize("error, verdict, why", [
    (status_error(500), "retry", "http 500"),
    (status_error(503, "overloaded"), "retry", "http 503 overloaded"),
    (status_error(429, "rate_limit_exceeded"), "retry", "http 429 rate_limit_exceeded"),
    (status_error(429, "insufficient_quota"), "next", "http 429 insufficient_quota"),
    (status_error(404, "model_not_found"), "next", "http 404 model_not_found"),
    (status_error(401), "next", "http 401"),
    (openai.APIConnectionError(request=REQUEST), "retry", "connection"),
    (openai.APITimeoutError(request=REQUEST), "next", "timeout"),
    (asyncio.TimeoutError(), "next", "timeout"),
    (ValueError("a bug"), "next", "ValueError: a bug"),
])
def test_the_verdict_of_each_failure(error, verdict, why):
    config = fast_config(retries=1, backoff=0.01, backoff_max=0.2)
    got, wait, reason = failure_verdict(error, 0, config)
    assert (got, reason) == (verdict, why)
    assert (wait is not None) == (verdict == "retry")
    # once retries are used up, nothing is retried
    assert failure_verdict(error, 1, config)[0] == "next"


def test_the_providers_retry_after_is_honoured_while_it_is_short():
    config = fast_config(backoff_max=0.2)
    assert failure_verdict(status_error(429, headers={"retry-after-ms": "150"}), 0, config
                           )[:2] == ("retry", pytest.approx(0.15))
    assert failure_verdict(status_error(503, headers={"retry-after": "0.1"}), 0, config
                           )[:2] == ("retry", pytest.approx(0.1))
    assert failure_verdict(status_error(429, headers={"retry-after": "30"}), 0, config
                           ) == ("next", None, "http 429 retry-after 30s")
    # an HTTP date is not read: our own backoff
    dated = status_error(429, headers={"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"})
    assert 0 < failure_verdict(dated, 0, config)[1] <= 0.01


def test_backoff_doubles_up_to_its_cap_with_jitter():
    config = fast_config(backoff=0.01, backoff_max=0.05)
    for attempt, ceiling in ((0, 0.01), (1, 0.02), (2, 0.04), (3, 0.05), (8, 0.05)):
        wait = backoff_seconds(attempt, config)
        assert 0.75 * ceiling <= wait <= ceiling


# --- through the chain ------------------------------------------------------------------


def test_primary_500_then_the_fallback_answers(redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.server_error(), Reply.server_error(503))
    fallback_fake.chat.push(Reply.json(SUBJECT))
    answer, usage = subject(redis_url, chain(fake, fallback_fake))
    assert answer == "Caja 2 no enciende"
    # one retry on the primary (retries: 1), then the fallback with its own model
    assert [r.model for r in fake.chat_requests] == [CHAT_MODEL, CHAT_MODEL]
    assert [r.model for r in fallback_fake.chat_requests] == [FALLBACK_MODEL]
    assert usage["calls"] == 1 and usage.get("failed", 0) == 0


def test_primary_429_then_ok_stays_on_the_primary(redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.rate_limited(retry_after=0.15), Reply.json(SUBJECT))
    started = time.monotonic()
    answer, _ = subject(redis_url, chain(fake, fallback_fake))
    assert answer == "Caja 2 no enciende"
    assert len(fake.chat_requests) == 2 and fallback_fake.chat_requests == []
    # the provider's Retry-After was honoured between the two requests
    gap = fake.chat_requests[1].at - fake.chat_requests[0].at
    assert gap >= 0.14
    assert time.monotonic() - started < 3


def test_insufficient_quota_goes_to_the_next_provider_without_retrying(
        redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.rate_limited(code="insufficient_quota"))
    fallback_fake.chat.push(Reply.json(SUBJECT))
    answer, _ = subject(redis_url, chain(fake, fallback_fake))
    assert answer == "Caja 2 no enciende"
    assert len(fake.chat_requests) == 1 and len(fallback_fake.chat_requests) == 1


def test_a_long_retry_after_goes_to_the_next_provider_at_once(
        redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.rate_limited(retry_after=30))
    fallback_fake.chat.push(Reply.json(SUBJECT))
    started = time.monotonic()
    answer, _ = subject(redis_url, chain(fake, fallback_fake))
    assert answer == "Caja 2 no enciende"
    assert len(fake.chat_requests) == 1
    assert time.monotonic() - started < 2


def test_retries_exhausted_everywhere_is_no_answer(redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(*[Reply.server_error()] * 2)
    fallback_fake.chat.push(*[Reply.rate_limited()] * 2)
    answer, usage = subject(redis_url, chain(fake, fallback_fake))
    assert answer is None
    assert len(fake.chat_requests) == 2 and len(fallback_fake.chat_requests) == 2
    assert usage["failed"] == 1 and usage["calls"] == 0 and usage["cost_usd"] == 0


def test_a_4xx_goes_to_the_next_provider_without_retrying(
        redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.bad_request("The model `gpt-4o-mini` does not exist.",
                                     code="model_not_found", status=404))
    fallback_fake.chat.push(Reply.json(SUBJECT))
    answer, _ = subject(redis_url, chain(fake, fallback_fake))
    assert answer == "Caja 2 no enciende"
    assert len(fake.chat_requests) == 1
