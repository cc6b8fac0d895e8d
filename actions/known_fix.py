"""Known fixes: before a ticket is opened, the form suggests the knowledge passage that
matches the incident strongly ("¿Ya probó…?", with «Se solucionó» / «Abrir ticket»).

Once the description is known, it is searched in the knowledge base (in a worker thread; the
best passage per description is remembered, as the form asks several times a turn). A best
passage at or above config/known_fixes.yml `min_relevance` and `min_dense` adds a `known_fix`
step after the description, asked by `action_ask_known_fix`; otherwise the form's slots stay the domain's and
nothing changes. Urgent incidents are never held up. "Se solucionó" (affirm) ends the form
without a ticket and counts a deflection in Redis (per UTC month, total and per article);
"Abrir ticket" (deny) goes on to the confirmation. Without the knowledge index nothing is
suggested.
"""
import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Text

import redis
import redis.asyncio as aioredis
from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import FORM_NAME, bind_correlation, latest_intent
from actions.knowledge import search_knowledge, source_articles
from actions.ticket_extras import (
    KNOWN_FIX,
    KNOWN_FIX_DECLINED,
    KNOWN_FIX_NO_MATCH,
    KNOWN_FIX_SOLVED,
    current_known_fix,
)
from helpdesk import redis_keys
from helpdesk.config import knowledge_config, known_fix_config
from helpdesk.settings import load_settings
from knowledge.answers import quoted_passage
from knowledge.retrieval import Passage

logger = logging.getLogger(__name__)


# description -> its best passage (None: nothing found); the form asks several times a turn
_MEMO_LIMIT = 512
_best: "OrderedDict[str, Optional[Passage]]" = OrderedDict()


async def _best_passage(description: str) -> Optional[Passage]:
    if description in _best:
        _best.move_to_end(description)
        return _best[description]
    try:
        settings = knowledge_config()
        passages = await asyncio.to_thread(search_knowledge, description, settings)
    except Exception as error:  # noqa: BLE001 - no index, no suggestion; the form goes on
        logger.warning("known fixes: knowledge search failed (%s); nothing suggested", error)
        return None  # not remembered: the next turn tries again
    best = max(passages, key=lambda p: p.relevance) if passages else None
    _best[description] = best
    while len(_best) > _MEMO_LIMIT:
        _best.popitem(last=False)
    return best


async def best_fix(description: str) -> Optional[Passage]:
    """The passage to suggest for an incident, or None (no strong match, or no index)."""
    description = " ".join((description or "").split())
    if not description:
        return None
    best = await _best_passage(description)
    if best is None:
        return None
    settings = known_fix_config()
    if best.relevance < settings.min_relevance or best.dense < settings.min_dense:
        logger.debug("known fixes: no strong match", extra={
            "relevance": round(best.relevance, 3), "dense": round(best.dense, 3)})
        return None
    return best


# --- the form's step (ValidateTicketForm delegates here) ------------------------------------


async def form_needs_step(tracker: Tracker, urgent: bool) -> bool:
    """Whether the form has the known-fix step now: a suggestion to make or already
    answered. Without one the form's slots are the domain's, as before."""
    state = current_known_fix(tracker)
    if state in (KNOWN_FIX_SOLVED, KNOWN_FIX_DECLINED):
        return True
    if state is not None or (urgent and known_fix_config().skip_urgent):
        return False
    description = tracker.get_slot("description")
    return bool(description) and await best_fix(str(description)) is not None


async def extract(tracker: Tracker) -> Dict[Text, Any]:
    """The user's answer to the suggestion; a value an earlier ticket left is cleared."""
    if tracker.get_slot("requested_slot") == KNOWN_FIX:
        intent = latest_intent(tracker)
        if intent == "affirm":
            return {KNOWN_FIX: KNOWN_FIX_SOLVED}
        if intent == "deny":
            return {KNOWN_FIX: KNOWN_FIX_DECLINED}
        return {}
    if tracker.get_slot(KNOWN_FIX) is not None and current_known_fix(tracker) is None:
        return {KNOWN_FIX: None}
    return {}


async def validate(value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
                   ) -> Dict[Text, Any]:
    if value == KNOWN_FIX_SOLVED:
        passage = await best_fix(str(tracker.get_slot("description") or ""))
        await count_deflection(passage.path if passage else None)
        logger.info("known fix solved the incident: no ticket",
                    extra={"article": passage.path if passage else None})
        dispatcher.utter_message(response="utter_known_fix_solved")
    return {KNOWN_FIX: value}


class ActionAskKnownFix(Action):
    """Shows the suggested passage with «Se solucionó» / «Abrir ticket»."""

    def name(self) -> Text:
        return "action_ask_known_fix"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        passage = await best_fix(str(tracker.get_slot("description") or ""))
        if passage is None:
            # the index went away since the form chose to ask: pass the step
            return [SlotSet(KNOWN_FIX, KNOWN_FIX_NO_MATCH), FollowupAction(FORM_NAME)]
        quoted = quoted_passage(passage, knowledge_config().answer)
        logger.info("known fix suggested", extra={"article": passage.path,
                                                  "relevance": round(passage.relevance, 3)})
        dispatcher.utter_message(response="utter_known_fix", title=quoted.title,
                                 passage=quoted.passage,
                                 source_articles=source_articles([passage]))
        return []


# --- deflections ----------------------------------------------------------------------------

_clients: Dict[int, aioredis.Redis] = {}


def _redis() -> aioredis.Redis:
    """One client per event loop (tests run several loops in one process)."""
    key = id(asyncio.get_running_loop())
    if key not in _clients:
        _clients[key] = aioredis.Redis.from_url(load_settings().redis_url, socket_timeout=2,
                                                socket_connect_timeout=2)
    return _clients[key]


async def count_deflection(article: Optional[str], now: Optional[float] = None) -> None:
    """One more incident solved without a ticket, this UTC month (total and per article)."""
    month = time.strftime("%Y-%m", time.gmtime(now if now is not None else time.time()))
    key = redis_keys.known_fix_deflections(month)
    try:
        async with _redis().pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "total", 1)
            if article:
                pipe.hincrby(key, article, 1)
            await pipe.execute()
    except (redis.RedisError, OSError) as error:
        logger.warning("deflection not counted: %s", error)


async def deflections(month: str) -> Dict[str, int]:
    """{"total": n, "<article path>": n, ...} for a UTC month (YYYY-MM), for metrics."""
    raw = await _redis().hgetall(redis_keys.known_fix_deflections(month))
    return {k.decode(): int(v) for k, v in raw.items()}
