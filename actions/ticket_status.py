"""Ticket status by number or reference, or the user's recent tickets.

The number is the ticket_number slot when the entity model found one; otherwise (or when it
found a fragment) it is read from the message text ("105", "#105", "nro 105", "HD-XXXXXX":
helpdesk/tickets/numbers.py), so "cómo va el ticket 105?" answers about #105 instead of
listing the chat's tickets. A ticket already in Zoho Desk is looked up there (the live
status, in the words of config/zoho.yml `status_polling.labels`, the same the status-change
announcement uses); when Zoho cannot answer, the ledger's last known status is given and the
user told it may be out of date."""
import asyncio
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, get_catalog, get_ledger
from helpdesk.config import zoho_config
from helpdesk.tickets import ticket_number_in
from helpdesk.zoho import lookup_status

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
        number = asked_number(tracker, catalog.dialogue.reference_prefix)
        try:
            ledger = get_ledger()
            if number:
                record = await asyncio.to_thread(ledger.find, str(number))
                if record is None:
                    dispatcher.utter_message(response="utter_ticket_not_found", number=number)
                else:
                    await _say_status(dispatcher, record, ledger, labels)
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


def asked_number(tracker: Tracker, reference_prefix: str) -> Optional[str]:
    """The ticket the user asks about: the slot's value read as a number or reference, else
    the number in the message text, else the slot as typed (answered "not found"), else None
    (the chat's recent tickets)."""
    slot = tracker.get_slot("ticket_number")
    found = ticket_number_in(str(slot), reference_prefix) if slot else None
    if found:
        return found
    text = (tracker.latest_message or {}).get("text") or ""
    if not text.startswith("/"):  # a button's payload names no number in its text
        found = ticket_number_in(text, reference_prefix)
    if found:
        return found
    return str(slot).strip() if slot and str(slot).strip() else None


async def _say_status(dispatcher: CollectingDispatcher, record: Any, ledger: Any,
                      labels: Dict[str, str]) -> None:
    """The spec's words, "El ticket #105 está en estado: …", with the subject and the bot's
    reference; a ticket not in Zoho yet is named by its reference."""
    if record.zoho_status:  # the last status Zoho gave, as users read it
        last_known = zoho_config().status_polling.label(record.zoho_status, record.zoho_status_type)
    else:
        last_known = labels.get(record.state, record.state)
    if not record.zoho_ticket_number:
        dispatcher.utter_message(response="utter_ticket_status_pending", reference=record.reference,
                                 subject=record.subject, status=last_known)
        return
    names = {"ticket_number": record.zoho_ticket_number, "reference": record.reference,
             "subject": record.subject}
    if record.zoho_ticket_id:
        try:
            live = await asyncio.to_thread(lookup_status, record, ledger)
        except Exception as error:  # Zoho down, circuit open, timeouts: the ledger answers
            logger.info("Zoho status lookup failed; answering from the ledger",
                        extra={"ticket_id": record.id, "error": str(error)[:200]})
            dispatcher.utter_message(response="utter_ticket_status_offline", status=last_known, **names)
            return
        if live is not None:
            last_known = live.label or last_known
    dispatcher.utter_message(response="utter_ticket_status", status=last_known, **names)


def _shown_number(record: Any) -> str:
    if record.zoho_ticket_number:
        return f"#{record.zoho_ticket_number} ({record.reference})"
    return record.reference
