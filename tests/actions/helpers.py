"""What Rasa sends the action server, built the way Rasa builds it.

A `Conversation` keeps Rasa event objects (`rasa.shared.core.events`) on a fake clock and turns
them into the tracker state Rasa serialises for a custom action
(`DialogueStateTracker.current_state(EventVerbosity.ALL)`), from which the `rasa_sdk.Tracker`
is made the way the action server makes it. The domain is `Domain.load("domain.yml")`, in
the dict form Rasa posts with each call.

`form_validation_tracker()` reproduces the temporary tracker Rasa's FormAction sends to
`validate_ticket_form`: the conversation, then `requested_slot` and the form's own
ActionExecuted, then the slot candidates of this turn (the trailing slot events that
`tracker.slots_to_validate()` returns).
"""
import asyncio
import copy
import itertools
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from rasa.core.nlg.interpolator import interpolate
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from helpdesk.tickets import build_ticket, ticket_id_for

PROJECT = Path(__file__).resolve().parents[2]
FORM = "ticket_form"
SENDER = "5491122334455"
OTHER = "5491199887766"
START = 1_700_000_000.0
# the form's required slots as domain.yml lists them
FORM_SLOTS = ("store", "system", "description", "confirm_ticket")
# what a finished, cancelled or abandoned ticket leaves in the slots
FRESH_TICKET_SLOTS = {
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

TICKET_SLOTS = (
    "store",
    "store_attempts",
    "attachments",
    "error_messages",
    "known_fix",
    "same_incident",
    "file_added_to_ticket",
    "system",
    "description",
    "priority",
    "person",
    "confirm_ticket",
    "correct_field",
    "correcting",
)

# (entity, value), (entity, value, words in the text) when a synonym changed the value, or a dict
EntitySpec = Union[Tuple[str, str], Tuple[str, str, str], Dict[str, Any]]


@lru_cache(maxsize=None)
def rasa_domain() -> Domain:
    with warnings.catch_warnings():
        # Rasa's note that slot auto-fill is gone in 3.x, for every custom mapping
        warnings.simplefilter("ignore", UserWarning)
        return Domain.load(str(PROJECT / "domain.yml"))


def domain_dict() -> Dict[str, Any]:
    """The domain as Rasa posts it to the action server (a fresh copy per call)."""
    return copy.deepcopy(_domain_dict())


@lru_cache(maxsize=None)
def _domain_dict() -> Dict[str, Any]:
    return rasa_domain().as_dict()


_message_ids = itertools.count(1)


def entity(kind: str, value: str, text: str, literal: Optional[str] = None) -> Dict[str, Any]:
    """An entity as Rasa's NLU puts it in parse_data: the span of the words in the text, the
    value after the synonym mapper."""
    literal = literal or value
    start = text.lower().find(literal.lower())
    if start < 0:
        raise ValueError(f"{literal!r} is not in {text!r}: give the words the entity came from")
    found = {
        "entity": kind,
        "start": start,
        "end": start + len(literal),
        "value": value,
        "extractor": "RegexEntityExtractor",
    }
    if literal.lower() != value.lower():
        found["processors"] = ["EntitySynonymMapper"]
    return found


class Conversation:
    """One WhatsApp conversation as Rasa's tracker store holds it."""

    def __init__(
        self,
        sender_id: str = SENDER,
        metadata: Optional[Dict[str, Any]] = None,
        start: float = START,
        input_channel: str = "rest",
    ) -> None:
        self.sender_id = sender_id
        self.metadata = dict(metadata or {})
        self.input_channel = input_channel
        self.clock = start
        self.events: List[Event] = []
        self.action("action_session_start")
        self.events.append(SessionStarted(timestamp=self.tick()))
        self.action("action_listen")

    # building -----------------------------------------------------------------------
    def tick(self) -> float:
        self.clock += 0.5
        return self.clock

    def user(
        self,
        text: str,
        intent: str,
        entities: Iterable[EntitySpec] = (),
        metadata: Optional[Dict[str, Any]] = None,
        **extracted_slots: Any,
    ) -> "Conversation":
        """A user message, then the SlotSet events `action_extract_slots` adds for it."""
        parsed_entities = [
            e if isinstance(e, dict) else entity(e[0], e[1], text, *e[2:]) for e in entities
        ]
        message_metadata = {**self.metadata, **(metadata or {})}
        message_metadata.setdefault("correlation_id", f"corr-{next(_message_ids):04d}")
        self.events.append(
            UserUttered(
                text,
                {"name": intent, "confidence": 0.97},
                parsed_entities,
                input_channel=self.input_channel,
                message_id=f"wamid.{next(_message_ids):06d}",
                metadata=message_metadata,
                timestamp=self.tick(),
            )
        )
        for name, value in extracted_slots.items():
            self.slot(name, value)
        return self

    def slot(self, name: str, value: Any) -> "Conversation":
        self.events.append(SlotSet(name, value, timestamp=self.tick()))
        return self

    def action(self, name: str) -> "Conversation":
        self.events.append(ActionExecuted(name, timestamp=self.tick()))
        return self

    def bot(self, text: str) -> "Conversation":
        self.events.append(BotUttered(text, {}, timestamp=self.tick()))
        return self

    def activate_form(self) -> "Conversation":
        """The form runs and activates in the turn of the latest user message."""
        self.slot("requested_slot", None)
        self.action(FORM)
        self.events.append(ActiveLoop(FORM, timestamp=self.tick()))
        return self

    def deactivate_form(self) -> "Conversation":
        self.events.append(ActiveLoop(None, timestamp=self.tick()))
        self.slot("requested_slot", None)
        return self

    def apply(self, events: Sequence[Dict[str, Any]]) -> "Conversation":
        """Add the events an action returned, as Rasa does after the call."""
        for data in events:
            event = Event.from_parameters(dict(data))
            event.timestamp = self.tick()
            self.events.append(event)
        return self

    def form_ran(self, events: Sequence[Dict[str, Any]]) -> "Conversation":
        """The form ran after the latest user message and returned these events (its own
        ActionExecuted, the activation in the first turn, then what validation returned)."""
        requested = self.rasa_tracker().get_slot("requested_slot")
        self.slot("requested_slot", requested)
        self.action(FORM)
        if self.rasa_tracker().active_loop_name != FORM:
            self.events.append(ActiveLoop(FORM, timestamp=self.tick()))
        return self.apply(events)

    def form_asks(self, slot_name: str, question: str = "") -> "Conversation":
        """The form asked for a slot and waits for the answer."""
        self.slot("requested_slot", slot_name)
        self.bot(question or f"(pregunta por {slot_name})")
        self.action("action_listen")
        return self

    # what the action server receives ---------------------------------------------------
    def rasa_tracker(self, extra: Sequence[Event] = ()) -> DialogueStateTracker:
        return DialogueStateTracker.from_events(
            self.sender_id, self.events + list(extra), slots=rasa_domain().slots
        )

    def tracker(self, extra: Sequence[Event] = ()) -> Tracker:
        """The rasa_sdk Tracker of the conversation, as the action server builds it."""
        return sdk_tracker(self.rasa_tracker(extra).current_state(EventVerbosity.ALL))

    def form_validation_tracker(self) -> Tracker:
        """The temporary tracker Rasa's form sends to validate_ticket_form for this turn."""
        rasa_tracker = self.rasa_tracker()
        requested = rasa_tracker.get_slot("requested_slot")
        if rasa_tracker.active_loop_name != FORM:
            # activation: every required slot already filled is validated
            candidates = {
                name: rasa_tracker.get_slot(name)
                for name in FORM_SLOTS
                if rasa_tracker.get_slot(name) is not None
            }
        else:
            # the slots set since the user's message, for the form's slots or the requested one
            candidates = {}
            for event in self._events_since_last_user():
                if isinstance(event, SlotSet) and (event.key in FORM_SLOTS or event.key == requested):
                    candidates[event.key] = event.value
        extra: List[Event] = [
            SlotSet("requested_slot", requested, timestamp=self.tick()),
            ActionExecuted(FORM, timestamp=self.tick()),
        ]
        extra += [SlotSet(name, value, timestamp=self.tick()) for name, value in candidates.items()]
        return self.tracker(extra)

    def _events_since_last_user(self) -> List[Event]:
        for index in range(len(self.events) - 1, -1, -1):
            if isinstance(self.events[index], UserUttered):
                return self.events[index + 1 :]
        return []


def sdk_tracker(state: Dict[str, Any]) -> Tracker:
    """rasa_sdk's Tracker from the state Rasa posts (what `Tracker.from_dict` does)."""
    return Tracker(
        state["sender_id"],
        state.get("slots", {}),
        state.get("latest_message", {}),
        state.get("events", []),
        state.get("paused", False),
        state.get("followup_action"),
        state.get("active_loop", {}),
        state.get("latest_action_name"),
    )


# running actions ------------------------------------------------------------------------
def run(action: Action, tracker: Tracker, domain: Optional[Dict[str, Any]] = None):
    """Run one action as the action server does; returns (events, dispatcher)."""
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, domain or domain_dict()))
    return events, dispatcher


def form_turn(conversation: Conversation):
    """validate_ticket_form runs for the latest user message; its events join the
    conversation. Returns (events, dispatcher)."""
    from actions.ticket_form import ValidateTicketForm

    events, dispatcher = run(ValidateTicketForm(), conversation.form_validation_tracker())
    conversation.form_ran(events)
    return events, dispatcher


def in_ticket_form(conversation: Conversation) -> Conversation:
    """The form has store and system and asks for the description."""
    conversation.user("la impresora fiscal tira error en la tienda 9", "report_incident",
                      [("system", "impresora fiscal"), ("store", "tienda 9")],
                      system="impresora fiscal", store="tienda 9")
    form_turn(conversation)
    conversation.slot("description", None)  # say it is still to be described
    conversation.form_asks("description")
    return conversation


def record_ticket(ledger, catalog, conversation_id=SENDER, started=None, description="la caja 2 no abre"):
    """A ticket in the ledger the way the submit action records it."""
    ticket = build_ticket(
        catalog,
        ticket_id=ticket_id_for(conversation_id, started or time.time()),
        conversation_id=conversation_id,
        store="Tienda 42 (Avenida)",
        system="POS",
        description=description,
        stated_priority=None,
        priority_texts=[description],
    )
    record, created = ledger.submit(ticket)
    assert created
    return record


def slot_events(events: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """name -> value of the SlotSet events returned (the last one of each name)."""
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def responses(dispatcher: CollectingDispatcher) -> List[str]:
    return [m.get("response") for m in dispatcher.messages]


def message(dispatcher: CollectingDispatcher, response: str) -> Dict[str, Any]:
    found = [m for m in dispatcher.messages if m.get("response") == response]
    assert len(found) == 1, f"{response} sent {len(found)} times: {responses(dispatcher)}"
    return found[0]


def rendered(dispatcher_message: Dict[str, Any], slots: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The message the user sees: the domain response filled with the action's kwargs
    (Rasa's own interpolation; slot values are also available to the template)."""
    variants = rasa_domain().responses[dispatcher_message["response"]]
    kwargs = {k: v for k, v in dispatcher_message.items() if k not in _MESSAGE_KEYS}
    return interpolate(copy.deepcopy(variants[0]), {**(slots or {}), **kwargs})


_MESSAGE_KEYS = {"text", "buttons", "elements", "custom", "template", "response", "image", "attachment"}


def paths_outside_media(var_dir: Path) -> List[str]:
    """Paths a forged call could put in `attachments` or `metadata.media`, none of them a file
    of the media directory (`var_dir/media`): the project's `.env`, the process environment,
    `../` out of the media directory, a symlink inside it pointing out, the directory itself,
    a relative path and a NUL byte. Creates the files and the symlink."""
    media = var_dir / "media"
    (media / "ab").mkdir(parents=True, exist_ok=True)
    secret = var_dir.parent / "secret.txt"
    secret.write_text("SECRET=1\n")
    link = media / "ab" / "innocent.jpg"
    if not link.is_symlink():
        link.symlink_to(secret)
    return [
        str(PROJECT / ".env"),
        "/proc/self/environ",
        str(media / ".." / ".." / "secret.txt"),
        str(media / "ab" / ".." / ".." / ".." / ".env"),
        str(link),
        str(media),
        ".env",
        str(media / "ab" / "x.jpg\x00.png"),
    ]
