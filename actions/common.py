"""What the actions share: the catalog, the ledger, Redis, the reporter, the correlation id."""
import logging
from functools import lru_cache
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from helpdesk.config import Catalog, catalog
from helpdesk.tickets import Ledger
from helpdesk.logs import METADATA_KEY, correlation_id_var
from helpdesk.whatsapp import AsyncOptOutRegistry, in_media_dir
from helpdesk.settings import load_settings

logger = logging.getLogger(__name__)

FORM_NAME = "ticket_form"
# slots a finished, cancelled or abandoned ticket leaves behind, and their fresh values
TICKET_SLOTS = {
    "store": None,
    "store_attempts": 0,
    "system": None,
    "description": None,
    "priority": None,
    "person": None,
    "confirm_ticket": None,
    "correct_field": None,
    "attachments": [],
    "error_messages": [],
    "known_fix": None,
    "same_incident": None,
    "file_added_to_ticket": False,
    "correcting": False,
}


def get_catalog() -> Catalog:
    return catalog()


@lru_cache(maxsize=None)
def get_ledger() -> Ledger:
    return Ledger(load_settings().database_url)


_optout: Dict[int, AsyncOptOutRegistry] = {}


def get_optout_registry() -> AsyncOptOutRegistry:
    """One client per event loop (tests run several loops in one process); opt-outs are written
    to the ledger too, so they survive a Redis loss."""
    import asyncio

    key = id(asyncio.get_running_loop())
    if key not in _optout:
        _optout[key] = AsyncOptOutRegistry.from_url(load_settings().redis_url, get_ledger())
    return _optout[key]


def metadata(tracker: Tracker) -> Dict[str, Any]:
    return (tracker.latest_message or {}).get("metadata") or {}


def bind_correlation(tracker: Tracker) -> Optional[str]:
    """Log lines of this action carry the correlation id of the message being handled."""
    value = metadata(tracker).get(METADATA_KEY)
    correlation_id_var.set(value)
    return value


def reporter(tracker: Tracker) -> Dict[str, Optional[str]]:
    """Name and number of who is writing, from channel metadata or the sender id."""
    meta = metadata(tracker)
    phone = meta.get("sender_phone")
    if not phone and tracker.sender_id and tracker.sender_id.isdigit():
        phone = tracker.sender_id
    return {
        "name": meta.get("sender_name"),
        "phone": phone,
        "channel": meta.get("channel") or (tracker.get_latest_input_channel() or None),
    }


def latest_intent(tracker: Tracker) -> Optional[str]:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def latest_text(tracker: Tracker) -> str:
    return (tracker.latest_message or {}).get("text") or ""


def latest_entity_values(tracker: Tracker, *entity_types: str) -> List[str]:
    entities = (tracker.latest_message or {}).get("entities") or []
    return [str(e.get("value")) for e in entities if e.get("entity") in entity_types]


def form_started_event(tracker: Tracker) -> Optional[Dict[str, Any]]:
    """The event that activated the ticket form most recently."""
    for event in reversed(tracker.events):
        if event.get("event") == "active_loop" and event.get("name") == FORM_NAME:
            return event
    return None


def report_message_id(tracker: Tracker, timestamp: float) -> Optional[str]:
    """The channel's id of the user message that started the ticket form at `timestamp` (the
    form starts in that message's turn): the last user message at or before it."""
    found = None
    for event in tracker.events:
        if event.get("event") != "user":
            continue
        if event.get("timestamp", 0) > timestamp:
            break
        found = event.get("message_id") or found
    return found


def incident_started_at(tracker: Tracker, form_started: Dict[str, Any]) -> float:
    """When the user's first message of the incident arrived: the user message whose turn
    started the ticket form (the last one before its activation), else the activation."""
    started = float(form_started.get("timestamp") or 0)
    first = started
    for event in tracker.events:
        stamp = event.get("timestamp") or 0
        if stamp > started:
            break
        if event.get("event") == "user":
            first = float(stamp)
    return first


def user_texts_since(tracker: Tracker, timestamp: float) -> List[str]:
    """User messages from the one that started the form on (the form starts in its turn)."""
    texts, last_user_text = [], None
    for event in tracker.events:
        if event.get("event") != "user":
            continue
        if event.get("timestamp", 0) >= timestamp:
            texts.append(event.get("text") or "")
        else:
            last_user_text = event.get("text") or ""
    if last_user_text is not None:
        texts.insert(0, last_user_text)
    return texts


def reset_ticket_slots() -> List[Dict[str, Any]]:
    return [SlotSet(name, value) for name, value in TICKET_SLOTS.items()]


def first_value(value: Any) -> Optional[str]:
    """A slot or entity value as text: the first non-empty item of a list, None when empty."""
    if isinstance(value, list):
        value = next((v for v in value if v), None)
    return str(value) if value not in (None, "") else None


def media_paths(paths: Any, where: str, **context: Any) -> List[str]:
    """The paths that resolve inside the media directory; any other (a forged call's `.env`,
    `/proc/self/environ`, `../`, a symlink out) is dropped and logged without the path, with
    `where` it came from and `context` (ticket_id, conversation_id)."""
    kept, refused = [], 0
    for path in paths if isinstance(paths, list) else []:
        if in_media_dir(path):
            kept.append(path)
        else:
            refused += 1
    if refused:
        logger.warning("attachment refused: not a file of the media directory",
                       extra={"source": where, "refused": refused, **context})
    return kept


def message_media(tracker: Tracker) -> List[Dict[str, Any]]:
    """Files the channel stored for the latest user message (metadata "media"), those inside
    the media directory only."""
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    media = metadata.get("media")
    listed = [m for m in media if isinstance(m, dict) and m.get("path")] if isinstance(media, list) else []
    allowed = set(media_paths([m["path"] for m in listed], "message metadata",
                              conversation_id=tracker.sender_id))
    return [m for m in listed if m["path"] in allowed]


def attachments_with_latest(tracker: Tracker) -> Optional[List[str]]:
    """The `attachments` slot plus the latest message's files; None when nothing is new.
    A slot path outside the media directory is dropped (the slot is then rewritten)."""
    slot = tracker.get_slot("attachments") or []
    current = media_paths(slot, "attachments slot", conversation_id=tracker.sender_id)
    new = [m["path"] for m in message_media(tracker) if m["path"] not in current]
    changed = new or len(current) != (len(slot) if isinstance(slot, list) else 0)
    return current + new if changed else None
