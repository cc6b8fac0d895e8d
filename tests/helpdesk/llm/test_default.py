"""The bot's uses bound to the process's default client (helpdesk.llm.default), configured by
the environment: none without an LLM, each through the configured client, usage totals, never
an exception, one client per event loop."""
from helpdesk.llm import default as llm
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (CONVERSATION, ENTITIES, INTENTS, OGG,  # noqa: F401
                                        PASSAGES, PNG, SCREENSHOT, configure_env, fake, run)


async def _every_use():
    try:
        return [
            await llm.answer_from_passages("¿Cómo hago el arqueo?", PASSAGES, CONVERSATION),
            await llm.read_screenshot(PNG, "image/png", CONVERSATION),
            await llm.choose_intent("la caja no enciende", INTENTS, ENTITIES, CONVERSATION),
            await llm.transcribe(OGG, "audio/ogg", "nota.ogg", CONVERSATION),
            await llm.phrase_subject("POS", "la caja no enciende", CONVERSATION),
            await llm.embed(["caja"]),
        ]
    finally:
        await llm.close_default_client()


def test_without_an_llm_every_use_is_none(monkeypatch, redis_client, redis_url):
    configure_env(monkeypatch, redis_url)
    assert run(_every_use()) == [None] * 6


def test_every_use_through_the_configured_client(monkeypatch, redis_client, redis_url, fake):
    configure_env(monkeypatch, redis_url, fake)
    fake.chat.push(
        Reply.json({"covered": True, "answer": "Cuente el efectivo.", "sources": [1]}),
        Reply.json(SCREENSHOT),
        Reply.json({"intent": "report_incident", "confidence": 0.9, "entities": []}),
        Reply.json({"subject": "Caja sin energía"}),
    )
    fake.transcriptions.push(Reply.text("La caja no enciende."))
    answer, reading, intent, text, subject, vectors = run(_every_use())
    assert answer.sources == ("Cierre de caja",)
    assert reading["system"] == "impresora fiscal"
    assert intent["intent"] == "report_incident"
    assert text == "La caja no enciende."
    assert subject == "Caja sin energía"
    assert vectors.shape == (1, 16)
    assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk-test"}
    totals = run(_totals())
    assert totals["month"]["calls"] == 6
    assert set(totals["month"]["by_use"]) == {"knowledge_answer", "screenshot", "intent",
                                              "transcription", "subject", "embedding"}


async def _totals():
    try:
        return await llm.usage_totals()
    finally:
        await llm.close_default_client()


def test_an_unexpected_error_in_a_use_never_breaks_the_turn(monkeypatch, redis_client, redis_url,
                                                           fake):
    configure_env(monkeypatch, redis_url, fake)

    async def scenario():
        try:
            # passages of the wrong kind: a bug in the caller, logged, not raised
            return await llm.answer_from_passages("¿Cómo?", None, CONVERSATION)
        finally:
            await llm.close_default_client()

    assert run(scenario()) is None


def test_one_client_per_event_loop(monkeypatch, redis_client, redis_url, fake):
    configure_env(monkeypatch, redis_url, fake)

    async def scenario():
        try:
            first = await llm.default_client()
            assert first is await llm.default_client()
            return first
        finally:
            await llm.close_default_client()

    assert run(scenario()) is not run(scenario())
