"""A user asks for a person (or a worker escalates): the request is recorded in the ledger and
the conversation goes to people.

- Chatwoot configured: the Chatwoot conversation is queued to open to agents with the handoff
  labels and a private note (what the bot collected, the user's last messages), the Rasa
  conversation is paused (`ConversationPaused`, so the bot stays quiet while an agent writes)
  and the user gets `utter_handoff_started`. The agent resolving it hands it back
  (connectors/chatwoot.py, workers/chatwoot_jobs.py).
- Otherwise, with SUPPORT_ESCALATION_CHAT: the spec's escalation message goes to that chat,
  the bot stays on (nobody would hand it back) and the user gets `utter_handoff_requested`.
- Otherwise (or when the handoff cannot be queued): recorded only, `utter_handoff_requested`.

A triggered `EXTERNAL_*` intent (a follow-up worker escalating) is recorded as "escalation".
A prediction from an old message (one already handed over, or written while paused) does
nothing: a conversation is never handed over twice for one message.
"""
import asyncio
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    bind_correlation,
    get_ledger,
    latest_intent,
    latest_text,
    reporter,
    reset_ticket_slots,
)
from helpdesk import handoff
from helpdesk.config import chatwoot_config

logger = logging.getLogger(__name__)


# the actions that hand a conversation over (actions/followups.py escalates through this one)
HANDOFF_ACTIONS = ("action_request_human", "action_followup_escalate")


def answered_already(events: List[Dict[Text, Any]]) -> bool:
    """True when the latest user message must not start a handoff: it was written while the
    conversation was paused (to the agent, who read it in Chatwoot), or a handoff has already
    run for it. Either way the prediction came from a history that was answered."""
    paused = written_while_paused = handed_over = False
    for event in events:
        kind = event.get("event")
        if kind == "pause":
            paused = True
        elif kind in ("resume", "restart", "session_started"):
            paused = False
        elif kind == "user":
            written_while_paused, handed_over = paused, False
        elif kind == "action" and event.get("name") in HANDOFF_ACTIONS:
            handed_over = True
    return written_while_paused or handed_over


class ActionRequestHuman(Action):
    def name(self) -> Text:
        return "action_request_human"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        correlation_id = bind_correlation(tracker)
        if answered_already(tracker.applied_events()):
            # predicted again from an old message (a fallback reverted the message after it):
            # that message was handed over already, or was written to the agent while paused
            logger.warning("handoff not repeated: the latest user message was already handed over")
            return []
        in_form = bool(tracker.active_loop.get("name"))
        intent = latest_intent(tracker) or ""
        reason = "escalation" if intent.startswith("EXTERNAL_") else ("during_ticket" if in_form else "asked")
        collected = {
            slot: tracker.get_slot(slot)
            for slot in ("store", "system", "description")
            if tracker.get_slot(slot)
        }
        note = latest_text(tracker)
        if collected:
            note += " | " + "; ".join(f"{k}: {v}" for k, v in collected.items())
        try:
            request_id = await asyncio.to_thread(
                get_ledger().record_handoff_request,
                tracker.sender_id,
                reason,
                note,
                correlation_id,
            )
            logger.info("handoff requested", extra={"request_id": request_id, "reason": reason})
        except Exception:
            # the user still gets an answer; the log line is the record of last resort
            logger.exception("handoff request could not be recorded", extra={"note": note})

        outcome = await self._hand_over(tracker, reason, correlation_id)
        events = reset_ticket_slots()
        if outcome == handoff.CHATWOOT:
            dispatcher.utter_message(response="utter_handoff_started")
            if in_form:
                events += [ActiveLoop(None), SlotSet("requested_slot", None)]
            events.append(ConversationPaused())
        else:
            dispatcher.utter_message(response="utter_handoff_requested")
        return events

    @staticmethod
    async def _hand_over(tracker: Tracker, reason: str, correlation_id: Any) -> str:
        try:
            options = chatwoot_config()
            who = reporter(tracker)
            slots = handoff.slots_for_summary({
                name: tracker.get_slot(name) for name in handoff.SUMMARY_FIELDS
            })
            recent = handoff.recent_user_texts(tracker.events, options.handoff_recent_messages)
            outcome = await asyncio.to_thread(
                handoff.hand_over,
                tracker.sender_id,
                reason=reason,
                reporter_name=who.get("name"),
                reporter_phone=who.get("phone"),
                slots=slots,
                recent_texts=recent,
                correlation_id=correlation_id,
            )
            logger.info("handoff", extra={"outcome": outcome})
            return outcome
        except Exception:
            logger.exception("handoff could not be passed on; recorded only")
            return handoff.RECORDED
