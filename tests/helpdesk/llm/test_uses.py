"""Every LLM use (helpdesk.llm.uses) on a client against the fake OpenAI server. (The same
uses bound to the process's default client: test_default.py.)"""
import dataclasses

import numpy as np
import pytest
import redis.asyncio as aioredis

from helpdesk.llm import uses as llm_uses
from helpdesk.llm import KnowledgeAnswer, LlmClient, load_prompts
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (CONVERSATION, EMBEDDING_MODEL,  # noqa: F401
                                        ENTITIES, FALLBACK_MODEL, INTENTS, OGG, PASSAGES, PNG,
                                        SCREENSHOT, TRANSCRIBE_MODEL, VISION_MODEL, client_for,
                                        fake, fallback_fake, fast_config, provider, run)


def use(redis_url, providers, function, *args, config=None, **kwargs):
    """Run one use on a fresh client against the fakes."""
    async def scenario():
        client = client_for(redis_url, providers, config)
        try:
            return await function(client, *args, **kwargs)
        finally:
            await client.close()

    return run(scenario())


# --- knowledge answers ------------------------------------------------------------------


def test_a_grounded_answer_cites_the_titles(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"covered": True, "answer": "Cuente el efectivo y anote la "
                               "diferencia.", "sources": [1, 3]}))
    answer = use(redis_url, [provider(fake)], llm_uses.answer_from_passages,
                 "¿Cómo hago el arqueo?", PASSAGES, CONVERSATION)
    assert answer == KnowledgeAnswer(covered=True,
                                     answer="Cuente el efectivo y anote la diferencia.",
                                     sources=("Cierre de caja",))
    sent = fake.chat_requests[0]
    prompt = sent.text()
    assert "¿Cómo hago el arqueo?" in prompt
    assert "[1] Cierre de caja — Arqueo\nCuente el efectivo" in prompt
    assert "[2] Impresora fiscal — Atasco de papel" in prompt
    # the master rules and the schema travel with every chat prompt
    assert "Nunca invente datos" in sent.json["messages"][0]["content"]
    assert '"covered"' in sent.json["messages"][0]["content"]


def test_passages_that_do_not_cover_the_question(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"covered": False, "answer": None, "sources": []}))
    answer = use(redis_url, [provider(fake)], llm_uses.answer_from_passages,
                 "¿Cuál es el horario del depósito?", PASSAGES, CONVERSATION)
    assert answer == KnowledgeAnswer(covered=False, answer=None, sources=())


@pytest.mark.parametrize("data", [
    {"covered": True, "answer": "Reinicie.", "sources": [7]},        # a passage not given
    {"covered": True, "answer": "Reinicie.", "sources": []},         # no citation
    {"covered": True, "answer": "  ", "sources": [1]},               # no answer
    {"covered": "sí", "answer": "Reinicie.", "sources": [1]},        # wrong type
])
def test_ungrounded_answers_are_no_answer(redis_client, redis_url, fake, data):
    fake.chat.push(Reply.json(data))
    assert use(redis_url, [provider(fake)], llm_uses.answer_from_passages,
               "¿Cómo hago el arqueo?", PASSAGES, CONVERSATION) is None


def test_no_passages_is_not_covered_without_asking(redis_client, redis_url, fake):
    answer = use(redis_url, [provider(fake)], llm_uses.answer_from_passages,
                 "¿Cómo hago el arqueo?", [], CONVERSATION)
    assert answer == KnowledgeAnswer(covered=False, answer=None)
    assert fake.requests == []


def test_passages_are_limited_in_number_and_length(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"covered": False, "answer": None, "sources": []}))
    many = [{"title": f"Artículo {i}", "heading": "Sección", "text": "palabra " * 1000}
            for i in range(9)]
    use(redis_url, [provider(fake)], llm_uses.answer_from_passages, "¿Qué hago?", many,
        CONVERSATION)
    user = fake.chat_requests[0].json["messages"][1]["content"]
    assert "[5] Artículo 4" in user and "[6]" not in user
    assert user.count("palabra") == 5 * ("palabra " * 1000)[:1500].count("palabra")


def test_the_same_question_on_the_same_passages_is_answered_from_the_cache(
        redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"covered": True, "answer": "Cuente el efectivo.", "sources": [1]}))

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            first = await llm_uses.answer_from_passages(client, "¿Cómo hago el arqueo?",
                                                        PASSAGES, "a")
            second = await llm_uses.answer_from_passages(client, "¿como hago el ARQUEO", PASSAGES,
                                                         "b")
            return first, second, await client.meter.month_usage()
        finally:
            await client.close()

    first, second, usage = run(scenario())
    assert first == second and first.covered
    assert len(fake.chat_requests) == 1
    assert usage["cache_hit"] == 1


# --- screenshots ------------------------------------------------------------------------


def test_a_screenshot_is_read_by_the_vision_model(redis_client, redis_url, fake):
    fake.chat.push(Reply.json(SCREENSHOT))
    result = use(redis_url, [provider(fake)], llm_uses.read_screenshot, PNG, "image/png",
                 CONVERSATION, systems=["POS", "impresora fiscal"])
    assert result == {"error_messages": ["Error 1042: impresora fiscal sin papel"],
                      "system": "impresora fiscal", "store": None,
                      "description": "La caja muestra un error de la impresora fiscal."}
    sent = fake.chat_requests[0]
    assert sent.model == VISION_MODEL
    assert sent.images == [("image/png", PNG)]  # the bytes arrived as a base64 data URL
    part = sent.json["messages"][1]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["detail"] == "high"
    assert "POS, impresora fiscal" in sent.json["messages"][0]["content"]


@pytest.mark.parametrize("image, mime", [
    (PNG, "application/pdf"),
    (b"", "image/png"),
])
def test_images_the_model_cannot_take_are_not_sent(redis_client, redis_url, fake, image, mime):
    assert use(redis_url, [provider(fake)], llm_uses.read_screenshot, image, mime,
               CONVERSATION) is None
    assert fake.requests == []


def test_an_image_above_the_size_limit_is_not_sent(redis_client, redis_url, fake):
    config = fast_config()
    config = dataclasses.replace(config, screenshot=dataclasses.replace(
        config.screenshot, max_image_bytes=10))
    assert use(redis_url, [provider(fake)], llm_uses.read_screenshot, PNG, "image/png",
               CONVERSATION, config=config) is None
    assert fake.requests == []


@pytest.mark.parametrize("reply", [
    Reply.refused("No puedo analizar esta imagen."),
    Reply.invalid_json(),
    Reply.json({"error_messages": "Error 1042", "system": None, "store": None,
                "description": None}),
])
def test_refused_or_invalid_screenshot_readings_are_no_answer(redis_client, redis_url, fake,
                                                             reply):
    fake.chat.push(reply)
    assert use(redis_url, [provider(fake)], llm_uses.read_screenshot, PNG, "image/jpeg",
               CONVERSATION) is None


def test_without_a_vision_model_no_image_is_sent(redis_client, redis_url, fake):
    assert use(redis_url, [provider(fake, vision=None)], llm_uses.read_screenshot, PNG,
               "image/png", CONVERSATION) is None
    assert fake.requests == []


def test_the_vision_fallback_needs_its_own_vision_model(redis_client, redis_url, fake,
                                                        fallback_fake):
    fake.chat.push(Reply.server_error(), Reply.server_error())
    fallback_fake.chat.push(Reply.json(SCREENSHOT))
    providers = [provider(fake), provider(fallback_fake, 1, chat=FALLBACK_MODEL,
                                          vision=FALLBACK_MODEL)]
    result = use(redis_url, providers, llm_uses.read_screenshot, PNG, "image/png", CONVERSATION)
    assert result["system"] == "impresora fiscal"
    assert fallback_fake.chat_requests[0].model == FALLBACK_MODEL


# --- NLU fallback -----------------------------------------------------------------------


def test_the_llm_chooses_among_the_given_intents(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"intent": "report_incident", "confidence": 0.86, "entities": [
        {"entity": "system", "value": "Balanza"},
        {"entity": "store", "value": "42"},
        {"entity": "store", "value": "42"},
        {"entity": "person", "value": "Ana"},          # not a domain entity
        {"entity": "store", "value": "tienda 17"},     # not in the message: invented
    ]}))
    result = use(redis_url, [provider(fake)], llm_uses.choose_intent,
                 "che la balanza de la 42 está muerta", INTENTS, ENTITIES, CONVERSATION)
    assert result == {"intent": "report_incident", "confidence": 0.86, "entities": [
        {"entity": "system", "value": "Balanza"}, {"entity": "store", "value": "42"}]}
    system_prompt = fake.chat_requests[0].json["messages"][0]["content"]
    assert "- report_incident: «la caja no enciende» | «no anda el posnet»" in system_prompt
    assert "Tipos de entidad: store, system" in system_prompt


@pytest.mark.parametrize("data", [
    {"intent": "restart_server", "confidence": 0.99, "entities": []},   # not in the domain
    {"intent": "report_incident", "confidence": 0.4, "entities": []},   # below min_confidence
    {"intent": None, "confidence": 0.9, "entities": []},                # none fits
    {"intent": "greet", "confidence": 1.7, "entities": []},             # out of range
    {"intent": "greet", "entities": []},                                # missing field
])
def test_intents_outside_the_list_or_unsure_are_no_answer(redis_client, redis_url, fake, data):
    fake.chat.push(Reply.json(data))
    assert use(redis_url, [provider(fake)], llm_uses.choose_intent, "la caja 2 anda rara",
               INTENTS, ENTITIES, CONVERSATION) is None


def test_intent_choices_are_cached_by_text_and_intent_set(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"intent": "ask_howto", "confidence": 0.9, "entities": []}),
                   Reply.json({"intent": "greet", "confidence": 0.9, "entities": []}))

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            first = await llm_uses.choose_intent(client, "¿Cómo cierro la caja?", INTENTS,
                                                 ENTITIES, "a")
            again = await llm_uses.choose_intent(client, "como cierro la caja", INTENTS,
                                                 ENTITIES, "b")
            fewer = {k: v for k, v in INTENTS.items() if k != "ask_howto"}
            other_set = await llm_uses.choose_intent(client, "como cierro la caja", fewer,
                                                     ENTITIES, "b")
            return first, again, other_set
        finally:
            await client.close()

    first, again, other_set = run(scenario())
    assert first == again == {"intent": "ask_howto", "confidence": 0.9, "entities": []}
    assert other_set["intent"] == "greet"
    assert len(fake.chat_requests) == 2  # the second question was a cache hit


def test_an_intent_outside_the_list_is_not_cached(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"intent": "made_up", "confidence": 0.9, "entities": []}),
                   Reply.json({"intent": "greet", "confidence": 0.9, "entities": []}))

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            return [await llm_uses.choose_intent(client, "buenas", INTENTS, ENTITIES, "a")
                    for _ in range(2)]
        finally:
            await client.close()

    assert run(scenario()) == [None, {"intent": "greet", "confidence": 0.9, "entities": []}]


# --- voice notes ------------------------------------------------------------------------


def test_a_voice_note_is_transcribed(redis_client, redis_url, fake):
    fake.transcriptions.push(Reply.text("  La caja dos no enciende desde la mañana. ",
                                        usage={"type": "duration", "seconds": 7.5}))
    text = use(redis_url, [provider(fake)], llm_uses.transcribe, OGG,
               "audio/ogg; codecs=opus", "nota.ogg", CONVERSATION)
    assert text == "La caja dos no enciende desde la mañana."
    sent = fake.requests_to("/audio/transcriptions")[0]
    assert sent.form["model"] == TRANSCRIBE_MODEL
    assert sent.form["language"] == "es" and sent.form["response_format"] == "json"
    assert "impresora fiscal" in sent.form["prompt"]
    assert sent.files["file"] == ("nota.ogg", "audio/ogg", OGG)


def test_an_empty_or_failed_transcription_is_no_answer(redis_client, redis_url, fake):
    fake.transcriptions.push(Reply.text("   "))
    assert use(redis_url, [provider(fake)], llm_uses.transcribe, OGG, "audio/ogg", "n.ogg",
               CONVERSATION) is None
    fake.transcriptions.push(Reply.server_error(), Reply.server_error())
    assert use(redis_url, [provider(fake)], llm_uses.transcribe, OGG + b"x", "audio/ogg",
               "n.ogg", CONVERSATION) is None


def test_transcription_falls_back_to_a_provider_with_a_transcription_model(
        redis_client, redis_url, fake, fallback_fake):
    fake.transcriptions.push(Reply.slow(3, Reply.text("tarde")))
    fallback_fake.transcriptions.push(Reply.text("No anda el posnet."))
    providers = [provider(fake), provider(fallback_fake, 1, transcribe="gpt-4o-mini-transcribe")]
    text = use(redis_url, providers, llm_uses.transcribe, OGG, "audio/ogg", "n.ogg",
               CONVERSATION, config=fast_config(timeout=0.3))
    assert text == "No anda el posnet."
    assert fallback_fake.requests_to("/audio/transcriptions")[0].form["model"] == \
        "gpt-4o-mini-transcribe"


def test_without_a_transcription_model_nothing_is_sent(redis_client, redis_url, fake):
    assert use(redis_url, [provider(fake, transcribe=None)], llm_uses.transcribe, OGG,
               "audio/ogg", "n.ogg", CONVERSATION) is None
    assert fake.requests == []


def test_a_redelivered_voice_note_is_not_transcribed_twice(redis_client, redis_url, fake):
    fake.transcriptions.push(Reply.text("La balanza no pesa."))

    async def scenario():
        client = client_for(redis_url, [provider(fake)])
        try:
            return [await llm_uses.transcribe(client, OGG, "audio/ogg", "n.ogg", CONVERSATION)
                    for _ in range(2)]
        finally:
            await client.close()

    assert run(scenario()) == ["La balanza no pesa."] * 2
    assert len(fake.requests_to("/audio/transcriptions")) == 1


# --- ticket subject ---------------------------------------------------------------------


def test_a_subject_is_phrased(redis_client, redis_url, fake):
    fake.chat.push(Reply.json({"subject": "«Balanza de fiambrería no enciende.»"}))
    subject = use(redis_url, [provider(fake)], llm_uses.phrase_subject, "balanza",
                  "la balanza de la fiambreria no prende", CONVERSATION)
    assert subject == "Balanza de fiambrería no enciende"
    prompt = fake.chat_requests[0].text()
    assert "Sistema afectado: balanza" in prompt
    assert "Descripción del usuario: la balanza de la fiambreria no prende" in prompt


def test_no_description_no_subject(redis_client, redis_url, fake):
    assert use(redis_url, [provider(fake)], llm_uses.phrase_subject, "POS", "  ",
               CONVERSATION) is None
    assert fake.requests == []


# --- embeddings -------------------------------------------------------------------------


def test_query_embeddings_are_unit_float32_rows(redis_client, redis_url, fake):
    vectors = use(redis_url, [provider(fake)], llm_uses.embed,
                  ["¿cómo cierro la caja?", "la impresora no imprime"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    sent = fake.requests_to("/embeddings")[0]
    assert sent.model == EMBEDDING_MODEL and sent.json["encoding_format"] == "float"


def test_without_an_embedding_model_there_are_no_vectors(redis_client, redis_url, fake):
    assert use(redis_url, [provider(fake, embedding=None)], llm_uses.embed, ["caja"]) is None


# --- fillers ----------------------------------------------------------------------------


def test_where_there_is_nothing_to_say_the_prompts_fillers_are_written(redis_client, redis_url,
                                                                       fake):
    changed = {name: dataclasses.replace(prompt, fillers={k: f"<{k}>" for k in prompt.fillers})
               for name, prompt in load_prompts().items()}
    fake.chat.push(Reply.json(SCREENSHOT),
                   Reply.json({"intent": "greet", "confidence": 0.9, "entities": []}),
                   Reply.json({"subject": "Caja sin energía"}))

    async def scenario():
        client = LlmClient([provider(fake)], fast_config(cache=0),
                           aioredis.Redis.from_url(redis_url), changed)
        try:
            await llm_uses.read_screenshot(client, PNG, "image/png", CONVERSATION, systems=())
            await llm_uses.choose_intent(client, "hola", {"greet": []}, [], CONVERSATION)
            await llm_uses.phrase_subject(client, None, "la caja no enciende", CONVERSATION)
        finally:
            await client.close()

    run(scenario())
    screenshot, intent, subject = (r.json["messages"] for r in fake.chat_requests)
    assert "nombres cuando corresponda: <no_systems>." in screenshot[0]["content"]
    assert "- greet: <no_examples>\n" in intent[0]["content"]
    assert "Tipos de entidad: <no_entities>\n" in intent[0]["content"]
    assert "Sistema afectado: <no_system>\n" in subject[1]["content"]
