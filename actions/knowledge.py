"""How-to questions. The knowledge base answers them in a later issue; until then the bot
says plainly that it cannot, and offers a ticket (outside a form) or goes on with the form."""
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation


class ActionAnswerHowto(Action):
    def name(self) -> Text:
        return "action_answer_howto"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        if tracker.active_loop.get("name"):
            dispatcher.utter_message(response="utter_howto_unavailable_in_form")
        else:
            dispatcher.utter_message(response="utter_howto_unavailable")
        return []
