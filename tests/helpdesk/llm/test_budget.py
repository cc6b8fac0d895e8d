"""Tokens and cost per call, per conversation and per month in the real Redis; the budgets
that switch the LLM off, and the alerts they log once."""
import logging
import time

import pytest
import redis.asyncio as aioredis

from helpdesk import redis_keys
from helpdesk.llm import uses as llm_uses
from helpdesk.launch import free_port
from helpdesk.llm import LlmClient
from helpdesk.llm import Usage, cost_usd, month_of, read_usage
from helpdesk.config import Price
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (CHAT_MODEL, client_for, fake, fast_config,  # noqa: F401
                                    provider, run)

SUBJECT = Reply.json({"subject": "Caja 2 no enciende"})


def subjects(redis_url, providers, conversations, config=None):
    """phrase_subject once per conversation id given; the answers and the client's meter
    readings (conversation usage of the first, month usage)."""
    async def scenario():
        client = client_for(redis_url, providers, config)
        try:
            answers = [await llm_uses.phrase_subject(client, "POS", "la caja no enciende", c)
                       for c in conversations]
            return (answers, await client.meter.conversation_usage(conversations[0]),
                    await client.meter.month_usage())
        finally:
            await client.close()

    return run(scenario())


def usage(prompt, completion, **extra):
    return {"prompt_tokens": prompt, "completion_tokens": completion, **extra}


def test_tokens_and_cost_are_recorded_per_conversation_month_and_use(
        redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"subject": "Caja 2 no enciende"}, usage=usage(1000, 500)),
                   Reply.json({"subject": "Caja 3 no enciende"}, usage=usage(2000, 100)))
    answers, conversation, month = subjects(redis_url, [provider(fake)], ["c1", "c2"])
    assert answers == ["Caja 2 no enciende", "Caja 3 no enciende"]
    # gpt-4o-mini: 0.15 USD per 1M input tokens, 0.60 per 1M output tokens
    assert conversation["calls"] == 1
    assert conversation["prompt_tokens"] == 1000 and conversation["completion_tokens"] == 500
    assert conversation["cost_usd"] == pytest.approx(1000 * 0.15e-6 + 500 * 0.60e-6)
    assert month["calls"] == 2 and month["prompt_tokens"] == 3000
    assert month["cost_usd"] == pytest.approx(0.00045 + 2000 * 0.15e-6 + 100 * 0.60e-6)
    assert month["by_use"]["subject"]["calls"] == 2
    assert month["by_use"]["subject"]["cost_usd"] == pytest.approx(month["cost_usd"])
    # the sync reader (metrics, workers) sees the same numbers, and the all-time totals
    totals = read_usage(redis_client)
    assert totals["month"]["cost_usd"] == pytest.approx(month["cost_usd"])
    assert totals["total"]["calls"] == 2


def test_a_conversation_window_expires(redis_client, redis_url, fake):
    fake.chat.push(SUBJECT)
    subjects(redis_url, [provider(fake)], ["c1"])
    ttl = redis_client.ttl(redis_keys.llm_usage_conversation("c1"))
    assert 0 < ttl <= 24 * 3600
    assert redis_client.ttl(redis_keys.llm_usage_month(month_of(time.time()))) > 0


def test_prices():
    price = Price(input=0.15, output=0.60, cached_input=0.075)
    assert cost_usd(Usage("x", "m", 1_000_000, 0), price) == pytest.approx(0.15)
    assert cost_usd(Usage("x", "m", 1_000_000, 1_000_000, cached_tokens=400_000), price) == \
        pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.60)
    assert cost_usd(Usage("x", "m", audio_seconds=90), Price(per_audio_minute=0.006)) == \
        pytest.approx(0.009)
    config = fast_config()
    assert config.price_for("openai/gpt-4o-mini") == config.prices["gpt-4o-mini"]
    assert config.price_for("some-new-model") == config.prices["default"]


def test_a_transcription_is_priced_by_the_minute(redis_client, redis_url, fake):
    fake.transcriptions.push(Reply.text("La caja no anda.", usage={"type": "duration",
                                                                    "seconds": 30}))

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            await llm_uses.transcribe(client, b"OggS-audio", "audio/ogg", "n.ogg", "c1")
            return await client.meter.conversation_usage("c1")
        finally:
            await client.close()

    assert run(scenario())["cost_usd"] == pytest.approx(0.5 * 0.006)  # whisper-1


def test_an_answer_without_usage_is_estimated(redis_client, redis_url, fake):
    reply = Reply.json({"subject": "Caja 2 no enciende"})
    reply.body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                  "model": CHAT_MODEL, "choices": [{"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": reply.content}}]}
    fake.chat.push(reply)
    _, conversation, month = subjects(redis_url, [provider(fake)], ["c1"])
    assert conversation["prompt_tokens"] > 300  # the system prompt alone is longer
    assert month["estimated_calls"] == 1


def test_an_exhausted_conversation_budget_makes_no_call(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"subject": "Caja 2 no enciende"}, usage=usage(3900, 200)),
                   SUBJECT)
    answers, conversation, month = subjects(redis_url, [provider(fake)], ["c1", "c1", "c2"])
    assert answers == ["Caja 2 no enciende", None, "Caja 2 no enciende"]
    assert len(fake.chat_requests) == 2  # the second c1 call never reached the provider
    assert conversation["prompt_tokens"] + conversation["completion_tokens"] == 4100
    assert month["skipped_budget"] == 1


def test_a_prompt_that_would_pass_the_budget_is_not_sent(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"subject": "Caja 2 no enciende"}, usage=usage(3700, 100)))
    answers, _, _ = subjects(redis_url, [provider(fake)], ["c1", "c1"])
    # 3,800 used: the next prompt (about 400 tokens) would go above 4,000
    assert answers == ["Caja 2 no enciende", None]
    assert len(fake.chat_requests) == 1


def test_a_new_incident_gets_a_fresh_budget(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"subject": "Caja 2 no enciende"}, usage=usage(4000, 10)),
                   SUBJECT)

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            first = await llm_uses.phrase_subject(client, "POS", "no enciende", "c1")
            blocked = await llm_uses.phrase_subject(client, "POS", "no enciende", "c1")
            await client.meter.reset_conversation("c1")
            again = await llm_uses.phrase_subject(client, "POS", "no enciende", "c1")
            return first, blocked, again
        finally:
            await client.close()

    first, blocked, again = run(scenario())
    assert first and again and blocked is None


def test_a_prompt_above_the_context_limit_is_not_sent(redis_client, redis_url, fake):
    answers, _, month = subjects(redis_url, [provider(fake)], ["c1"],
                                 fast_config(max_context_tokens=100))
    assert answers == [None] and fake.requests == []
    assert month["skipped_budget"] == 1


def test_the_monthly_budget_switches_the_llm_off_with_one_alert(
        redis_client, redis_url, fake, caplog):
    # 0.00045 USD a call against a 0.00055 USD month: the first passes 80 % (a warning),
    # the second passes the budget (an alert), then nothing is sent
    fake.chat.push(*[Reply.json({"subject": "Caja 2 no enciende"}, usage=usage(1000, 500))
                     for _ in range(2)])
    config = fast_config(monthly_usd=0.00055, conversation_tokens=1_000_000)
    with caplog.at_level(logging.INFO, logger="helpdesk.llm"):
        answers, _, month = subjects(redis_url, [provider(fake)],
                                     ["c1", "c2", "c3", "c4"], config)
    assert answers == ["Caja 2 no enciende", "Caja 2 no enciende", None, None]
    assert len(fake.chat_requests) == 2
    alerts = [r for r in caplog.records if getattr(r, "alert", None) == "llm_monthly_budget"]
    assert len(alerts) == 1 and alerts[0].levelname == "ERROR"
    assert month["skipped_budget"] == 2
    warnings = [r for r in caplog.records if getattr(r, "alert", None) == "llm_monthly_warning"]
    assert len(warnings) == 1


def test_an_expensive_conversation_is_reported_once(redis_client, redis_url, fake, caplog):
    # 0.15 USD per 1M input tokens: 1,000,000 tokens cost more than the 0.10 USD per ticket
    fake.chat.push(*[Reply.json({"subject": "Caja 2 no enciende"}, usage=usage(1_000_000, 0))
                     for _ in range(2)])
    config = fast_config(conversation_tokens=10_000_000)
    with caplog.at_level(logging.WARNING, logger="helpdesk.llm"):
        subjects(redis_url, [provider(fake)], ["c1", "c1"], config)
    alerts = [r for r in caplog.records if getattr(r, "alert", None) == "llm_ticket_cost"]
    assert len(alerts) == 1 and alerts[0].conversation_id == "c1"


def test_without_redis_no_money_is_spent_blind(redis_url, fake):
    dead = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario():
        client = LlmClient([provider(fake)], fast_config(), aioredis.Redis.from_url(
            dead, socket_connect_timeout=0.5, socket_timeout=0.5))
        try:
            return await llm_uses.phrase_subject(client, "POS", "no enciende", "c1")
        finally:
            await client.close()

    assert run(scenario()) is None
    assert fake.requests == []


def test_cache_hits_are_free_even_when_the_budget_is_spent(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"intent": "greet", "confidence": 0.9, "entities": []},
                              usage=usage(4000, 10)))
    intents = {"greet": ["hola"], "goodbye": ["chau"]}

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            return [await llm_uses.choose_intent(client, "buenas", intents, [], "c1")
                    for _ in range(2)]
        finally:
            await client.close()

    assert run(scenario()) == [{"intent": "greet", "confidence": 0.9, "entities": []}] * 2
    assert len(fake.chat_requests) == 1
