"""How-to questions answered from the knowledge base.

The question is searched in the knowledge index (hybrid BM25 + dense, `knowledge.retrieval`)
in a worker thread, so the action server's event loop never waits on it. Then:

- passages above the threshold and an LLM answer grounded in them (`helpdesk.llm`, when
  configured): that answer with its sources;
- passages but no LLM answer: the best passage quoted with its article's title;
- the passages do not cover the question (nothing above the threshold, or the LLM says so):
  "no tengo información", and a ticket is offered;
- the index cannot be used (not built, built by another embedder, unreadable): logged as an
  error, and the user is told the knowledge base is not available, with the same offer.

Outside the ticket form the answer ends with the offer of a ticket (the rules take "sí" to
the form and "no" to a goodbye); inside the form no offer is made and the form goes on.
The titles and paths of the passages used travel with the bot message (`source_articles`
in its metadata) for later steps to cite.
"""
import asyncio
import logging
from typing import Any, Dict, List, Optional, Sequence, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, latest_text
from helpdesk.errors import ConfigError
from knowledge.answers import GroundedAnswerer, LlmAnswer, default_answerer, quoted_passage, read_llm_answer
from knowledge.index import KnowledgeIndexError
from knowledge.lemmas import AnalyzerUnavailable
from knowledge.retrieval import Passage, shared_knowledge_base
from helpdesk.config import KnowledgeConfig, knowledge_config

logger = logging.getLogger(__name__)

_UNSET: Any = object()


def search_knowledge(question: str, settings: KnowledgeConfig) -> List[Passage]:
    """The passages for a question (blocking: spaCy, numpy, FAISS; run it in a thread)."""
    return shared_knowledge_base(settings).search(question)


def source_articles(passages: Sequence[Passage]) -> List[Dict[str, Any]]:
    return [
        {"title": p.title, "heading": p.heading, "path": p.path, "score": round(p.score, 4),
         "relevance": round(p.relevance, 4)}
        for p in passages
    ]


class ActionAnswerHowto(Action):
    def __init__(self, answerer: Optional[GroundedAnswerer] = _UNSET) -> None:
        # the LLM seam: helpdesk.llm.answer_from_passages when present (see knowledge.answers)
        self._answerer = answerer

    def name(self) -> Text:
        return "action_answer_howto"

    @property
    def answerer(self) -> Optional[GroundedAnswerer]:
        if self._answerer is _UNSET:
            self._answerer = default_answerer()
        return self._answerer

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        in_form = bool(tracker.active_loop.get("name"))
        question = latest_text(tracker).strip()
        try:
            settings = knowledge_config()
            passages = await asyncio.to_thread(search_knowledge, question, settings) if question else []
        except (KnowledgeIndexError, AnalyzerUnavailable, ConfigError) as error:
            logger.error("knowledge base unavailable: %s", error)
            return self._unavailable(dispatcher, in_form)
        except Exception:  # noqa: BLE001 - a failed search must not leave the user unanswered
            logger.exception("knowledge search failed")
            return self._unavailable(dispatcher, in_form)

        if not passages:
            logger.info("how-to question without a passage above the threshold")
            self._no_answer(dispatcher, in_form, [])
            return []

        llm = await self._llm_answer(question, passages, settings, tracker.sender_id)
        if llm is False:
            logger.info("the LLM found the passages do not answer the question")
            self._no_answer(dispatcher, in_form, passages[: settings.answer.llm_passages])
        elif isinstance(llm, LlmAnswer):
            used = [p for p in passages if p.title in llm.titles]
            dispatcher.utter_message(
                response="utter_howto_llm_answer",
                answer=llm.text,
                sources=llm.sources,
                source_articles=source_articles(used),
            )
        else:
            best = quoted_passage(passages[0], settings.answer)
            logger.info("how-to answered with %s (score %.3f)", best.path, passages[0].score)
            dispatcher.utter_message(
                response="utter_howto_answer",
                title=best.title,
                passage=best.passage,
                source_articles=source_articles(passages[:1]),
            )
        if not in_form and llm is not False:
            dispatcher.utter_message(response="utter_howto_offer_ticket")
        return []

    async def _llm_answer(
        self, question: str, passages: List[Passage], settings: KnowledgeConfig, conversation_id: str
    ) -> Any:
        """LlmAnswer, False (not covered) or None (no LLM answer: quote the passage)."""
        answerer = self.answerer
        if answerer is None:
            return None
        given = passages[: settings.answer.llm_passages]
        try:
            result = await answerer(question, given, conversation_id)
        except Exception:  # noqa: BLE001 - an LLM failure falls back to the quoted passage
            logger.exception("LLM answer failed: quoting the passage instead")
            return None
        return read_llm_answer(result, given, settings.answer)

    @staticmethod
    def _unavailable(dispatcher: CollectingDispatcher, in_form: bool) -> List[Dict[Text, Any]]:
        dispatcher.utter_message(
            response="utter_howto_unavailable_in_form" if in_form else "utter_howto_unavailable"
        )
        return []

    @staticmethod
    def _no_answer(dispatcher: CollectingDispatcher, in_form: bool, considered: List[Passage]) -> None:
        dispatcher.utter_message(
            response="utter_howto_no_answer_in_form" if in_form else "utter_howto_no_answer",
            source_articles=source_articles(considered),
        )
