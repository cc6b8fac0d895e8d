"""One outage, one ticket: before a new ticket is read back, a report that matches a ticket
recorded a moment ago (config/dialogue.yml `same_incident`: the same store and system within
the window, not closed in Zoho Desk) is offered to join it.

The form gets a `same_incident` step after the description, asked by
`action_ask_same_incident` («¿Es el mismo problema que el ticket #N?», «Sí, es el mismo» /
«No, es otro»). Joined (affirm), the slot holds that ticket's id and the form ends without a
confirmation; `action_submit_ticket` adds the report to it (a comment with the reporter and the
description, the files) and tells the reporter its number. A different problem (deny) goes on
to the read-back and a ticket of its own. Without a match the form's slots are the domain's.
"""
import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import FORM_NAME, bind_correlation, get_catalog, get_ledger, latest_intent
from actions.ticket_extras import SAME_INCIDENT, SAME_INCIDENT_OTHER, current_same_incident
from helpdesk.config import NO_STORE
from helpdesk.tickets import FAILED, TicketRecord
from helpdesk.whatsapp import group_of

logger = logging.getLogger(__name__)


def _fields(tracker: Tracker) -> Optional[Dict[str, str]]:
    """The values compared (config `same_incident.match`), or None when one is unknown."""
    catalog = get_catalog()
    store, system_name = tracker.get_slot("store"), tracker.get_slot("system")
    system = catalog.find_system(str(system_name)) if system_name else None
    known = {
        "store": store if store and store != NO_STORE else None,
        "system": system_name,
        "department": system.department if system else None,
        "classification": system.classification if system else None,
    }
    fields = {name: known[name] for name in catalog.dialogue.same_incident_fields}
    if not fields or any(not value for value in fields.values()):
        return None
    return {name: str(value) for name, value in fields.items()}


def _prefix(conversation_id: str) -> Optional[str]:
    """scope "group": only tickets of the same group's conversations ("g<group>-...")."""
    group = group_of(conversation_id)
    return f"g{group.split('@')[0]}-" if group else None


def own_recent_ticket(tracker: Tracker) -> Optional[TicketRecord]:
    """The ticket this conversation recorded in the last `status.add_files_within_minutes`
    (blocking: the ledger): "ah, y también la balanza hace lo mismo" may be more about it."""
    window = get_catalog().dialogue.add_files_within_minutes
    if window <= 0:
        return None
    recent = get_ledger().recent_for(tracker.sender_id, 1)
    if not recent or recent[0].created_at < time.time() - window * 60:
        return None
    if (recent[0].zoho_status_type or "") == "Closed" or recent[0].state == FAILED:
        return None
    return recent[0]


def find_match(tracker: Tracker) -> Optional[TicketRecord]:
    """The ticket this report may be part of (blocking: the ledger), or None."""
    settings = get_catalog().dialogue
    if settings.same_incident_minutes <= 0:
        return None
    fields = _fields(tracker)
    if fields is None:
        return None
    prefix = None
    if settings.same_incident_scope == "group":
        prefix = _prefix(tracker.sender_id)
        if prefix is None:
            return None  # a direct chat: no group to compare within
    return get_ledger().same_incident(fields, time.time() - settings.same_incident_minutes * 60,
                                      prefix)


async def _looked_up(find: Any, tracker: Tracker) -> Optional[TicketRecord]:
    try:
        return await asyncio.to_thread(find, tracker)
    except Exception:  # the ledger away: no question, the report gets its own ticket
        logger.exception("same-incident lookup failed; the report goes on as a new ticket")
        return None


async def matching_ticket(tracker: Tracker) -> Optional[TicketRecord]:
    """The conversation's own ticket of a moment ago, else another reporter's of the same
    outage, else None."""
    return (await _looked_up(own_recent_ticket, tracker)
            or await _looked_up(find_match, tracker))


def shown_number(record: TicketRecord) -> str:
    return f"#{record.zoho_ticket_number}" if record.zoho_ticket_number else record.reference


# --- the form's step (ValidateTicketForm delegates here) ------------------------------------


FIRST = "first"  # about the conversation's own ticket: asked before store and system
LAST = "last"  # another reporter's ticket: asked once store, system and description are known


async def form_step(tracker: Tracker) -> Optional[str]:
    """Where the form has the same-incident step now, FIRST or LAST, or None without one. A
    ticket of this conversation of a moment ago is asked about first (what the user adds need
    not name a store or system); another one once the report is complete, or when answered."""
    if await _looked_up(own_recent_ticket, tracker) is not None:
        return FIRST
    if current_same_incident(tracker) is not None:
        return LAST
    if not all(tracker.get_slot(name) for name in ("store", "system", "description")):
        return None
    return LAST if await _looked_up(find_match, tracker) is not None else None


def joined(tracker: Tracker) -> Optional[str]:
    """The id of the ticket the report joined, or None."""
    value = current_same_incident(tracker)
    return value if value not in (None, SAME_INCIDENT_OTHER) else None


async def extract(tracker: Tracker) -> Dict[Text, Any]:
    """The user's answer; a value an earlier ticket left is cleared."""
    if tracker.get_slot("requested_slot") == SAME_INCIDENT:
        intent = latest_intent(tracker)
        if intent == "affirm":
            match = await matching_ticket(tracker)
            return {SAME_INCIDENT: match.id if match else SAME_INCIDENT_OTHER}
        if intent == "deny":
            return {SAME_INCIDENT: SAME_INCIDENT_OTHER}
        return {}
    if tracker.get_slot(SAME_INCIDENT) is not None and current_same_incident(tracker) is None:
        return {SAME_INCIDENT: None}
    return {}


class ActionAskSameIncident(Action):
    """«¿Es el mismo problema que el ticket #N…?» with «Sí, es el mismo» / «No, es otro»."""

    def name(self) -> Text:
        return "action_ask_same_incident"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        match = await matching_ticket(tracker)
        if match is None:  # closed or gone since the form chose to ask: a ticket of its own
            return [SlotSet(SAME_INCIDENT, SAME_INCIDENT_OTHER), FollowupAction(FORM_NAME)]
        minutes = max(1, round((time.time() - match.created_at) / 60))
        logger.info("same incident offered", extra={"ticket_id": match.id})
        if match.conversation_id == tracker.sender_id:
            dispatcher.utter_message(response="utter_more_about_ticket",
                                     number=shown_number(match), system=match.system or "")
            return []
        dispatcher.utter_message(response="utter_same_incident", number=shown_number(match),
                                 system=match.system or "", store=match.store or "",
                                 minutes=minutes)
        return []
