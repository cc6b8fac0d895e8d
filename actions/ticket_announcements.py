"""Messages a worker sends to a reporter through Rasa's `trigger_intent`: the Zoho number of a
ticket created after an outage, and a status change of an open ticket.

The worker (workers/announcements.py) triggers EXTERNAL_ticket_delivered (entities
ticket_number, priority, reference) or EXTERNAL_ticket_status_changed (ticket_number, status,
reference); the domain's rules run these actions, which pass the entities to the responses.
They set no slots, so a form the reporter is filling in meanwhile is left as it was.

Said once: the worker passes the announcement's key too (entity `announcement`: the job id,
ticket and what is announced). The action records it in the ledger (`announcements`, one
atomic insert) before it speaks, and says nothing when it was recorded already: a worker's
retry after a read timeout, or its first call that Rasa ran late (waiting on the conversation's
lock, or frozen), reaches this action a second time and is silent. Without the ledger (an
error) the action fails, nothing is said, and the worker's retry tries again. The key is not a
domain entity on purpose: it influences no prediction (and adding it would mean retraining).
"""
import asyncio
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, get_ledger

logger = logging.getLogger(__name__)

# the worker's key of the announcement (workers/announcements.py)
ANNOUNCEMENT_ENTITY = "announcement"


def _entity(tracker: Tracker, name: str) -> Optional[str]:
    for entity in (tracker.latest_message or {}).get("entities") or []:
        if entity.get("entity") == name and entity.get("value") not in (None, ""):
            return str(entity["value"])
    return None


class _Announcement:
    """The shared run of the announcement actions (not an Action itself: rasa-sdk registers
    every Action subclass, and this one has no name)."""

    response = ""
    required = ()
    optional = ()

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        values = {name: _entity(tracker, name) for name in (*self.required, *self.optional)}
        missing = [name for name in self.required if not values[name]]
        if missing:
            logger.error("announcement without its entities; nothing said",
                         extra={"action": self.name(), "missing": missing})
            return []
        key = _entity(tracker, ANNOUNCEMENT_ENTITY)
        if key is not None and not await asyncio.to_thread(
                get_ledger().record_announcement, key, tracker.sender_id):
            logger.info("announcement said already; not said again",
                        extra={"action": self.name(), "announcement": key})
            return []
        dispatcher.utter_message(response=self.response, **{k: v or "" for k, v in values.items()})
        return []


class ActionAnnounceTicketDelivered(_Announcement, Action):
    response = "utter_ticket_delivered"
    required = ("ticket_number", "reference")
    optional = ("priority",)

    def name(self) -> Text:
        return "action_announce_ticket_delivered"


class ActionAnnounceTicketStatus(_Announcement, Action):
    response = "utter_ticket_status_changed"
    required = ("ticket_number", "status")
    optional = ("reference",)

    def name(self) -> Text:
        return "action_announce_ticket_status"
