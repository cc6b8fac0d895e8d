"""NLU fallback: when Rasa's NLU is unsure, an LLM chooses among the domain's intents, and
the choice is handed back to Rasa as the user's message.

Why here and not in an NLU component: Rasa 3.6 runs NLU components synchronously on the Rasa
server's event loop, so a one-second LLM call there would stall every conversation and every
webhook. The action server waits on the async client instead.

Flow: the FallbackClassifier (config.yml) gives `nlu_fallback`; the rules run
`action_nlu_fallback`. With an LLM answer the action returns, as Rasa's own two-stage
fallback does on an affirmation, `UserUtteranceReverted` (the unsure message and what
followed it are undone), `ActionExecuted(action_listen)`, and a `UserUttered` with the same
text, message id and metadata and the chosen intent and entities. Rasa then runs
`action_extract_slots` on it and predicts the next action as if the NLU had understood it.
Without an answer (no LLM, budget spent, provider failure, invalid or unsure answer) the
action returns nothing, and the rules go on as before: "Disculpe, no le he entendido" and
the help (or the form's question again).

The LLM is offered the domain's intents with examples from the training data (read once
from data/nlu/*.yml), except those config/llm.yml `nlu_fallback.never_chosen` lists and
those without examples; `helpdesk.llm.choose_intent` rejects any other intent, keeps only
the domain's entity types with values written in the message, and caches answers.
"""
import asyncio
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Text

import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, UserUtteranceReverted, UserUttered
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, latest_intent, latest_text
from helpdesk import llm
from helpdesk.config import dialogue_llm_config
from helpdesk.settings import PROJECT_DIR

logger = logging.getLogger(__name__)

NLU_FALLBACK = "nlu_fallback"
TRAINING_DIR = PROJECT_DIR / "data" / "nlu"
# "[tienda 42](store)", "[caja]{"entity": "system", "value": "POS"}" -> the words
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


def plain_example(example: str) -> str:
    """A training example as the user wrote it: entity annotations removed."""
    return " ".join(_ANNOTATION.sub(r"\1", example).split())


def read_training_examples(directory: Path) -> Dict[str, List[str]]:
    """{intent: [examples]} from the Rasa YAML NLU files of a directory (blocking)."""
    examples: Dict[str, List[str]] = {}
    for path in sorted(directory.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for item in data.get("nlu") or []:
            if not isinstance(item, dict) or "intent" not in item:
                continue  # lookup tables, synonyms, regexes
            block = item.get("examples") or ""
            lines = block.splitlines() if isinstance(block, str) else []
            found = [plain_example(line.strip()[2:]) for line in lines
                     if line.strip().startswith("- ")]
            examples.setdefault(str(item["intent"]), []).extend(e for e in found if e)
    return examples


@lru_cache(maxsize=None)
def _examples_from(directory: Path) -> Dict[str, List[str]]:
    examples = read_training_examples(directory)
    logger.info("NLU fallback: training examples loaded", extra={
        "intents": len(examples), "examples": sum(len(v) for v in examples.values())})
    return examples


async def training_examples(directory: Path = TRAINING_DIR) -> Dict[str, List[str]]:
    """The examples, read once per process (in a thread: file I/O and YAML parsing)."""
    return await asyncio.to_thread(_examples_from, directory)


def _names(items: Sequence[Any]) -> List[str]:
    """Intent or entity names from the domain dict (plain names, or {name: {...}})."""
    names = []
    for item in items or []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            names.extend(str(key) for key in item)
    return names


def offered_intents(domain: DomainDict, examples: Mapping[str, Sequence[str]],
                    never: Sequence[str]) -> Dict[str, Sequence[str]]:
    """The domain's intents the LLM may choose, with their examples."""
    excluded = set(never) | {NLU_FALLBACK}
    return {name: examples[name] for name in _names(domain.get("intents", []))
            if name not in excluded and examples.get(name)}


def _span(text: str, value: str) -> Optional[Dict[str, int]]:
    start = text.lower().find(value.lower())
    return {"start": start, "end": start + len(value)} if start >= 0 else None


def handed_back(tracker: Tracker, choice: Mapping[str, Any]) -> List[Dict[Text, Any]]:
    """The events that replace the unsure message with the same message, understood."""
    latest = tracker.latest_message or {}
    text = latest.get("text") or ""
    confidence = float(choice["confidence"])
    intent = {"name": choice["intent"], "confidence": confidence}
    entities = []
    for found in choice.get("entities") or []:
        entity = {"entity": found["entity"], "value": found["value"],
                  "extractor": "LLMFallback", "confidence_entity": confidence}
        entity.update(_span(text, found["value"]) or {})
        entities.append(entity)
    parse_data = {
        "text": text,
        "intent": intent,
        "entities": entities,
        "intent_ranking": [intent],
        # what the NLU had said, for the record
        "nlu_fallback": {"intent_ranking": (latest.get("intent_ranking") or [])[:3],
                         "chosen_by": "llm"},
    }
    user = UserUttered(text, parse_data=parse_data,
                       input_channel=tracker.get_latest_input_channel())
    # the SDK's helper has no fields for these; Rasa reads them from the event
    user["message_id"] = latest.get("message_id")
    user["metadata"] = latest.get("metadata") or {}
    return [UserUtteranceReverted(), ActionExecuted("action_listen"), user]


class ActionNluFallback(Action):
    def name(self) -> Text:
        return "action_nlu_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        text = latest_text(tracker).strip()
        if latest_intent(tracker) != NLU_FALLBACK or not text or text.startswith("/"):
            return []  # nothing the NLU was unsure about (a payload is never unsure)
        examples = await training_examples()
        intents = offered_intents(domain, examples, dialogue_llm_config().never_chosen)
        entities = _names(domain.get("entities", []))
        choice = await llm.choose_intent(text, intents, entities, tracker.sender_id)
        if choice is None:
            logger.info("NLU fallback without an LLM choice: Rasa's fallback answers")
            return []
        logger.info("NLU fallback: the LLM chose an intent", extra={
            "intent": choice["intent"], "confidence": choice["confidence"],
            "entities": [e["entity"] for e in choice.get("entities") or []]})
        return handed_back(tracker, choice)
