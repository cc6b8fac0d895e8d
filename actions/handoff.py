"""A user asks for a person: the request is recorded and the user told someone will write.

The Chatwoot handoff (pausing the bot, agents replying) comes in a later issue; the ledger's
`handoff_requests` table is where that work finds the requests.
"""
import asyncio
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    bind_correlation,
    get_ledger,
    latest_text,
    reset_ticket_slots,
)

logger = logging.getLogger(__name__)


class ActionRequestHuman(Action):
    def name(self) -> Text:
        return "action_request_human"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        correlation_id = bind_correlation(tracker)
        in_form = bool(tracker.active_loop.get("name"))
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
                "during_ticket" if in_form else "asked",
                note,
                correlation_id,
            )
            logger.info("handoff requested", extra={"request_id": request_id})
        except Exception:
            # the user still gets an answer; the log line is the record of last resort
            logger.exception("handoff request could not be recorded", extra={"note": note})
        dispatcher.utter_message(response="utter_handoff_requested")
        return reset_ticket_slots()
