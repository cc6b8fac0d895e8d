"""The build-time embedder (helpdesk.llm.embed): batches, its dimension, usage in Redis,
failures raised, none without an embedding model; and its query-time `aembed`."""
import dataclasses

import numpy as np
import pytest
import redis

from helpdesk.llm import LlmUnavailable, OpenAIEmbedder, close_default_client, embedder
from tests.fakes.openai_server import Reply
from tests.helpdesk.llm.support import (EMBEDDING_MODEL, configure_env, fake,  # noqa: F401
                                        fast_config, provider, run)


def test_the_build_time_embedder(redis_client, redis_url, fake):
    config = fast_config()
    config = dataclasses.replace(config, embedding=dataclasses.replace(config.embedding,
                                                                       batch_size=2))
    built = OpenAIEmbedder(provider(fake), config, redis.Redis.from_url(redis_url))
    try:
        texts = ["caja", "impresora fiscal", "caja", "balanza", "red wifi"]
        vectors = built.embed(texts)
        assert built.dimension == 16  # learnt from the answers, no extra request
        assert built.identity == {"kind": "openai", "model": EMBEDDING_MODEL, "dimension": 16}
        assert vectors.shape == (5, 16) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
        assert np.allclose(vectors[0], vectors[2])
        assert len(fake.requests_to("/embeddings")) == 3  # batches of 2
        assert int(redis_client.hget("helpdesk:llm:usage:total", "embedding:calls")) == 3

        fake.embeddings.push(Reply.server_error(), Reply.server_error())
        with pytest.raises(LlmUnavailable, match="http 500"):
            built.embed(["caja"])
    finally:
        built.close()


def test_the_build_time_embedder_learns_its_dimension_with_one_request(redis_url, fake):
    built = OpenAIEmbedder(provider(fake), fast_config(), None)
    try:
        assert built.dimension == 16
        assert len(fake.requests_to("/embeddings")) == 1
    finally:
        built.close()


def test_without_an_llm_there_is_no_build_time_embedder(monkeypatch, redis_url):
    configure_env(monkeypatch, redis_url)
    assert embedder() is None


def test_query_time_embedding_goes_through_the_default_client(monkeypatch, redis_client,
                                                              redis_url, fake):
    configure_env(monkeypatch, redis_url, fake)
    built = OpenAIEmbedder(provider(fake), fast_config(), None)

    async def scenario():
        try:
            return await built.aembed(["caja"])
        finally:
            await close_default_client()

    try:
        assert run(scenario()).shape == (1, 16)
        assert len(fake.requests_to("/embeddings")) == 1
    finally:
        built.close()
