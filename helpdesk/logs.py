"""Structured logs: one JSON object a line, a correlation id per incoming message, phone
numbers masked, secrets never printed.

The correlation id is born in the input channel, travels to the action server in the user
message's metadata and to workers in job meta; `correlation()` puts it in a context variable
that the log filter reads, so every log line of a turn carries it.
"""
import contextlib
import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any, Dict, Iterator, Optional

correlation_id_var: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "correlation_id", default=None
)
METADATA_KEY = "correlation_id"

# WhatsApp ids and numbers: 8 or more digits, maybe after "+", maybe in a JID
_PHONE = re.compile(r"\+?\d[\d ]{6,}\d")
_SECRET_KEYS = re.compile(r"(token|secret|password|api[_-]?key|authorization)", re.I)
# attributes every LogRecord has; anything else was passed in `extra=`
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_phone(value: str) -> str:
    """First 3 characters + **** + last 2, as the spec asks ("549****55")."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 6:
        return "****"
    return f"{digits[:3]}****{digits[-2:]}"


def mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def correlation(correlation_id: Optional[str]) -> Iterator[str]:
    """Run a block with a correlation id (a new one when None is given)."""
    value = correlation_id or new_correlation_id()
    token = correlation_id_var.set(value)
    try:
        yield value
    finally:
        correlation_id_var.reset(token)


# our own ids: uuids and references, never phone numbers
_UNMASKED_KEYS = {"ticket_id", "reference", "job_id"}


def _clean(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "[hidden]"
    if key in _UNMASKED_KEYS:
        return value
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000_000:
        return mask_phone(str(value))  # a phone number passed as a number
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(key, v) for v in value]
    return mask_text(str(value))


class CorrelationFilter(logging.Filter):
    """Adds `correlation_id` from the context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = correlation_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: Dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        correlation_id = getattr(record, "correlation_id", None) or correlation_id_var.get()
        if correlation_id:
            entry["correlation_id"] = correlation_id
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key in entry or key.startswith("_") or key == "correlation_id":
                continue
            entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON logs on stderr for processes we start ourselves (workers, scripts)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


def apply_logging_file(path: str) -> None:
    """Apply a dictConfig YAML file (as `--logging-config-file` does).

    The Rasa server installs coloured console logging after reading that option, which
    replaces our handler; the REST channel calls this again once the server has started.
    """
    import logging.config

    import yaml

    with open(path, encoding="utf-8") as handle:
        logging.config.dictConfig(yaml.safe_load(handle))
