"""The process's default `LlmClient` (one per event loop, built from the LLM_* settings) and
the bot's uses bound to it: what actions and connectors call.

Public uses (each returns None when there is no LLM, the budget is spent, the providers
fail or the answer is invalid; the caller then takes its path without an LLM; they never
raise):

    answer_from_passages(question, passages, conversation_id) -> KnowledgeAnswer | None
    read_screenshot(image_bytes, mime_type, conversation_id, systems=()) -> dict | None
    choose_intent(text, intents, entities, conversation_id) -> dict | None
    transcribe(audio_bytes, mime_type, filename, conversation_id) -> str | None
    phrase_subject(system, description, conversation_id) -> str | None
    embed(texts) -> np.ndarray | None            (async, query time)

and `usage_totals`, `reset_conversation_budget`, `check_configuration`. The sync embedder for
index builds is `helpdesk.llm.embed.embedder()`. Each use is written, against any client, in
`helpdesk.llm.uses`.
"""
import asyncio
import functools
import logging
import weakref
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np

from helpdesk.config import llm_config
from helpdesk.llm import uses as llm_uses
from helpdesk.llm.client import LlmClient
from helpdesk.llm.prompts import prompts as project_prompts
from helpdesk.llm.providers import provider_chain
from helpdesk.llm.uses import KnowledgeAnswer, Passage
from helpdesk.settings import load_llm, load_settings

logger = logging.getLogger("helpdesk.llm")

T = TypeVar("T")

# loop -> (the settings it was built from, the client or None)
_defaults: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Tuple[Any, Optional[LlmClient]]]"
_defaults = weakref.WeakKeyDictionary()


async def default_client() -> Optional[LlmClient]:
    """The process's client for the running loop, None without an LLM configured.

    Rebuilt when the LLM settings change (tests); one per loop because the HTTP and Redis
    connections belong to the loop that opened them."""
    loop = asyncio.get_running_loop()
    key = (load_llm(), load_settings().redis_url)
    entry = _defaults.get(loop)
    if entry is not None and entry[0] == key:
        return entry[1]
    if entry is not None and entry[1] is not None:
        await entry[1].close()
    client = LlmClient.from_settings(llm=key[0], redis_url=key[1]) if key[0] else None
    _defaults[loop] = (key, client)
    return client


async def close_default_client() -> None:
    """Close the running loop's client (at shutdown, and at the end of tests)."""
    entry = _defaults.pop(asyncio.get_running_loop(), None)
    if entry is not None and entry[1] is not None:
        await entry[1].close()


def check_configuration() -> List[str]:
    """Load config/llm.yml, the prompts and the provider chain now (raises ConfigError);
    returns the chain's labels, for a startup log line."""
    config = llm_config()
    llm_uses.check_prompts(project_prompts())
    return [p.label for p in provider_chain(load_llm(), config.default_base_url)]


# --- the uses, bound to the default client --------------------------------------------------

UseFunction = Callable[..., Awaitable[Optional[T]]]


def _never_raises(function: UseFunction) -> UseFunction:
    """An LLM use may fail; the turn that asked must not (the caller takes its other path)."""
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Optional[T]:
        try:
            return await function(*args, **kwargs)
        except Exception:
            logger.exception("LLM use %s failed unexpectedly", function.__name__)
            return None
    return wrapper


@_never_raises
async def answer_from_passages(question: str, passages: Sequence[Passage],
                               conversation_id: Optional[str]) -> Optional[KnowledgeAnswer]:
    """A how-to answer grounded in the passages with the titles it cites, or
    `KnowledgeAnswer(covered=False)` when they do not answer it; None: no LLM answer."""
    client = await default_client()
    return await llm_uses.answer_from_passages(client, question, passages, conversation_id) \
        if client else None


@_never_raises
async def read_screenshot(image_bytes: bytes, mime_type: str, conversation_id: Optional[str],
                          systems: Sequence[str] = ()) -> Optional[Dict[str, Any]]:
    """{"error_messages": [...], "system", "store", "description"} read from an image."""
    client = await default_client()
    return await llm_uses.read_screenshot(client, image_bytes, mime_type, conversation_id,
                                          systems) if client else None


@_never_raises
async def choose_intent(text: str, intents: Mapping[str, Sequence[str]], entities: Sequence[str],
                        conversation_id: Optional[str]) -> Optional[Dict[str, Any]]:
    """{"intent", "confidence", "entities": [{"entity", "value"}]} among the given intents."""
    client = await default_client()
    return await llm_uses.choose_intent(client, text, intents, entities, conversation_id) \
        if client else None


@_never_raises
async def transcribe(audio_bytes: bytes, mime_type: str, filename: str,
                     conversation_id: Optional[str]) -> Optional[str]:
    """The text of a voice note or audio file."""
    client = await default_client()
    return await llm_uses.transcribe(client, audio_bytes, mime_type, filename, conversation_id) \
        if client else None


@_never_raises
async def phrase_subject(system: Optional[str], description: str,
                         conversation_id: Optional[str]) -> Optional[str]:
    """A ticket subject of at most 120 characters."""
    client = await default_client()
    return await llm_uses.phrase_subject(client, system, description, conversation_id) \
        if client else None


@_never_raises
async def embed(texts: List[str]) -> Optional[np.ndarray]:
    """Query-time embeddings (float32, unit rows) with the embedding model, or None."""
    client = await default_client()
    return await llm_uses.embed(client, texts) if client else None


async def usage_totals(month: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """{"month": ..., "total": ...} LLM usage (calls, tokens, cost_usd, by_use), for metrics."""
    client = await default_client()
    if client is None:
        return None
    return {"month": await client.meter.month_usage(month),
            "total": await client.meter.total_usage()}


async def reset_conversation_budget(conversation_id: str) -> None:
    """Start a conversation's token budget afresh (when its ticket is done or cancelled)."""
    client = await default_client()
    if client is not None:
        await client.meter.reset_conversation(conversation_id)
