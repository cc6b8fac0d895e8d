"""The provider chain over real HTTP: the per-request timeout and the chain's deadline,
providers that do not answer, each provider's key, and structured answers that are invalid,
refused or of the wrong shape. (What is retried and what goes to the next provider:
test_retry.py.)"""
import asyncio
import json
import logging
import time

import pytest

from helpdesk.launch import free_port
from helpdesk.llm import schemas as llm_schemas
from helpdesk.llm import uses as llm_uses
from helpdesk.llm import Provider, provider_chain
from helpdesk.settings import LlmSettings
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (CHAT_MODEL, FALLBACK_MODEL, SUBJECT, chain,  # noqa: F401
                                        client_for, fake, fallback_fake, fast_config, provider,
                                        run, subject)


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
