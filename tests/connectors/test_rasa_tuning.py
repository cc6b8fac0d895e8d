"""The Rasa speed-ups keep Rasa's behaviour: same validation, same event classes."""
import pytest
from jsonschema import ValidationError

from connectors import rasa_tuning


@pytest.fixture(scope="module")
def tuned():
    rasa_tuning.apply()
    rasa_tuning.apply()  # idempotent


def test_valid_action_server_answer_passes(tuned):
    from rasa.core.actions.action import RemoteAction

    action = RemoteAction("action_submit_ticket", None)
    answer = {"events": [{"event": "slot", "name": "store", "value": None}], "responses": [{"text": "hola"}]}
    assert action._validate_action_result(answer) is True


def test_invalid_action_server_answer_fails_like_rasa(tuned):
    from rasa.core.actions.action import RemoteAction

    action = RemoteAction("action_submit_ticket", None)
    with pytest.raises(ValidationError) as error:
        action._validate_action_result({"events": "not a list"})
    assert "Failed to validate Action server response from API" in error.value.message
    # the next call still validates (the cached validator is not stuck)
    with pytest.raises(ValidationError):
        action._validate_action_result({"events": [{"event": 42}], "responses": "x"})
    assert action._validate_action_result({"events": [], "responses": []}) is True


def test_event_classes_resolve_as_before(tuned):
    from rasa.shared.core.events import ActionExecuted, Event, SlotSet, UserUttered

    assert Event.resolve_by_type("slot") is SlotSet
    assert Event.resolve_by_type("user") is UserUttered
    assert Event.resolve_by_type("action") is ActionExecuted
    assert Event.resolve_by_type("slot") is SlotSet  # from the cache
    assert Event.resolve_by_type("no-such-event", default=SlotSet) is SlotSet
    assert Event.resolve_by_type("topic") is None
    with pytest.raises(ValueError):
        Event.resolve_by_type("no-such-event")
    events = Event.from_parameters({"event": "slot", "name": "store", "value": "Tienda 42"})
    assert isinstance(events, SlotSet) and events.value == "Tienda 42"
