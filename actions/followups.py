"""The follow-up actions a worker's triggered intent runs (workers/followup_jobs.py).

Each one first checks, under Rasa's lock on the conversation, that the user has written
nothing since the message the follow-up was scheduled for (the `followup_anchor` entity): a
user message handled while the job called Rasa makes the follow-up say nothing.

- action_followup_reask (EXTERNAL_followup): a short reminder, then the form runs again
  (FollowupAction) and asks its pending question the way it asked it.
- action_followup_escalate (EXTERNAL_escalate): the handoff of action_request_human (ledger
  record, Chatwoot or the support chat with the spec's escalation message), told to the user
  as an escalation for lack of answer; the form ends.
- action_followup_close (EXTERNAL_thread_timeout): the spec's final message; the form ends and
  what it collected is dropped.
"""
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import bind_correlation, reset_ticket_slots
from actions.handoff import ActionRequestHuman
from helpdesk import followups

logger = logging.getLogger(__name__)

# what the handoff says, and what it says instead when nobody answered the bot
ESCALATION_RESPONSES = {
    "utter_handoff_requested": "utter_followup_escalated",
    "utter_handoff_started": "utter_followup_escalated_paused",
}


def _entity(tracker: Tracker, name: str) -> Optional[str]:
    for item in (tracker.latest_message or {}).get("entities") or []:
        if item.get("entity") == name and item.get("value") not in (None, ""):
            return str(item["value"])
    return None


def _anchor_holds(tracker: Tracker, what: str) -> Optional[str]:
    """The anchor when the user has written nothing since it; None (and a log line) if not."""
    anchor = _entity(tracker, followups.ANCHOR)
    if not followups.anchor_is_latest(tracker.events, anchor):
        logger.info("follow-up dropped: the user wrote since it was scheduled", extra={"step": what})
        return None
    return anchor


def _form(tracker: Tracker) -> Optional[str]:
    return (tracker.active_loop or {}).get("name")


def _end_form() -> List[Dict[Text, Any]]:
    return [ActiveLoop(None), SlotSet("requested_slot", None)]


class ActionFollowupReask(Action):
    def name(self) -> Text:
        return "action_followup_reask"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        anchor = _anchor_holds(tracker, "reask")
        form = _form(tracker)
        if anchor is None or not form:
            return []
        attempt = _entity(tracker, followups.ATTEMPT) or ""
        if followups.step_seen_before(tracker.events, anchor, followups.REASK_INTENT, attempt):
            logger.info("follow-up already asked (a retried job); not asked twice",
                        extra={"attempt": attempt})
            return []
        final = _entity(tracker, followups.FINAL) == "1"
        dispatcher.utter_message(response="utter_followup_last_reminder" if final
                                 else "utter_followup_reminder")
        logger.info("asking the pending question again", extra={"attempt": attempt, "form": form})
        return [FollowupAction(form)]


class ActionFollowupEscalate(Action):
    def name(self) -> Text:
        return "action_followup_escalate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        if _anchor_holds(tracker, "escalate") is None or not _form(tracker):
            return []
        handoff_dispatcher = CollectingDispatcher()
        events = await ActionRequestHuman().run(handoff_dispatcher, tracker, domain)
        for message in handoff_dispatcher.messages:
            response = message.get("response")
            if response in ESCALATION_RESPONSES:
                message = dict(message, response=ESCALATION_RESPONSES[response])
            dispatcher.messages.append(message)
        if not any(event.get("event") == "active_loop" for event in events):
            events += _end_form()
        logger.info("unanswered question escalated to a person")
        return events


class ActionFollowupClose(Action):
    def name(self) -> Text:
        return "action_followup_close"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: DomainDict) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        anchor = _anchor_holds(tracker, "close")
        if anchor is None:
            return []
        state = followups.thread_left_open(tracker.events, anchor, _form(tracker))
        if state is None:
            return []
        dispatcher.utter_message(response="utter_thread_timeout")
        logger.info("silent thread closed", extra={"form_was": state})
        if state == "open":
            return _end_form() + reset_ticket_slots()
        return []  # the session already ended: nothing left to drop
