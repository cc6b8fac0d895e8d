"""What the bot asks the LLM, and how each answer is checked before anyone uses it.

Each function takes an `LlmClient` (`helpdesk.llm.client`; `helpdesk.llm.default` offers them
bound to the process's default client) and returns None when the answer cannot be used: no provider for
that kind of call, budget spent, providers failing, refusal, invalid JSON, or an answer that
breaks the use's rules (an intent outside the domain, a citation of a passage not given).
"""
import base64
import hashlib
import logging
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Protocol, Sequence, Set,
                    Tuple, Union)

import numpy as np

from helpdesk.llm import schemas as llm_schemas
from helpdesk.llm.budget import Usage, estimate_tokens
from helpdesk.llm.prompts import Prompt, require
from helpdesk.text import fold

if TYPE_CHECKING:
    from helpdesk.llm.client import LlmClient

logger = logging.getLogger("helpdesk.llm")

# placeholders the code fills, per prompt (any of them may appear in any part)
PLACEHOLDERS: Dict[str, Set[str]] = {
    "knowledge_answer": {"schema", "question", "passages"},
    "screenshot": {"schema", "systems"},
    "intent": {"schema", "intents", "entities", "text"},
    "subject": {"schema", "system", "description"},
    "transcription": set(),
}
PROMPT_PARTS = {"transcription": ("prompt",)}
# the texts the code writes where it has nothing to put, per prompt (its `fillers`)
FILLERS: Dict[str, Set[str]] = {
    "screenshot": {"no_systems"},
    "intent": {"no_examples", "no_entities"},
    "subject": {"no_system"},
}


def _required(prompt_set: Mapping[str, Prompt], name: str) -> Prompt:
    return require(prompt_set, name, {part: PLACEHOLDERS[name]
                                      for part in PROMPT_PARTS.get(name, ("system", "user"))},
                   FILLERS.get(name, set()))


def check_prompts(prompt_set: Mapping[str, Prompt]) -> None:
    """Every use's prompt exists, uses only placeholders the code fills and has the fillers
    the code writes (ConfigError)."""
    for name in PLACEHOLDERS:
        _required(prompt_set, name)


def _prompt(client: "LlmClient", name: str) -> Prompt:
    return _required(client.prompts, name)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mime(mime_type: Optional[str]) -> str:
    return (mime_type or "").split(";", 1)[0].strip().lower()


def _clean(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


# --- knowledge answers ---------------------------------------------------------------------


class Passage(Protocol):
    """What retrieval hands over (an object with these attributes, or a dict with these keys)."""

    title: str
    heading: str
    text: str


@dataclass(frozen=True)
class KnowledgeAnswer:
    """covered: the passages answer the question; answer: its text (None when not covered);
    sources: the titles of the articles the answer used, in the order cited. (The shape
    `knowledge.answers.read_llm_answer` reads.)"""

    covered: bool
    answer: Optional[str]
    sources: Tuple[str, ...] = ()


def _field(passage: Union[Passage, Mapping[str, Any]], name: str) -> str:
    value = passage.get(name) if isinstance(passage, Mapping) else getattr(passage, name, None)
    return str(value or "").strip()


async def answer_from_passages(client: "LlmClient", question: str,
                               passages: Sequence[Union[Passage, Mapping[str, Any]]],
                               conversation_id: Optional[str]) -> Optional[KnowledgeAnswer]:
    use = "knowledge_answer"
    if not client.can("chat") or not question.strip():
        return None
    settings = client.config.knowledge
    items = [(_field(p, "title"), _field(p, "heading"),
              _field(p, "text")[:settings.max_passage_chars])
             for p in list(passages)[:settings.max_passages]]
    items = [item for item in items if item[2]]
    if not items:
        return KnowledgeAnswer(covered=False, answer=None)
    prompt = _prompt(client, use)
    digest = client.digest(prompt.tag, client.models("chat"), fold(question), items)
    data = await client.cache_get(use, digest)
    cached = data is not None
    if not cached:
        blocks = []
        for number, (title, heading, text) in enumerate(items, 1):
            header = f"{title} — {heading}" if heading and heading != title else title
            blocks.append(f"[{number}] {header}\n{text}")
        data = await client.chat_json(use, conversation_id, prompt,
                                      {"question": question.strip(),
                                       "passages": "\n\n".join(blocks)},
                                      llm_schemas.KNOWLEDGE_ANSWER)
        if data is None:
            return None
    if not data["covered"]:
        answer = KnowledgeAnswer(covered=False, answer=None)
    else:
        text = (data["answer"] or "").strip()
        cited = [n for n in data["sources"] if 1 <= n <= len(items)]
        if len(cited) != len(data["sources"]):
            logger.warning("LLM cited passages that were not given",
                           extra={"use": use, "cited": data["sources"], "given": len(items)})
        if not text or not cited:
            return await client.invalid(use, "covered without an answer or a valid citation")
        titles = tuple(dict.fromkeys(items[n - 1][0] for n in cited if items[n - 1][0]))
        answer = KnowledgeAnswer(covered=True, answer=text, sources=titles)
    if not cached:
        await client.cache_set(use, digest, data)
    return answer


# --- screenshots and photos ----------------------------------------------------------------


async def read_screenshot(client: "LlmClient", image_bytes: bytes, mime_type: str,
                          conversation_id: Optional[str], systems: Sequence[str] = ()
                          ) -> Optional[Dict[str, Any]]:
    use = "screenshot"
    if not client.can("vision"):
        return None
    settings = client.config.screenshot
    mime = _mime(mime_type)
    if mime not in settings.mime_types or not image_bytes or \
            len(image_bytes) > settings.max_image_bytes:
        logger.info("image not sent to the vision model", extra={
            "use": use, "mime_type": mime, "bytes": len(image_bytes or b"")})
        return None
    prompt = _prompt(client, use)
    system_names = sorted({s for s in systems if s})
    digest = client.digest(prompt.tag, client.models("vision"), _sha256(image_bytes), system_names)
    data = await client.cache_get(use, digest)
    cached = data is not None
    if not cached:
        data_url = f"data:{mime};base64,{base64.b64encode(image_bytes).decode('ascii')}"
        data = await client.chat_json(
            use, conversation_id, prompt,
            {"systems": ", ".join(system_names) or prompt.fillers["no_systems"]},
            llm_schemas.SCREENSHOT, kind="vision", image_url=data_url,
            extra_tokens=settings.image_token_estimate)
        if data is None:
            return None
    messages = [m for m in (_clean(m) for m in data["error_messages"]) if m]
    result = {
        "error_messages": list(dict.fromkeys(messages)),
        "system": _clean(data["system"]),
        "store": _clean(data["store"]),
        "description": _clean(data["description"]),
    }
    if not cached:
        await client.cache_set(use, digest, data)
    return result


# --- NLU fallback --------------------------------------------------------------------------


def _render_intents(intents: Mapping[str, Sequence[str]], per_intent: int, no_examples: str
                    ) -> str:
    lines = []
    for name in sorted(intents):
        examples = [" ".join(e.split())[:200] for e in list(intents[name])[:per_intent] if e]
        shown = " | ".join(f"«{e}»" for e in examples) or no_examples
        lines.append(f"- {name}: {shown}")
    return "\n".join(lines)


def _entities(found: List[Dict[str, str]], allowed: Set[str], text: str,
              require_in_text: bool) -> List[Dict[str, str]]:
    folded_text = f" {fold(text)} "
    kept: Dict[Tuple[str, str], Dict[str, str]] = {}
    for item in found:
        entity, value = item["entity"].strip(), " ".join(item["value"].split())
        if entity not in allowed or not value:
            continue
        if require_in_text and f" {fold(value)} " not in folded_text:
            continue  # a value the user never wrote is invented data
        kept.setdefault((entity, value), {"entity": entity, "value": value})
    return list(kept.values())


async def choose_intent(client: "LlmClient", text: str, intents: Mapping[str, Sequence[str]],
                        entities: Sequence[str], conversation_id: Optional[str]
                        ) -> Optional[Dict[str, Any]]:
    use = "intent"
    if not client.can("chat") or not intents or not text.strip():
        return None
    settings = client.config.nlu_fallback
    entity_names = sorted(set(entities))
    prompt = _prompt(client, use)
    digest = client.digest(prompt.tag, client.models("chat"), fold(text), sorted(intents),
                           entity_names)
    choice = await client.cache_get(use, digest)
    if choice is None:
        data = await client.chat_json(use, conversation_id, prompt, {
            "intents": _render_intents(intents, settings.examples_per_intent,
                                       prompt.fillers["no_examples"]),
            "entities": ", ".join(entity_names) or prompt.fillers["no_entities"],
            "text": text.strip(),
        }, llm_schemas.INTENT)
        if data is None:
            return None
        intent = data["intent"].strip() if data["intent"] else None
        if intent is not None and intent not in intents:
            return await client.invalid(use, f"intent {intent!r} is not among the given intents")
        choice = {
            "intent": intent,
            "confidence": float(data["confidence"]),
            "entities": _entities(data["entities"], set(entity_names), text,
                                  settings.require_entities_in_text),
        }
        await client.cache_set(use, digest, choice)
    if choice["intent"] is None or choice["confidence"] < settings.min_confidence:
        logger.info("LLM intent not used", extra={
            "use": use, "intent": choice["intent"], "confidence": choice["confidence"]})
        return None
    return choice


# --- voice notes ---------------------------------------------------------------------------


async def transcribe(client: "LlmClient", audio_bytes: bytes, mime_type: str, filename: str,
                     conversation_id: Optional[str]) -> Optional[str]:
    use = "transcription"
    if not client.can("transcribe"):
        return None
    settings = client.config.transcription
    if not audio_bytes or len(audio_bytes) > settings.max_audio_bytes:
        logger.info("audio not sent for transcription",
                    extra={"use": use, "bytes": len(audio_bytes or b"")})
        return None
    prompt = _prompt(client, use)
    digest = client.digest(prompt.tag, client.models("transcribe"), settings.language,
                           _sha256(audio_bytes))
    cached = await client.cache_get(use, digest)
    if cached is not None:
        return cached
    if await client.meter.check(use, conversation_id, 0):
        return None
    hint = prompt.render("prompt", {})
    mime = _mime(mime_type) or "application/octet-stream"
    name = filename or "audio.ogg"

    async def operation(openai_client: Any, model: str, timeout: float) -> Any:
        kwargs: Dict[str, Any] = {"model": model, "file": (name, audio_bytes, mime),
                                  "response_format": "json", "prompt": hint, "timeout": timeout}
        if settings.language:
            kwargs["language"] = settings.language
        return await openai_client.audio.transcriptions.create(**kwargs)

    result = await client.run_chain(use, "transcribe", operation)
    if result is None:
        return None
    transcription = result.value
    usage = getattr(transcription, "usage", None)
    seconds = len(audio_bytes) / settings.assumed_audio_bytes_per_second
    prompt_tokens = completion_tokens = 0
    if getattr(usage, "type", None) == "duration":
        seconds = float(usage.seconds)
    elif getattr(usage, "type", None) == "tokens":
        prompt_tokens, completion_tokens = usage.input_tokens, usage.output_tokens
    text = (getattr(transcription, "text", None) or "").strip()
    await client.meter.record(conversation_id, Usage(
        use=use, model=result.model, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, audio_seconds=seconds, estimated=usage is None))
    if not text:
        return await client.invalid(use, "empty transcription")
    logger.info("LLM transcription", extra={
        "use": use, "provider": result.provider.label, "model": result.model,
        "latency_ms": round(result.latency_seconds * 1000), "chars": len(text)})
    await client.cache_set(use, digest, text)
    return text


# --- ticket subject ------------------------------------------------------------------------


async def phrase_subject(client: "LlmClient", system: Optional[str], description: str,
                         conversation_id: Optional[str]) -> Optional[str]:
    use = "subject"
    description = " ".join((description or "").split())
    if not client.can("chat") or not description:
        return None
    prompt = _prompt(client, use)
    data = await client.chat_json(use, conversation_id, prompt, {
        "system": _clean(system) or prompt.fillers["no_system"],
        "description": description[:1500],
    }, llm_schemas.SUBJECT)
    if data is None:
        return None
    subject = " ".join(data["subject"].split()).strip("\"'«»“” ").rstrip(".").strip()
    if len(subject) < 3:
        return await client.invalid(use, "subject too short")
    return subject


# --- embeddings (query time) ---------------------------------------------------------------


def vectors_from(response: Any, count: int) -> np.ndarray:
    """Rows in input order, float32, unit length; ValueError when the shape is wrong."""
    rows = sorted(response.data, key=lambda item: item.index)
    if len(rows) != count:
        raise ValueError(f"{len(rows)} embeddings for {count} texts")
    vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
    if vectors.ndim != 2 or not vectors.shape[1]:
        raise ValueError("embeddings of uneven or zero length")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


async def embed(client: "LlmClient", texts: List[str]) -> Optional[np.ndarray]:
    use = "embedding"
    if not client.can("embedding") or not texts:
        return None
    if await client.meter.check(use, None, sum(estimate_tokens(t) for t in texts)):
        return None
    dimensions = client.config.embedding.dimensions

    async def operation(openai_client: Any, model: str, timeout: float) -> Any:
        kwargs: Dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float",
                                  "timeout": timeout}
        if dimensions:
            kwargs["dimensions"] = dimensions
        return await openai_client.embeddings.create(**kwargs)

    result = await client.run_chain(use, "embedding", operation)
    if result is None:
        return None
    usage = getattr(result.value, "usage", None)
    await client.meter.record(None, Usage(
        use=use, model=result.model,
        prompt_tokens=(usage.prompt_tokens if usage else sum(estimate_tokens(t) for t in texts)),
        estimated=usage is None))
    try:
        return vectors_from(result.value, len(texts))
    except ValueError as error:
        return await client.invalid(use, str(error))
