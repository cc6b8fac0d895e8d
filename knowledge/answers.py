"""What a how-to answer is made of, with or without an LLM.

Without an LLM the answer is the best passage quoted with its article's title
(`quoted_passage`). With one, `helpdesk.llm.answer_from_passages` (the LLM issue) writes an
answer grounded only in the retrieved passages; this module holds the contract the action
relies on, so the two sides meet in one place:

    async def answer_from_passages(question: str, passages: Sequence[Passage],
                                   conversation_id: Optional[str]) -> Optional[<answer>]

where `<answer>` has `covered: bool`, `answer: Optional[str]` and `sources: Sequence[str]`
(the titles of the articles it used). None means "no LLM answer" (no LLM configured, budget
spent, provider failure, invalid output): the action then quotes the passage.
`covered=False` means the passages do not answer the question: the action says it has no
information and offers a ticket.
"""
import importlib
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, List, Optional, Sequence

from knowledge.quote import passage_for_chat
from knowledge.retrieval import Passage
from helpdesk.config import AnswerConfig

logger = logging.getLogger(__name__)

GroundedAnswerer = Callable[[str, Sequence[Passage], Optional[str]], Awaitable[Optional[Any]]]


@dataclass(frozen=True)
class QuotedPassage:
    title: str
    passage: str  # the heading and text as the chat shows them, trimmed
    path: str


@dataclass(frozen=True)
class LlmAnswer:
    """An LLM answer the action can send: its text and its sources as the chat names them."""

    text: str
    sources: str
    titles: List[str]


def quoted_passage(passage: Passage, settings: AnswerConfig) -> QuotedPassage:
    return QuotedPassage(
        title=passage.title,
        passage=passage_for_chat(passage.heading, passage.text, settings.max_chars, settings.trimmed_marker),
        path=passage.path,
    )


def format_sources(titles: Sequence[str], settings: AnswerConfig) -> str:
    """"«Título», «Otro»" (the format is in config/knowledge.yml); repeated titles once."""
    unique = list(dict.fromkeys(t for t in titles if t))
    return settings.sources_separator.join(settings.source_format.format(title=t) for t in unique)


def read_llm_answer(result: Any, passages: Sequence[Passage], settings: AnswerConfig) -> Optional[Any]:
    """Interpret what the answerer returned: `LlmAnswer` for a covered answer, False when
    the passages do not cover the question, None when there is no usable LLM answer.

    Sources must be titles of the passages given; others are dropped (an LLM citing an
    article it was not shown is not grounded). A covered answer without text or without a
    valid source is no answer."""
    if result is None:
        return None
    if not getattr(result, "covered", False):
        return False
    text = (getattr(result, "answer", None) or "").strip()
    given = {p.title for p in passages}
    titles = [t for t in (getattr(result, "sources", None) or []) if t in given]
    if not text or not titles:
        logger.warning("LLM answer without text or without a source among the passages: not used")
        return None
    return LlmAnswer(text=text, sources=format_sources(titles, settings), titles=list(dict.fromkeys(titles)))


def default_answerer() -> Optional[GroundedAnswerer]:
    """`helpdesk.llm.answer_from_passages` when the LLM module provides it, else None (the
    answer is then always the quoted passage). A broken LLM module is logged, never fatal:
    how-to questions still get the passage."""
    try:
        if importlib.util.find_spec("helpdesk.llm") is None:
            return None
        module = importlib.import_module("helpdesk.llm")
    except Exception:  # noqa: BLE001 - any import failure means: answer without the LLM
        logger.exception("helpdesk.llm could not be imported: how-to answers without the LLM")
        return None
    return getattr(module, "answer_from_passages", None)
