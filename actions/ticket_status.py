"""Ticket status by number or reference, or the user's recent tickets (from the ledger)."""
import asyncio
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, get_catalog, get_ledger

logger = logging.getLogger(__name__)


class ActionTicketStatus(Action):
    def name(self) -> Text:
        return "action_ticket_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        catalog = get_catalog()
        labels = catalog.dialogue.state_labels
        number = tracker.get_slot("ticket_number")
        try:
            ledger = get_ledger()
            if number:
                record = await asyncio.to_thread(ledger.find, str(number))
                if record is None:
                    dispatcher.utter_message(response="utter_ticket_not_found", number=number)
                else:
                    dispatcher.utter_message(
                        response="utter_ticket_status",
                        reference=_shown_number(record),
                        subject=record.subject,
                        status=labels.get(record.state, record.state),
                    )
            else:
                records = await asyncio.to_thread(
                    ledger.recent_for, tracker.sender_id, catalog.dialogue.recent_tickets
                )
                if not records:
                    dispatcher.utter_message(response="utter_no_tickets")
                else:
                    lines = "\n".join(
                        f"• {_shown_number(r)}: {r.subject} ({labels.get(r.state, r.state)})"
                        for r in records
                    )
                    dispatcher.utter_message(response="utter_recent_tickets", lines=lines)
        except Exception:
            logger.exception("ticket status lookup failed")
            dispatcher.utter_message(response="utter_status_unavailable")
        return [SlotSet("ticket_number", None)]


def _shown_number(record: Any) -> str:
    if record.zoho_ticket_number:
        return f"#{record.zoho_ticket_number} ({record.reference})"
    return record.reference
