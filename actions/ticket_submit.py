"""Submitting the confirmed ticket to the ledger, and clearing a finished or cancelled one."""
import asyncio
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    bind_correlation,
    form_started_event,
    get_catalog,
    get_ledger,
    first_value,
    reporter,
    reset_ticket_slots,
    user_texts_since,
)
from helpdesk.priority import priority_label
from helpdesk.tickets import build_ticket, ticket_id_for

logger = logging.getLogger(__name__)


class ActionSubmitTicket(Action):
    """Writes the ticket to the ledger (state pending delivery) and tells the user.

    The ticket id comes from the conversation and the moment the form started, so the same
    form submitted twice (a redelivered message, a retried action call) is one row.
    """

    def name(self) -> Text:
        return "action_submit_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        correlation_id = bind_correlation(tracker)
        catalog = get_catalog()
        started = form_started_event(tracker)
        if started is None or tracker.get_slot("confirm_ticket") is not True:
            logger.warning("submit without a confirmed ticket form; nothing recorded")
            return reset_ticket_slots()
        persons = tracker.get_slot("person") or []
        who = reporter(tracker)
        ticket = build_ticket(
            catalog,
            ticket_id=ticket_id_for(tracker.sender_id, started["timestamp"]),
            conversation_id=tracker.sender_id,
            store=tracker.get_slot("store"),
            system=tracker.get_slot("system"),
            description=tracker.get_slot("description") or "",
            stated_priority=tracker.get_slot("priority"),
            priority_texts=user_texts_since(tracker, started["timestamp"])
            + [tracker.get_slot("description") or ""],
            reporter_name=who["name"],
            reporter_phone=who["phone"],
            channel=who["channel"],
            affected_person=first_value([p for p in persons if not str(p).startswith("@")]),
            mentioned_users=[p for p in persons if str(p).startswith("@")],
            attachments=list(tracker.get_slot("attachments") or []),
            correlation_id=correlation_id,
        )
        try:
            record, created = await asyncio.to_thread(get_ledger().submit, ticket)
        except Exception:
            logger.exception("ledger write failed", extra={"ticket_id": ticket.id})
            dispatcher.utter_message(response="utter_ticket_record_failed")
            # keep what was collected and read it back again: the user confirms once more
            # when they want to retry, and nothing is submitted without that confirmation
            return [SlotSet("confirm_ticket", None), FollowupAction("ticket_form")]
        logger.info(
            "ticket recorded" if created else "ticket already recorded",
            extra={
                "ticket_id": record.id,
                "reference": record.reference,
                "priority": record.priority,
                "conversation_id": tracker.sender_id,
            },
        )
        dispatcher.utter_message(
            response="utter_ticket_recorded",
            reference=record.reference,
            priority=priority_label(catalog.priority, record.priority),
        )
        return reset_ticket_slots()


class ActionResetTicket(Action):
    """Clears what a cancelled ticket form collected."""

    def name(self) -> Text:
        return "action_reset_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        return reset_ticket_slots()
