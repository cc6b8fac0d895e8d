"""Speed-ups for Rasa 3.6 itself, applied in the Rasa server process by the channels.

`RemoteAction._validate_action_result` calls `jsonschema.validate` on every action-server
answer. With jsonschema 4.x that re-checks the (constant) response schema against its
meta-schema and rebuilds a validator each time: measured with py-spy, 44% of the Rasa
server's CPU under load went there. Here the schema is checked once and one validator is
reused; answers are validated exactly as before and fail with the same error.

`Event.resolve_by_type` walks every subclass of `Event` for each event it deserialises, and
the Redis tracker store deserialises the whole conversation twice a turn (load, and merge
before saving): after the first fix, 14% of the CPU. Here the name -> class look-up is
remembered; unknown names still go to Rasa's own function (and fail the same way).
"""
import logging
from typing import Any, Dict, Optional, Text

from jsonschema import ValidationError
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

logger = logging.getLogger(__name__)

_applied = False


def apply() -> None:
    """Install the speed-ups once per process (idempotent)."""
    global _applied
    if _applied:
        return
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    validator: Optional[Any] = None

    def validate_action_result(self: RemoteAction, result: Dict[Text, Any]) -> bool:
        nonlocal validator
        if validator is None:
            schema = self.action_response_format_spec()
            validator_class = validator_for(schema)
            validator_class.check_schema(schema)
            validator = validator_class(schema)
        error = best_match(validator.iter_errors(result))
        if error is not None:
            error.message += (
                ". Failed to validate Action server response from API, "
                "make sure your response from the Action endpoint is valid. "
                f"For more information about the format visit {DOCS_BASE_URL}/custom-actions"
            )
            raise error
        return True

    RemoteAction._validate_action_result = validate_action_result  # type: ignore[assignment]

    from rasa.shared.core.events import Event

    resolve_uncached = Event.resolve_by_type
    event_classes: Dict[Text, Any] = {}

    def resolve_by_type(type_name: Text, default: Optional[Any] = None) -> Optional[Any]:
        found = event_classes.get(type_name)
        if found is None:
            found = resolve_uncached(type_name, default)
            if found is not None and getattr(found, "type_name", None) == type_name:
                event_classes[type_name] = found
        return found

    Event.resolve_by_type = staticmethod(resolve_by_type)  # type: ignore[assignment]
    _applied = True
    logger.info(
        "rasa tuning applied",
        extra={"patched": ["RemoteAction._validate_action_result", "Event.resolve_by_type"]},
    )


__all__ = ["apply", "ValidationError"]
