"""The provider chain over real HTTP: retries on 429/5xx, the next provider on failure,
timeouts, and structured answers that are invalid, refused or of the wrong shape."""
import asyncio
import json
import logging
import time

import pytest

from helpdesk.llm import schemas as llm_schemas
from helpdesk.llm import uses as llm_uses
from helpdesk.errors import ConfigError
from helpdesk.launch import free_port
from helpdesk.llm import Provider, parse_fallbacks, provider_chain, providers_for
from helpdesk.settings import LlmSettings
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (CHAT_MODEL, FALLBACK_MODEL, client_for, fake,  # noqa: F401
                                    fallback_fake, fast_config, provider, run)

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


def test_a_slow_primary_times_out_and_the_fallback_answers(
        redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.slow(3, Reply.json(SUBJECT)))
    fallback_fake.chat.push(Reply.json({"subject": "Caja 2 sin energía"}))
    config = fast_config(timeout=0.3, deadline=2)
    started = time.monotonic()
    answer, _ = subject(redis_url, chain(fake, fallback_fake), config)
    elapsed = time.monotonic() - started
    assert answer == "Caja 2 sin energía"
    assert len(fake.chat_requests) == 1  # a timeout is not retried on the same provider
    assert elapsed < 1.5


def test_a_slow_only_provider_gives_no_answer_within_the_timeout(redis_client, redis_url, fake):
    fake.chat.push(Reply.slow(3, Reply.json(SUBJECT)))
    started = time.monotonic()
    answer, usage = subject(redis_url, [provider(fake)], fast_config(timeout=0.3, deadline=2))
    assert answer is None
    assert time.monotonic() - started < 1.2
    assert usage["failed"] == 1


def test_the_deadline_bounds_the_whole_chain(redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.slow(3))
    fallback_fake.chat.push(Reply.slow(3))
    started = time.monotonic()
    answer, _ = subject(redis_url, chain(fake, fallback_fake), fast_config(timeout=0.4,
                                                                           deadline=0.6))
    assert answer is None
    assert time.monotonic() - started < 1.3


def test_a_provider_nobody_listens_on_is_skipped(redis_client, redis_url, fake):
    dead = Provider(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="sk",
                    chat_model=CHAT_MODEL, position=0)
    fake.chat.push(Reply.json(SUBJECT))
    answer, _ = subject(redis_url, [dead, provider(fake, 1)])
    assert answer == "Caja 2 no enciende"


def test_a_4xx_goes_to_the_next_provider_without_retrying(
        redis_client, redis_url, fake, fallback_fake):
    fake.chat.push(Reply.bad_request("The model `gpt-4o-mini` does not exist.",
                                     code="model_not_found", status=404))
    fallback_fake.chat.push(Reply.json(SUBJECT))
    answer, _ = subject(redis_url, chain(fake, fallback_fake))
    assert answer == "Caja 2 no enciende"
    assert len(fake.chat_requests) == 1


def test_each_provider_gets_its_own_key(redis_client, redis_url, monkeypatch):
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI(api_key="sk-primary") as primary, FakeOpenAI(api_key="sk-gemini") as backup:
        monkeypatch.setenv("GEMINI_KEY_FOR_TEST", "sk-gemini")
        providers = provider_chain(LlmSettings(
            base_url=primary.base_url, api_key="sk-wrong", model=CHAT_MODEL, vision_model=None,
            embedding_model=None, transcribe_model=None,
            fallbacks=f"{backup.base_url}|{FALLBACK_MODEL}|GEMINI_KEY_FOR_TEST"),
            "https://api.openai.com/v1")
        backup.chat.push(Reply.json(SUBJECT))
        answer, _ = subject(redis_url, providers)
        assert answer == "Caja 2 no enciende"
        assert primary.chat_requests[0].headers["Authorization"] == "Bearer sk-wrong"  # 401
        assert backup.chat_requests[0].headers["Authorization"] == "Bearer sk-gemini"


# --- structured answers -----------------------------------------------------------------


@pytest.mark.parametrize("reply, outcome", [
    (Reply.invalid_json(), "invalid"),
    (Reply.text("El asunto es: la caja no enciende"), "invalid"),
    (Reply.json({"titulo": "Caja 2"}), "invalid"),                      # wrong shape
    (Reply.json({"subject": "x" * 121}), "invalid"),                   # above 120 characters
    (Reply.json(["Caja 2 no enciende"]), "invalid"),                   # not an object
    (Reply(content=None, finish_reason="length"), "invalid"),
    (Reply.refused(), "refused"),
    (Reply.json(SUBJECT, finish_reason="content_filter"), "refused"),
])
def test_unusable_answers_are_no_answer_and_not_retried_elsewhere(
        redis_client, redis_url, fake, fallback_fake, reply, outcome, caplog):
    fake.chat.push(reply)
    with caplog.at_level(logging.WARNING, logger="helpdesk.llm"):
        answer, usage = subject(redis_url, chain(fake, fallback_fake))
    assert answer is None
    assert fallback_fake.chat_requests == []
    assert usage[outcome] == 1
    assert usage["calls"] == 1  # the tokens were spent all the same
    assert any(getattr(r, "use", None) == "subject" for r in caplog.records)


def test_json_in_code_fences_is_accepted(redis_client, redis_url, fake):
    fake.chat.push(Reply.text("```json\n" + json.dumps(SUBJECT) + "\n```"))
    answer, _ = subject(redis_url, [provider(fake)])
    assert answer == "Caja 2 no enciende"


@pytest.mark.parametrize("mode", ["json_object", "json_schema", "none"])
def test_the_response_format_follows_the_configured_mode(redis_client, redis_url, fake, mode):
    fake.chat.push(Reply.json(SUBJECT))
    answer, _ = subject(redis_url, [provider(fake)], fast_config(structured_output=mode))
    assert answer == "Caja 2 no enciende"
    sent = fake.chat_requests[0].json
    # the schema always travels in the prompt
    assert '"subject"' in sent["messages"][0]["content"]
    if mode == "none":
        assert "response_format" not in sent
    elif mode == "json_object":
        assert sent["response_format"] == {"type": "json_object"}
    else:
        schema = sent["response_format"]["json_schema"]
        assert schema["strict"] is True and schema["name"] == "subject"
        assert schema["schema"] == llm_schemas.provider_schema(llm_schemas.SUBJECT)
        assert "maxLength" not in json.dumps(schema["schema"])
    assert sent["max_tokens"] == 80 and sent["temperature"] == 0.2


def test_a_slow_llm_call_does_not_block_the_event_loop(redis_client, redis_url, fake):
    fake.chat.push(Reply.slow(0.5, Reply.json(SUBJECT)))

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            answer = await llm_uses.phrase_subject(client, "POS", "no enciende", "c1")
        finally:
            task.cancel()
            await client.close()
        return answer, ticks

    answer, ticks = run(scenario())
    assert answer == "Caja 2 no enciende"
    assert ticks >= 20  # the loop kept running other work during the 0.5 s wait


# --- the chain from settings ------------------------------------------------------------


def settings(**values):
    base = dict(base_url="https://api.openai.com/v1", api_key="sk-main", model=CHAT_MODEL,
                vision_model="gpt-4o", embedding_model="text-embedding-3-small",
                transcribe_model="whisper-1", fallbacks=None)
    base.update(values)
    return LlmSettings(**base)


def test_the_chain_from_settings(monkeypatch):
    monkeypatch.setenv("XAI_KEY_FOR_TEST", "xai-123")
    chain_ = provider_chain(settings(fallbacks=(
        "https://generativelanguage.googleapis.com/v1beta/openai/|gemini-1.5-flash|"
        "XAI_KEY_FOR_TEST|vision=gemini-1.5-flash, "
        "https://api.openai.com/v1|gpt-4o|transcribe=gpt-4o-mini-transcribe, "
        "http://127.0.0.1:11434/v1|llama3.1")), "https://api.openai.com/v1")
    assert [p.chat_model for p in chain_] == [CHAT_MODEL, "gemini-1.5-flash", "gpt-4o",
                                              "llama3.1"]
    assert [p.position for p in chain_] == [0, 1, 2, 3]
    assert chain_[1].base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert chain_[1].api_key == "xai-123"
    assert chain_[2].api_key == "sk-main"  # same base URL as the primary: same key
    assert chain_[3].api_key is None  # a local server without a key
    assert [p.chat_model for p in providers_for(chain_, "vision")] == [CHAT_MODEL,
                                                                       "gemini-1.5-flash"]
    assert [p.transcribe_model for p in providers_for(chain_, "transcribe")] == [
        "whisper-1", "gpt-4o-mini-transcribe"]
    # embeddings never fall back: another model's vectors do not match the index
    assert [p.position for p in providers_for(chain_, "embedding")] == [0]
    assert "sk-main" not in chain_[0].label and chain_[0].label == "api.openai.com#0"


def test_no_base_url_uses_the_configured_default():
    chain_ = provider_chain(settings(base_url=None), "https://api.openai.com/v1")
    assert chain_[0].base_url == "https://api.openai.com/v1"
    assert provider_chain(None, "https://api.openai.com/v1") == []


@pytest.mark.parametrize("text, message", [
    ("https://x.example/v1", "expected base_url|model"),
    ("ftp://x.example|m", r"not an http\(s\) base URL"),
    ("https://x.example/v1|m|NOT_SET_ANYWHERE_KEY", "NOT_SET_ANYWHERE_KEY"),
    ("https://x.example/v1|m|colour=red", "unknown option 'colour'"),
])
def test_broken_fallback_entries_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_fallbacks(text, None)
