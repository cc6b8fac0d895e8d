"""Screenshots and photos of errors, read into the ticket being collected.

The images of the latest message (stored by the channel, `metadata.media`) go to the vision
model (`helpdesk.llm.read_screenshot`). What it reads fills the ticket's EMPTY slots only:
the store (when the catalog knows it), the system (when the catalog knows it), the
description (when it says enough), and the error messages; a value the user gave, in this
message or before, is never replaced. Without an LLM, or when the model times out, refuses
or answers something invalid, nothing is filled and the form asks as it always does. The
image itself is attached either way (`actions.common.attachments_with_latest`).

The action server is one event loop: the file is read in a worker thread and the model
call is async.
"""
import asyncio
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Text, Tuple

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.common import get_catalog, message_media
from actions.ticket_extras import ERROR_MESSAGES, current_error_messages
from helpdesk import llm
from helpdesk.config import Catalog
from helpdesk.config import dialogue_llm_config, llm_config
from helpdesk.text import word_count
from helpdesk.tickets import cut_text

logger = logging.getLogger(__name__)

# a system named only as "otro" says nothing the form would not ask
_UNINFORMATIVE_SYSTEMS = {"otro"}
# Rasa asks the form to validate twice in the turn that activates it with slots already
# filled; the reading of a message's image is kept briefly so the model is asked once
# (the LLM client's cache does the same across processes, when it is on)
_RECENT_LIMIT = 256
_recent: "OrderedDict[Tuple[str, str, str], Dict[str, Any]]" = OrderedDict()


def is_image(media: Dict[str, Any]) -> bool:
    mime = str(media.get("mime_type") or "").lower()
    return media.get("kind") == "image" or mime.startswith("image/")


def read_file(path: str, max_bytes: int) -> Optional[bytes]:
    """The file's bytes, or None when it is gone or larger than the model accepts
    (blocking: call it in a thread)."""
    try:
        if os.path.getsize(path) > max_bytes:
            logger.info("image too large for the vision model", extra={"bytes": os.path.getsize(path)})
            return None
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        logger.warning("stored image unreadable: %s", error)
        return None


async def read_images(tracker: Tracker) -> List[Dict[str, Any]]:
    """What the vision model read from each image of the latest message (those it could)."""
    images = [m for m in message_media(tracker) if is_image(m)]
    limit = dialogue_llm_config().max_images_per_message
    if not images or limit == 0:
        return []
    catalog = get_catalog()
    systems = [s.name for s in catalog.systems if s.name not in _UNINFORMATIVE_SYSTEMS]
    max_bytes = llm_config().screenshot.max_image_bytes
    message_id = str((tracker.latest_message or {}).get("message_id") or "")
    found = []
    for media in images[:limit]:
        key = (tracker.sender_id, message_id, str(media.get("sha256") or media["path"]))
        if message_id and key in _recent:
            found.append(_recent[key])
            continue
        data = await asyncio.to_thread(read_file, str(media["path"]), max_bytes)
        if data is None:
            continue
        reading = await llm.read_screenshot(data, str(media.get("mime_type") or ""),
                                            tracker.sender_id, systems=systems)
        if reading is None:
            logger.info("screenshot not read (no LLM, or no usable answer)",
                        extra={"sha256": str(media.get("sha256") or "")[:12]})
            continue
        if message_id:
            _recent[key] = reading
            while len(_recent) > _RECENT_LIMIT:
                _recent.popitem(last=False)
        found.append(reading)
    return found


def _first(readings: Sequence[Dict[str, Any]], key: str) -> List[str]:
    return [str(r[key]) for r in readings if r.get(key)]


def slots_from_readings(readings: Sequence[Dict[str, Any]], catalog: Catalog) -> Dict[Text, Any]:
    """The slot values the readings support: known store and system, a description that
    says enough (the form's own rule), the error messages (once each, in order)."""
    values: Dict[Text, Any] = {}
    for mention in _first(readings, "store"):
        store = catalog.find_store(mention)
        if store:
            values["store"] = store.display
            break
    for mention in _first(readings, "system"):
        system = catalog.find_system(mention)
        if system and system.name not in _UNINFORMATIVE_SYSTEMS:
            values["system"] = system.name
            break
    settings = catalog.dialogue
    for text in _first(readings, "description"):
        text = " ".join(text.split())
        if word_count(text) >= 2:
            values["description"] = cut_text(text, settings.description_max_chars,
                                             settings.cut_marker)
            break
    messages = [m for r in readings for m in (r.get("error_messages") or []) if m]
    if messages:
        values[ERROR_MESSAGES] = list(dict.fromkeys(messages))
    return values


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


async def screenshot_slot_events(tracker: Tracker, events: Sequence[Dict[str, Any]]
                                 ) -> List[Dict[Text, Any]]:
    """SlotSet events for the empty ticket slots from the latest message's images.

    `events` are the slot events the form already returns this turn: a slot they set, or a
    slot the tracker holds (the user's values, also this turn's candidates), is left alone;
    error messages read now are added to the ticket's earlier ones."""
    readings = await read_images(tracker)
    if not readings:
        return []
    values = slots_from_readings(readings, get_catalog())
    returned = {e.get("name"): e.get("value") for e in events if e.get("event") == "slot"}
    out: List[Dict[Text, Any]] = []
    for name, value in values.items():
        if name == ERROR_MESSAGES:
            known = current_error_messages(tracker)
            merged = list(dict.fromkeys(known + value))
            if merged != known:
                out.append(SlotSet(ERROR_MESSAGES, merged))
            continue
        current = returned[name] if name in returned else tracker.get_slot(name)
        if name in returned or not _empty(current):
            continue  # what the user said stays
        out.append(SlotSet(name, value))
    logger.info("screenshot read into the ticket",
                extra={"filled": [e["name"] for e in out], "images": len(readings)})
    return out
