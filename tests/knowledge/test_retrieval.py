"""Hybrid retrieval on the real articles: the right article for staff questions, nothing for
questions the articles do not cover, passages with their scores."""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from knowledge.retrieval import KnowledgeBase
from tests.knowledge.support import articles_index, knowledge_base  # noqa: F401


@pytest.mark.parametrize("question, article", [
    ("cómo hago el cierre Z de la impresora fiscal?", "impresora-fiscal-cierre-z-informe-diario.md"),
    ("la fiscal no corta el papel, la cuchilla está trabada", "impresora-fiscal-atasco-de-papel.md"),
    ("la balanza no pesa bien, hay que calibrarla?", "balanza-calibracion-y-verificacion.md"),
    ("me olvidé la contrasenia y el usuario quedó bloqueado", "contrasenas-cambio-y-desbloqueo.md"),
    ("el cliente quiere que le devuelva la plata de una compra", "devoluciones-y-notas-de-credito.md"),
    ("se cortó la luz, que hacemos con la UPS", "corte-de-luz-ups-y-reinicio-de-equipos.md"),
])
def test_finds_the_article_that_answers(knowledge_base, question, article):  # noqa: F811
    passages = knowledge_base.search(question)

    assert passages, question
    assert passages[0].path == article


@pytest.mark.parametrize("question", [
    "¿quién ganó el partido?",
    "qué película me recomienda para el fin de semana",
    "cuál es la capital de Australia",
])
def test_nothing_for_questions_the_articles_do_not_cover(knowledge_base, question):  # noqa: F811
    assert knowledge_base.search(question) == []
    # something is always ranked; it is the threshold that keeps it out
    ranked = knowledge_base.search(question, min_score=0)
    assert all(p.relevance < knowledge_base.settings.min_score for p in ranked)


def test_empty_questions_find_nothing(knowledge_base):  # noqa: F811
    assert knowledge_base.search("") == []
    assert knowledge_base.search("   ") == []
    assert knowledge_base.search("?", min_score=0) == []


def test_passages_carry_their_source_and_both_scores(knowledge_base):  # noqa: F811
    settings = knowledge_base.settings
    passages = knowledge_base.search("cómo cierro el lote del posnet", top_k=5, min_score=0)

    assert len(passages) == 5
    best = passages[0]
    assert best.path == "terminal-de-pago-cierre-de-lote.md"
    assert best.title == "Cómo hacer el cierre de lote de la terminal de pago"
    assert best.text and best.heading in ("", *(c.heading for c in knowledge_base.chunks if c.path == best.path))
    assert 0 < best.lexical <= 1 and 0 < best.dense <= 1
    assert best.relevance == pytest.approx(
        (settings.lexical_weight * best.lexical + settings.dense_weight * best.dense)
        / (settings.lexical_weight + settings.dense_weight), abs=1e-6)
    assert best.lexical_rank is not None and best.dense_rank is not None
    assert 0 <= best.heading_match <= 1
    assert best.to_dict()["path"] == best.path


def test_articles_by_best_score_and_sections_by_heading_match(knowledge_base):  # noqa: F811
    settings = knowledge_base.settings
    passages = knowledge_base.search("la impresora fiscal no imprime", top_k=100, min_score=0)
    paths = [p.path for p in passages]
    articles = list(dict.fromkeys(paths))

    assert paths == sorted(paths, key=articles.index)  # each article's passages together
    best = [max(p.score for p in passages if p.path == a) for a in articles]
    assert best == sorted(best, reverse=True)
    for article in articles:
        keys = [p.relevance + settings.heading_weight * p.heading_match for p in passages if p.path == article]
        assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize("question, heading", [
    ("como cambio el rollo de la fiscal", "Cómo cambiar el rollo de la impresora fiscal"),
    ("la balanza pesa mal", "Qué hacer si la balanza pide calibración o pesa mal"),
    ("el cierre de lote falla", "Qué hacer si el cierre de lote falla"),
])
def test_the_section_named_after_the_question_comes_first(knowledge_base, question, heading):  # noqa: F811
    assert knowledge_base.search(question)[0].heading == heading


def test_top_k_threshold_and_one_passage_per_article(knowledge_base):  # noqa: F811
    question = "la impresora fiscal no imprime"
    assert len(knowledge_base.search(question, top_k=1)) == 1
    everything = knowledge_base.search(question, top_k=50, min_score=0)
    distinct = knowledge_base.search(question, top_k=50, min_score=0, per_article=True)

    assert len({p.path for p in everything}) < len(everything)
    assert len({p.path for p in distinct}) == len(distinct)
    assert distinct[0] == everything[0]
    kept = knowledge_base.search(question, top_k=50)
    assert kept and all(p.relevance >= knowledge_base.settings.min_score for p in kept)
    assert len(kept) < len(everything)


@pytest.mark.parametrize("fusion", ["rrf", "blend"])
def test_both_fusions_rank_the_answer_first(knowledge_base, fusion):  # noqa: F811
    variant = knowledge_base.with_settings(replace(knowledge_base.settings, fusion=fusion))
    assert variant.search("como pongo el rollo nuevo en la impresora fiscal")[0].path == (
        "impresora-fiscal-cambio-de-rollo.md"
    )


def test_each_method_alone_still_ranks(knowledge_base):  # noqa: F811
    lexical = knowledge_base.with_settings(replace(knowledge_base.settings, fusion="blend",
                                                   lexical_weight=1.0, dense_weight=0.0))
    dense = knowledge_base.with_settings(replace(knowledge_base.settings, fusion="blend",
                                                 lexical_weight=0.0, dense_weight=1.0))
    question = "como reinicio el modem y el router"
    assert lexical.search(question)[0].path == dense.search(question)[0].path == "red-reiniciar-modem-y-router.md"
    # a typo the lemmas cannot match is still found by the character n-grams
    assert lexical.search("reinisiar moden ruter", min_score=1e-9) == []
    assert dense.search("reinisiar moden ruter", min_score=0)[0].path == "red-reiniciar-modem-y-router.md"


def test_searches_from_several_threads_agree(knowledge_base):  # noqa: F811
    questions = ["como hago un retiro de efectivo", "no anda el lector de codigos", "se corto internet"] * 10
    alone = [[p.path for p in knowledge_base.search(q)] for q in questions]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda q: [p.path for p in knowledge_base.search(q)], questions))
    assert together == alone


def test_loaded_once_and_shared(articles_index):  # noqa: F811
    from knowledge.retrieval import forget_shared_knowledge_bases, shared_knowledge_base
    from tests.knowledge.support import project_settings

    settings = project_settings(index_dir=articles_index)
    forget_shared_knowledge_bases()
    try:
        first = shared_knowledge_base(settings)
        assert shared_knowledge_base(settings) is first
        assert isinstance(first, KnowledgeBase)
    finally:
        forget_shared_knowledge_bases()
