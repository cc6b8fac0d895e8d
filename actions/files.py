"""Files and locations sent without text: attached to the ticket being collected."""
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import attachments_with_latest, bind_correlation, message_media

logger = logging.getLogger(__name__)


class ActionReceiveFile(Action):
    """Keeps the file for the ticket; the form (next, by rule) asks for what is missing."""

    def name(self) -> Text:
        return "action_receive_file"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        attachments = attachments_with_latest(tracker)
        if message_media(tracker):
            dispatcher.utter_message(response="utter_file_received")
        else:
            # a location, or a typed "share_file": nothing to attach, the form goes on
            logger.info("share_file without media", extra={"conversation_id": tracker.sender_id})
        return [SlotSet("attachments", attachments)] if attachments is not None else []
