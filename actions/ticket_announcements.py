"""Messages a worker sends to a reporter through Rasa's `trigger_intent`: the Zoho number of a
ticket created after an outage, and a status change of an open ticket.

The worker (workers/announcements.py) triggers EXTERNAL_ticket_delivered (entities
ticket_number, priority, reference) or EXTERNAL_ticket_status_changed (ticket_number, status,
reference); the domain's rules run these actions, which pass the entities to the responses.
They set no slots, so a form the reporter is filling in meanwhile is left as it was.
"""
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation

logger = logging.getLogger(__name__)


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
