"""The local embedder: deterministic in and across processes, unit vectors, accents and case
folded, typos still close; the embedder registry."""
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from helpdesk.errors import ConfigError
from knowledge.embedder import (
    Embedder,
    HashedEmbedder,
    _bucket,
    identities_match,
    make_embedder,
    register_embedder,
)
from knowledge.lemmas import analyzer
from tests.knowledge.support import PROJECT, project_settings


@pytest.fixture(scope="module")
def embedder() -> HashedEmbedder:
    return make_embedder(project_settings())


def cosine(embedder, a: str, b: str) -> float:
    vectors = embedder.embed([a, b])
    return float(vectors[0] @ vectors[1])


def test_is_an_embedder_with_unit_float32_rows(embedder):
    texts = ["la caja no enciende", "cómo hago el cierre Z", "se trabó el papel de la impresora fiscal"]
    vectors = embedder.embed(texts)

    assert isinstance(embedder, Embedder)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 1024) == (len(texts), embedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_text_without_content_words_is_a_zero_row(embedder):
    vectors = embedder.embed(["", "¿?", "de la que el"])
    assert not np.any(vectors)


def test_same_text_same_vector_and_batches_do_not_matter(embedder):
    one = embedder.embed(["la balanza pesa mal"])
    batch = embedder.embed(["otra cosa", "la balanza pesa mal"])
    again = make_embedder(project_settings()).embed(["la balanza pesa mal"])

    assert np.array_equal(one[0], batch[1])
    assert np.array_equal(one, again)


def test_hashing_is_the_same_in_another_process():
    """Index and questions are embedded by different processes: the feature hash must not
    depend on Python's per-process hash seed."""
    features = ["l:contrasena", "c:<caj", "b:cierre_z", "c:ña>"]
    script = (
        "from knowledge.embedder import _bucket\n"
        f"print([_bucket(f, 1024) for f in {features!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(PROJECT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert out == str([_bucket(f, 1024) for f in features])


def test_accents_and_case_are_folded(embedder):
    a, b = embedder.embed(["CONTRASEÑA DEL CAJERO", "contraseña del cajero"])
    assert np.array_equal(a, b)
    assert cosine(embedder, "cómo reinicio la terminal", "como reinicio la terminal") > 0.99


def test_word_forms_share_lemmas(embedder):
    [(_, lemmas_a), *_] = embedder.features("las cajas no funcionan")
    [(_, lemmas_b), *_] = embedder.features("la caja no funcionó")
    assert set(lemmas_a) == set(lemmas_b) == {"l:caja", "l:funcionar"}


def test_typos_stay_closer_than_another_subject(embedder):
    right = "no me deja cambiar la contraseña del usuario"
    typo = "no me deja canbiar la contrasenia del usuaro"
    other = "la balanza pesa mal la mercadería"
    assert cosine(embedder, right, typo) > 0.3
    assert cosine(embedder, right, typo) > 10 * cosine(embedder, typo, other)
    assert cosine(embedder, "contraseña", "CONTRASENA") == pytest.approx(1.0)


def test_identity_names_every_parameter():
    base = project_settings()
    embedder = make_embedder(base)
    smaller = make_embedder(replace(base, embedder=replace(base.embedder, dimension=512)))
    reweighted = make_embedder(replace(base, embedder=replace(base.embedder, char_weight=0.2)))

    assert embedder.identity["kind"] == "hashed"
    assert embedder.identity["dimension"] == 1024
    assert identities_match(embedder.identity, make_embedder(base).identity)
    assert not identities_match(embedder.identity, smaller.identity)
    assert not identities_match(embedder.identity, reweighted.identity)


def test_the_configured_kind_chooses_the_embedder():
    base = project_settings()
    with pytest.raises(ConfigError, match="'remote-test' is not available"):
        make_embedder(replace(base, embedder=replace(base.embedder, kind="remote-test")))

    def small_hashed(settings):
        return HashedEmbedder(replace(settings.embedder, dimension=64), analyzer(settings.spacy_model))

    register_embedder("small-test", small_hashed)
    chosen = make_embedder(replace(base, embedder=replace(base.embedder, kind="small-test")))
    assert chosen.dimension == 64
    assert chosen.embed(["caja"]).shape == (1, 64)
