"""Files and locations sent without text.

Inside the ticket form they are attached to the ticket being collected. Outside it, a photo or
document sent soon after a ticket was recorded (`add_files_within_minutes`) is added to that
ticket: to its ledger row and, through the Zoho queue, to its Zoho ticket (never a new one).
Otherwise the file starts a new ticket (the rules run the form next).
"""
import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Text

import redis
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    attachments_with_latest,
    bind_correlation,
    get_catalog,
    get_ledger,
    message_media,
)
from helpdesk.settings import load_settings, load_zoho

logger = logging.getLogger(__name__)

ADDED_SLOT = "file_added_to_ticket"


class ActionReceiveFile(Action):
    def name(self) -> Text:
        return "action_receive_file"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        correlation_id = bind_correlation(tracker)
        media = message_media(tracker)
        if media and not tracker.active_loop.get("name"):
            reference = await self._add_to_recent_ticket(tracker, media, correlation_id)
            if reference:
                dispatcher.utter_message(response="utter_file_added_to_ticket", reference=reference)
                return [SlotSet(ADDED_SLOT, True)]
        attachments = attachments_with_latest(tracker)
        if media:
            dispatcher.utter_message(response="utter_file_received")
        else:
            # a location, or a typed "share_file": nothing to attach, the form goes on
            logger.info("share_file without media", extra={"conversation_id": tracker.sender_id})
        events = [SlotSet(ADDED_SLOT, False)]
        if attachments is not None:
            events.append(SlotSet("attachments", attachments))
        return events

    async def _add_to_recent_ticket(self, tracker: Tracker, media: List[Dict[str, Any]],
                                    correlation_id: Optional[str]) -> Optional[str]:
        window = get_catalog().dialogue.add_files_within_minutes
        if window <= 0:
            return None
        try:
            return await asyncio.to_thread(_add_files, tracker.sender_id, media, window,
                                           correlation_id)
        except Exception:
            # the file then starts a ticket of its own: nothing the user sent is lost
            logger.exception("file not added to the recent ticket")
            return None


def _add_files(conversation_id: str, media: List[Dict[str, Any]], window_minutes: float,
               correlation_id: Optional[str]) -> Optional[str]:
    """Blocking: the ledger and RQ. The reference shown to the user, or None."""
    ledger = get_ledger()
    recent = ledger.recent_for(conversation_id, 1)
    if not recent or time.time() - recent[0].created_at > window_minutes * 60:
        return None
    record = recent[0]
    paths = [m["path"] for m in media]
    attachments = ledger.add_attachments(record.id, paths)
    if load_zoho() is not None:
        # only with Zoho configured: an action server without Zoho never loads its client
        from helpdesk.config import zoho_config
        from helpdesk.zoho import enqueue_addition

        connection = redis.Redis.from_url(load_settings().redis_url, socket_timeout=5)
        try:
            for index, path in enumerate(attachments):
                if path in paths:
                    # the same id the delivery job uses for this file: one upload, whichever
                    # of the two runs first (the ticket may still be on its way to Zoho)
                    enqueue_addition(connection, record.id, zoho_config(), attachment_path=path,
                                     addition_id=f"{record.id}:attachment:{index}",
                                     correlation_id=correlation_id)
        finally:
            connection.close()
    logger.info("file added to the recent ticket",
                extra={"ticket_id": record.id, "files": len(paths)})
    if record.zoho_ticket_number:
        return f"#{record.zoho_ticket_number}"
    return record.reference
