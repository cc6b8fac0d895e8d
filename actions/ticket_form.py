"""The ticket form: extraction and validation of store, system, description and the
confirmation, and the questions that ask for them (one at a time)."""
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    attachments_with_latest,
    FORM_NAME,
    bind_correlation,
    first_value,
    form_started_event,
    get_catalog,
    latest_entity_values,
    latest_intent,
    latest_text,
    metadata,
    user_texts_since,
)
from actions import known_fix, same_incident
from actions.ticket_extras import KNOWN_FIX, KNOWN_FIX_SOLVED, SAME_INCIDENT, current_known_fix
from actions.vision import screenshot_slot_events
from helpdesk.config import NO_STORE, known_fix_config
from helpdesk.tickets import NORMAL, PRIORITIES, URGENT, decide_priority, priority_label
from helpdesk.text import fold, word_count
from helpdesk.tickets import cut_text

logger = logging.getLogger(__name__)

# intents whose free text can answer a question about the store or the system
ANSWER_INTENTS = ("inform", "report_incident", "deny")
# slots that steer the form without being asked for
HELPER_SLOTS = ("correcting", "store_attempts", "priority", "person")
# the fields the form asks for, in order
ASKED_FIELDS = ("store", "system", "description")
MAX_CONTEXT_LINES = 5  # earlier group messages offered with a report (config caps them too)
MAX_CONTEXT_CHARS = 500


class ValidateTicketForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_ticket_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        slots = ["store", "system", "description"]
        # one outage, one ticket (actions/same_incident.py): a report matching a ticket just
        # recorded is asked whether it is the same problem; joined, no confirmation follows
        step = await same_incident.form_step(tracker)
        if step is not None:
            if same_incident.joined(tracker):
                return [SAME_INCIDENT]  # added to that ticket: nothing else to ask
            if step == same_incident.FIRST:
                slots.insert(0, SAME_INCIDENT)  # more about the ticket just made
            else:
                slots.append(SAME_INCIDENT)
        # known fixes (issue 5, actions/known_fix.py): a strong knowledge match is suggested
        # before the confirmation; solved by it, the form ends here without a ticket
        if known_fix_config().enabled and await known_fix.form_needs_step(
                tracker, urgent=current_priority(tracker) == URGENT):
            slots.append(KNOWN_FIX)
            if current_known_fix(tracker) == KNOWN_FIX_SOLVED:
                return slots
        if tracker.get_slot("correcting"):
            slots.append("correct_field")
        slots.append("confirm_ticket")
        return slots

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        """Validated form slots, plus the helper slots the extraction set.

        rasa-sdk keeps only the form's required slots; `correcting` and `store_attempts`
        steer the form and must reach Rasa too.
        """
        events = await super().get_validation_events(dispatcher, tracker, domain)
        returned = {event["name"] for event in events}
        for name, value in tracker.slots_to_validate().items():
            if name in HELPER_SLOTS and name not in returned:
                if name == "priority":
                    value = normalise_priority(value)
                events.append(SlotSet(name, value))
        # a screenshot sent with its caption ("no imprime, mire") belongs to this ticket
        attachments = attachments_with_latest(tracker)
        if attachments is not None:
            events.append(SlotSet("attachments", attachments))
        # LLM (issue 5): what the vision model reads in this message's images fills the
        # slots still empty, never the user's (actions/vision.py); nothing without an LLM
        events += await screenshot_slot_events(tracker, events)
        return events

    # extraction ---------------------------------------------------------------------
    async def extract_store(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """A store answer without a recognised entity ("42", "centro", "la de la esquina")."""
        if tracker.get_slot("requested_slot") != "store" or latest_entity_values(tracker, "store"):
            return {}
        text = latest_text(tracker).strip()
        catalog = get_catalog()
        if catalog.find_store(text) or catalog.means_no_store(text):
            return {"store": text}
        if catalog.store_number_mentioned(text) is not None or latest_intent(tracker) == "inform":
            return {"store": text}  # validation will say it is unknown
        return {}

    async def extract_system(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "system" or latest_entity_values(tracker, "system"):
            return {}
        text = latest_text(tracker).strip()
        if get_catalog().find_system(text) or latest_intent(tracker) in ANSWER_INTENTS:
            return {"system": text}
        return {}

    async def extract_description(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        """The first message is the description when it says more than store and system;
        more about the incident later in the form ("también sale error E-45") is added to it."""
        if latest_intent(tracker) != "report_incident":
            return {}
        requested = tracker.get_slot("requested_slot")
        text = latest_text(tracker).strip()
        current = tracker.get_slot("description")
        if requested is None and not current:
            # in a group, what the reporter wrote just before, unanswered, comes first: the
            # read-back shows it and the user confirms or corrects it
            lines = _group_context_lines(tracker)
            if _says_more_than_entities(tracker):
                lines.append(text)
            if lines:
                return {"description": ". ".join(line.rstrip(". ") for line in lines)}
            return {}
        if requested in ("store", "system", "confirm_ticket") and not latest_entity_values(
            tracker, "store", "system"
        ):
            return {"description": f"{current.rstrip('. ')}. {text}" if current else text}
        return {}

    async def extract_same_incident(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return await same_incident.extract(tracker)

    async def extract_known_fix(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return await known_fix.extract(tracker)

    async def extract_correct_field(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "correct_field":
            return {}
        if latest_entity_values(tracker, "store", "system", "priority"):
            # "es la tienda 43": the value itself came, nothing to pick
            return {"correcting": False}
        if tracker.get_slot("correct_field"):
            return {}
        words = fold(latest_text(tracker)).split()
        for field, names in get_catalog().dialogue.correction_words.items():
            if any(name in words for name in names):
                return {"correct_field": field}
        return {}

    async def extract_confirm_ticket(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        if tracker.get_slot("requested_slot") != "confirm_ticket":
            return {}
        intent = latest_intent(tracker)
        if latest_entity_values(tracker, "store", "system"):
            # "no, es la tienda 43": that field changes and the bot reads the ticket back again
            return {}
        stated = latest_entity_values(tracker, "priority")
        if stated:
            # "ponelo como urgente": priority is not a form slot, so it is set here
            return {"priority": normalise_priority(stated[0])}
        if intent == "affirm":
            return {"confirm_ticket": True}
        if intent == "deny":
            return {"correcting": True}
        return {}

    # validation ---------------------------------------------------------------------
    def validate_store(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        catalog = get_catalog()
        values = value if isinstance(value, list) else [value]
        mentions = [str(v) for v in values if v not in (None, "")]
        if any(m == NO_STORE or catalog.means_no_store(m) for m in mentions):
            return {"store": NO_STORE, "store_attempts": 0}
        for mention in mentions:
            store = catalog.find_store(mention)
            if store:
                return {"store": store.display, "store_attempts": 0, "correcting": False}
        # "la tienda" names none: the question is asked plainly, no attempt counted
        mentions = [m for m in mentions if not catalog.dialogue.is_generic("store", m)]
        if not mentions:
            return {"store": None}
        attempts = int(tracker.get_slot("store_attempts") or 0) + 1
        dispatcher.utter_message(response="utter_store_unknown", store_input=mentions[0])
        logger.info("unknown store", extra={"store_input": mentions[0], "attempt": attempts})
        return {"store": None, "store_attempts": attempts}

    def validate_system(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        catalog = get_catalog()
        values = value if isinstance(value, list) else [value]
        mentions = [str(v) for v in values if v not in (None, "")]
        for mention in mentions:
            system = catalog.find_system(mention)
            if system:
                return {"system": system.name, "correcting": False}
        generic = [m for m in mentions if catalog.dialogue.is_generic("system", m)]
        if generic:
            # "se cayó el sistema, no podemos vender": the designers' rules say which one;
            # otherwise the question is asked plainly, the word never echoed back
            meant = catalog.dialogue.system_for_generic(latest_text(tracker))
            if meant:
                return {"system": meant, "correcting": False}
        mentions = [m for m in mentions if m not in generic]
        if mentions:
            dispatcher.utter_message(response="utter_system_unknown", system_input=mentions[0])
        return {"system": None}

    def validate_description(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        text = " ".join(str(first_value(value) or "").split())
        # something a technician can act on: two words, or one long word ("bloqueada")
        if word_count(text) < 2 and len(text) < 8:
            dispatcher.utter_message(response="utter_description_too_short")
            return {"description": None}
        settings = get_catalog().dialogue
        text = cut_text(text, settings.description_max_chars, settings.cut_marker)
        return {"description": text, "correcting": False}

    def validate_confirm_ticket(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return {"confirm_ticket": True if value is True else None}

    async def validate_known_fix(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return await known_fix.validate(value, dispatcher, tracker)

    def validate_correct_field(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        field = first_value(value)
        done = {"correct_field": None, "correcting": False}
        if field == "priority":
            # the priority the user was shown, before this answer ("la urgencia") counted
            current = tracker.get_slot("priority") or current_priority(tracker, latest=False)
            return {**done, "priority": NORMAL if current == URGENT else URGENT}
        if field == "store":
            return {**done, "store": None, "store_attempts": 0}
        if field in ("system", "description"):
            return {**done, field: None}
        return {"correct_field": None}


def _says_more_than_entities(tracker: Tracker) -> bool:
    """Whether the message describes a symptom, beyond naming the store and the system."""
    message = tracker.latest_message or {}
    text = message.get("text") or ""
    # blank out entity spans (two extractors may report the same span)
    chars = list(text)
    for entity in message.get("entities") or []:
        start, end = entity.get("start"), entity.get("end")
        if isinstance(start, int) and isinstance(end, int):
            chars[start:end] = " " * (end - start)
    text = "".join(chars)
    settings = get_catalog().dialogue
    content = [w for w in fold(text).split() if w not in settings.vague_words]
    return len(content) >= settings.prefill_description_min_words


def _group_context_lines(tracker: Tracker) -> List[str]:
    """The reporter's unanswered group messages the channel passed with this one (metadata
    `group_context`, helpdesk/whatsapp/group_context.py) that are about an incident: they name
    one of the systems and say more than vague words. Chatter stays out of the ticket (a store
    alone is not enough: "mañana abrimos tarde en la 42" is no symptom)."""
    earlier = metadata(tracker).get("group_context")
    if not isinstance(earlier, list):
        return []
    catalog = get_catalog()
    settings = catalog.dialogue
    lines = []
    for line in earlier[-MAX_CONTEXT_LINES:]:
        if not isinstance(line, str):
            continue
        line = " ".join(line.split())[:MAX_CONTEXT_CHARS]
        content = [w for w in fold(line).split() if w not in settings.vague_words]
        if len(content) < settings.prefill_description_min_words:
            continue
        if catalog.find_system(line):
            lines.append(line)
    return lines


def normalise_priority(value: Any) -> Optional[str]:
    """`urgent`, `normal` or None from what NLU extracted ("urgencia", "no es urgente")."""
    value = first_value(value)
    if value is None or value in PRIORITIES:
        return value
    folded = fold(value)
    if folded in ("normal", "baja", "no urgente", "sin urgencia"):
        return NORMAL
    return decide_priority(get_catalog().priority, [value]) if folded else None


def current_priority(tracker: Tracker, latest: bool = True) -> str:
    """The priority the ticket would get now: stated by the user, or by the rules.

    `latest=False` leaves out the message being handled.
    """
    started = form_started_event(tracker)
    texts = user_texts_since(tracker, started["timestamp"]) if started else []
    if not latest and texts:
        texts = texts[:-1]
    texts.append(tracker.get_slot("description") or "")
    return decide_priority(get_catalog().priority, texts, tracker.get_slot("priority"))


def _activated_this_turn(tracker: Tracker) -> bool:
    """True while the form asks its first question (it was activated by this message)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if event.get("event") == "active_loop" and event.get("name") == FORM_NAME:
            return True
    return False


def _say_missing(dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
    """The spec's "Para crear el ticket necesito…" once, when the form starts with gaps."""
    if not _activated_this_turn(tracker):
        return
    settings = get_catalog().dialogue
    missing = [
        settings.field_labels.get(slot, slot) for slot in ASKED_FIELDS if not tracker.get_slot(slot)
    ]
    if len(missing) >= 2:
        listed = settings.list_separator.join(missing[:-1]) + settings.last_separator + missing[-1]
        dispatcher.utter_message(response="utter_missing_information", missing=listed)


class ActionAskStore(Action):
    def name(self) -> Text:
        return "action_ask_store"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        attempts = int(tracker.get_slot("store_attempts") or 0)
        if attempts >= get_catalog().dialogue.store_max_attempts:
            dispatcher.utter_message(response="utter_store_offer")
        else:
            _say_missing(dispatcher, tracker)
            dispatcher.utter_message(response="utter_ask_store")
        return []


class ActionAskSystem(Action):
    def name(self) -> Text:
        return "action_ask_system"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        _say_missing(dispatcher, tracker)
        dispatcher.utter_message(response="utter_ask_system")
        return []


class ActionAskDescription(Action):
    def name(self) -> Text:
        return "action_ask_description"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        _say_missing(dispatcher, tracker)
        dispatcher.utter_message(response="utter_ask_description")
        return []


class ActionAskConfirmTicket(Action):
    """Reads the ticket back (store, system, priority, description) before creating it."""

    def name(self) -> Text:
        return "action_ask_confirm_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        catalog = get_catalog()
        system = catalog.system_by_name(tracker.get_slot("system") or "")
        dispatcher.utter_message(
            response="utter_confirm_ticket",
            store=tracker.get_slot("store") or NO_STORE,
            system=system.label if system else tracker.get_slot("system"),
            priority=priority_label(catalog.priority, current_priority(tracker)),
            description=tracker.get_slot("description"),
        )
        return []
