"""The ticket slots the screenshot and known-fix steps add (`error_messages`, `known_fix`),
read so that a value left by an earlier ticket never leaks into the current one.

A value counts for the ticket being collected only when it was set after the previous ticket
form ended: a form deactivated before the latest user message closed its ticket, and whatever
it left in these slots belongs to that ticket (the shared slot reset clears them too; this
check keeps the rule even where a reset is missing).
"""
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker

from actions.common import FORM_NAME

ERROR_MESSAGES = "error_messages"
KNOWN_FIX = "known_fix"

# known_fix values
KNOWN_FIX_SOLVED = "solved"  # the suggestion helped: no ticket
KNOWN_FIX_DECLINED = "declined"  # the user wants the ticket
KNOWN_FIX_NO_MATCH = "no_match"  # nothing to suggest (or suggestions off)

# the same-incident step (actions/same_incident.py): the id of the ticket the report joined,
# or SAME_INCIDENT_OTHER for a different problem
SAME_INCIDENT = "same_incident"
SAME_INCIDENT_OTHER = "other"


def _index_of_last(events: List[Dict[str, Any]], predicate: Any) -> int:
    for index in range(len(events) - 1, -1, -1):
        if predicate(events[index]):
            return index
    return -1


def current_ticket_value(tracker: Tracker, name: str) -> Any:
    """The slot's value when it belongs to the ticket being collected, else None."""
    value = tracker.get_slot(name)
    if value in (None, [], ""):
        return value
    events = tracker.events
    set_at = _index_of_last(events, lambda e: e.get("event") == "slot" and e.get("name") == name)
    if set_at < 0:
        return value  # set in this run (the tracker's slots, not yet an event)
    last_user = _index_of_last(events, lambda e: e.get("event") == "user")
    for event in events[set_at + 1:max(last_user, set_at + 1)]:
        if event.get("event") == "active_loop" and event.get("name") in (None, FORM_NAME):
            return None  # set during a form that has ended since
    return value


def current_error_messages(tracker: Tracker) -> List[str]:
    value = current_ticket_value(tracker, ERROR_MESSAGES)
    return [str(v) for v in value if v] if isinstance(value, list) else []


def current_known_fix(tracker: Tracker) -> Optional[str]:
    value = current_ticket_value(tracker, KNOWN_FIX)
    return str(value) if value else None


def current_same_incident(tracker: Tracker) -> Optional[str]:
    value = current_ticket_value(tracker, SAME_INCIDENT)
    return str(value) if value else None
