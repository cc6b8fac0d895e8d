"""Opt-out and opt-in. The channel reads the same Redis set and stays silent to a user who
opted out, except for the turn in which they opt back in."""
import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, get_optout_registry, reset_ticket_slots

logger = logging.getLogger(__name__)


class ActionOptOut(Action):
    def name(self) -> Text:
        return "action_opt_out"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        try:
            await get_optout_registry().opt_out(tracker.sender_id)
        except Exception:
            logger.exception("opt-out could not be stored")
            dispatcher.utter_message(response="utter_opt_unavailable")
            return []
        logger.info("user opted out", extra={"conversation_id": tracker.sender_id})
        dispatcher.utter_message(response="utter_opted_out")
        return reset_ticket_slots()


class ActionOptIn(Action):
    def name(self) -> Text:
        return "action_opt_in"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        try:
            await get_optout_registry().opt_in(tracker.sender_id)
        except Exception:
            logger.exception("opt-in could not be stored")
            dispatcher.utter_message(response="utter_opt_unavailable")
            return []
        logger.info("user opted in", extra={"conversation_id": tracker.sender_id})
        dispatcher.utter_message(response="utter_opted_in")
        # whatever was collected while the bot was silent is not carried on
        return reset_ticket_slots()
