"""action_answer_howto against a real index of the project's articles (built once per
session), through the tracker Rasa sends: the quoted passage, no information, the knowledge
base unavailable, inside and outside the ticket form, and the seam for an LLM answer."""
import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import pytest
import yaml

import actions.knowledge
from actions.knowledge import ActionAnswerHowto
from helpdesk.config import knowledge as knowledge_file
from knowledge.retrieval import forget_shared_knowledge_bases
from tests.actions.helpers import PROJECT, Conversation, form_turn, message, rendered, responses, run
from tests.knowledge.support import articles_index, project_settings  # noqa: F401

CLOSING = "cómo hago el arqueo de caja al cerrar el turno?"
CLOSING_ARTICLE = "cierre-de-caja-arqueo-y-diferencias.md"
CLOSING_TITLE = "Arqueo y cierre de caja: cómo contar y qué hacer con las diferencias"
UNRELATED = "¿quién ganó el partido?"


def use_index(monkeypatch, tmp_path: Path, index_dir: Path, **knowledge_changes) -> Path:
    """A config directory like the project's whose knowledge.yml points at `index_dir`."""
    config = tmp_path / "config"
    shutil.copytree(PROJECT / "config", config)
    data = yaml.safe_load((config / "knowledge.yml").read_text(encoding="utf-8"))
    data["index_dir"] = str(index_dir)
    for section, values in knowledge_changes.items():
        data[section].update(values)
    (config / "knowledge.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("HELPDESK_CONFIG_DIR", str(config))
    return config


@pytest.fixture(autouse=True)
def _fresh_knowledge(monkeypatch):
    """The action caches its settings and the loaded index per process; no LLM configured."""
    for name in ("LLM_BASE_URL", "LLM_MODEL", "LLM_API_KEY", "LLM_FALLBACKS"):
        monkeypatch.delenv(name, raising=False)
    knowledge_file._config_at.cache_clear()
    forget_shared_knowledge_bases()
    yield
    knowledge_file._config_at.cache_clear()
    forget_shared_knowledge_bases()


@pytest.fixture
def knowledge_index(monkeypatch, tmp_path, articles_index):  # noqa: F811
    use_index(monkeypatch, tmp_path, articles_index)
    return articles_index


def asks(text: str) -> Conversation:
    return Conversation().user(text, "ask_howto")


def in_ticket_form(conversation: Conversation) -> Conversation:
    """The form has store and system and asks for the description."""
    conversation.user("la impresora fiscal tira error en la tienda 9", "report_incident",
                      [("system", "impresora fiscal"), ("store", "tienda 9")],
                      system="impresora fiscal", store="tienda 9")
    form_turn(conversation)
    conversation.slot("description", None)
    conversation.form_asks("description")
    return conversation


def asks_in_form(text: str) -> Conversation:
    return in_ticket_form(Conversation()).user(text, "ask_howto")


# the answer without an LLM -----------------------------------------------------------------
def test_outside_the_form_quotes_the_best_passage_and_offers_a_ticket(knowledge_index, domain):
    events, dispatcher = run(ActionAnswerHowto(answerer=None), asks(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_answer", "utter_howto_offer_ticket"]
    answer = message(dispatcher, "utter_howto_answer")
    assert answer["title"] == CLOSING_TITLE
    assert answer["passage"].startswith("*Cómo hacer el arqueo de caja*\n1. Termine la última venta")
    assert len(answer["passage"]) <= project_settings().answer.max_chars
    assert answer["passage"].endswith(" […]")  # the section is longer: cut at a line end
    assert answer["source_articles"][0]["path"] == CLOSING_ARTICLE
    assert answer["source_articles"][0]["title"] == CLOSING_TITLE
    text = rendered(answer)["text"]
    assert f"«{CLOSING_TITLE}»" in text and answer["passage"] in text
    offer = rendered(message(dispatcher, "utter_howto_offer_ticket"))
    assert [b["payload"] for b in offer["buttons"]] == ["/affirm", "/deny"]
    assert events == []


def test_inside_the_form_quotes_the_passage_and_the_form_goes_on(knowledge_index, domain):
    events, dispatcher = run(ActionAnswerHowto(answerer=None), asks_in_form(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_answer"]
    assert message(dispatcher, "utter_howto_answer")["title"] == CLOSING_TITLE
    assert events == []


def test_a_short_section_is_quoted_whole(knowledge_index, domain):
    _, dispatcher = run(ActionAnswerHowto(answerer=None),
                        asks("cuál es la clave del wifi para los clientes").tracker(), domain)

    answer = message(dispatcher, "utter_howto_answer")
    assert answer["source_articles"][0]["path"] == "wifi-tienda-y-wifi-clientes.md"
    chunk = next(c for c in project_chunks() if c.path == "wifi-tienda-y-wifi-clientes.md"
                 and c.heading == answer["source_articles"][0]["heading"])
    if len(chunk.text) + len(chunk.heading) + 3 <= project_settings().answer.max_chars:
        assert not answer["passage"].endswith(" […]")


def project_chunks():
    from knowledge.chunking import chunk_articles

    settings = project_settings()
    return chunk_articles(settings.articles_dir, settings.chunking.max_chars)


def test_no_information_outside_the_form_offers_a_ticket(knowledge_index, domain):
    events, dispatcher = run(ActionAnswerHowto(answerer=None), asks(UNRELATED).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_no_answer"]
    assert [b["payload"] for b in rendered(dispatcher.messages[0])["buttons"]] == ["/affirm", "/deny"]
    assert events == []


def test_no_information_inside_the_form_goes_on_with_it(knowledge_index, domain):
    events, dispatcher = run(ActionAnswerHowto(answerer=None), asks_in_form(UNRELATED).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_no_answer_in_form"]
    assert "buttons" not in rendered(dispatcher.messages[0])
    assert events == []


def test_the_threshold_comes_from_the_configuration(monkeypatch, tmp_path, articles_index, domain):  # noqa: F811
    use_index(monkeypatch, tmp_path, articles_index, retrieval={"min_score": 0.99})

    _, dispatcher = run(ActionAnswerHowto(answerer=None), asks(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_no_answer"]


def test_the_default_action_answers_without_an_llm_configured(knowledge_index, domain):
    _, dispatcher = run(ActionAnswerHowto(), asks(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_answer", "utter_howto_offer_ticket"]


def test_the_search_runs_off_the_event_loop_thread(knowledge_index, domain, monkeypatch):
    threads = []
    search = actions.knowledge.search_knowledge

    def recording(question, settings):
        threads.append(threading.get_ident())
        return search(question, settings)

    monkeypatch.setattr(actions.knowledge, "search_knowledge", recording)
    run(ActionAnswerHowto(answerer=None), asks(CLOSING).tracker(), domain)

    assert threads and threads[0] != threading.get_ident()


# the knowledge base cannot be used -----------------------------------------------------------
def test_a_missing_index_is_logged_and_the_user_offered_a_ticket(monkeypatch, tmp_path, domain, caplog):
    use_index(monkeypatch, tmp_path, tmp_path / "never-built")

    with caplog.at_level(logging.ERROR, logger="actions.knowledge"):
        events, dispatcher = run(ActionAnswerHowto(answerer=None), asks(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_unavailable"]
    assert [b["payload"] for b in rendered(dispatcher.messages[0])["buttons"]] == ["/affirm", "/deny"]
    assert "make knowledge" in caplog.text
    assert events == []


def test_a_missing_index_inside_the_form(monkeypatch, tmp_path, domain):
    use_index(monkeypatch, tmp_path, tmp_path / "never-built")

    _, dispatcher = run(ActionAnswerHowto(answerer=None), asks_in_form(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_unavailable_in_form"]


def test_an_index_built_by_another_embedder_is_not_queried(monkeypatch, tmp_path, articles_index,  # noqa: F811
                                                           domain, caplog):
    use_index(monkeypatch, tmp_path, articles_index, embedder={"dimension": 512})

    with caplog.at_level(logging.ERROR, logger="actions.knowledge"):
        _, dispatcher = run(ActionAnswerHowto(answerer=None), asks(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_unavailable"]
    assert "embedder" in caplog.text


def test_once_built_the_index_is_used_without_a_restart(monkeypatch, tmp_path, articles_index, domain):  # noqa: F811
    late = tmp_path / "late-index"
    use_index(monkeypatch, tmp_path, late)
    action = ActionAnswerHowto(answerer=None)
    _, before = run(action, asks(CLOSING).tracker(), domain)
    shutil.copytree(articles_index, late)

    _, after = run(action, asks(CLOSING).tracker(), domain)

    assert responses(before) == ["utter_howto_unavailable"]
    assert responses(after) == ["utter_howto_answer", "utter_howto_offer_ticket"]


# the LLM seam ----------------------------------------------------------------------------
@dataclass
class Answer:
    """The shape `helpdesk.llm.answer_from_passages` returns (see knowledge.answers)."""

    covered: bool
    answer: Optional[str] = None
    sources: List[str] = field(default_factory=list)


class Answerer:
    """Stands in for `helpdesk.llm.answer_from_passages`: records what the action gives it
    and returns one of the answers the contract allows."""

    def __init__(self, result=None, error: Optional[Exception] = None) -> None:
        self.result, self.error = result, error
        self.calls = []

    async def __call__(self, question: str, passages: Sequence, conversation_id: Optional[str]):
        self.calls.append((question, list(passages), conversation_id))
        if self.error:
            raise self.error
        return self.result


def test_a_grounded_answer_is_sent_with_its_sources(knowledge_index, domain):
    answerer = Answerer(Answer(True, "Cuente el efectivo con el encargado y cárguelo en el POS.", [CLOSING_TITLE]))
    conversation = asks(CLOSING)

    _, dispatcher = run(ActionAnswerHowto(answerer=answerer), conversation.tracker(), domain)

    question, passages, conversation_id = answerer.calls[0]
    assert question == CLOSING and conversation_id == conversation.sender_id
    settings = project_settings()
    assert 1 <= len(passages) <= settings.answer.llm_passages
    assert passages[0].path == CLOSING_ARTICLE and passages[0].text
    assert responses(dispatcher) == ["utter_howto_llm_answer", "utter_howto_offer_ticket"]
    sent = message(dispatcher, "utter_howto_llm_answer")
    assert sent["answer"] == "Cuente el efectivo con el encargado y cárguelo en el POS."
    assert sent["sources"] == f"«{CLOSING_TITLE}»"
    assert [s["path"] for s in sent["source_articles"]] == [
        p.path for p in passages if p.title == CLOSING_TITLE]
    text = rendered(sent)["text"]
    assert sent["answer"] in text and f"«{CLOSING_TITLE}»" in text


def test_passages_that_do_not_cover_the_question_give_no_information(knowledge_index, domain):
    answerer = Answerer(Answer(False))

    _, outside = run(ActionAnswerHowto(answerer=answerer), asks(CLOSING).tracker(), domain)
    _, inside = run(ActionAnswerHowto(answerer=answerer), asks_in_form(CLOSING).tracker(), domain)

    assert responses(outside) == ["utter_howto_no_answer"]
    assert responses(inside) == ["utter_howto_no_answer_in_form"]


@pytest.mark.parametrize("answerer", [
    Answerer(None),  # no LLM answer: not configured, budget spent, providers down
    Answerer(error=TimeoutError("slow provider")),
    Answerer(Answer(True, "Llame a su banco.", ["Un artículo que no se le dio"])),  # not grounded
    Answerer(Answer(True, "", [CLOSING_TITLE])),
], ids=["none", "raises", "unknown-source", "empty"])
def test_without_a_usable_llm_answer_the_passage_is_quoted(knowledge_index, domain, answerer):
    _, dispatcher = run(ActionAnswerHowto(answerer=answerer), asks(CLOSING).tracker(), domain)

    assert answerer.calls
    assert responses(dispatcher) == ["utter_howto_answer", "utter_howto_offer_ticket"]


def test_the_llm_is_not_asked_when_nothing_was_found(knowledge_index, domain):
    answerer = Answerer(Answer(True, "Ganó el equipo local.", [CLOSING_TITLE]))

    _, dispatcher = run(ActionAnswerHowto(answerer=answerer), asks(UNRELATED).tracker(), domain)

    assert answerer.calls == []
    assert responses(dispatcher) == ["utter_howto_no_answer"]


def test_a_damaged_index_is_logged_and_the_user_still_answered(monkeypatch, tmp_path, articles_index,  # noqa: F811
                                                               domain, caplog):
    damaged = tmp_path / "damaged"
    shutil.copytree(articles_index, damaged)
    (damaged / "dense.faiss").write_bytes(b"not a faiss index")
    use_index(monkeypatch, tmp_path, damaged)

    with caplog.at_level(logging.ERROR, logger="actions.knowledge"):
        _, dispatcher = run(ActionAnswerHowto(answerer=None), asks(CLOSING).tracker(), domain)

    assert responses(dispatcher) == ["utter_howto_unavailable"]
    assert "does not match meta.json" in caplog.text
