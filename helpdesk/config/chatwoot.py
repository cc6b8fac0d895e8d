"""`config/chatwoot.yml`: timings, labels, attribute names and the texts of the Chatwoot
mirror and handoff. Numbers fall back to defaults when left out; texts (Spanish, edited by
designers) must be in the file. A broken file raises `ConfigError` naming the field.
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from helpdesk.config.reader import read_yaml
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings

FILE_NAME = "chatwoot.yml"
STATUSES = ("open", "pending", "resolved", "snoozed")


@dataclass(frozen=True)
class ChatwootConfig:
    connect_timeout: float
    read_timeout: float
    retry_intervals: Tuple[int, ...]
    job_timeout: int
    circuit_failure_threshold: int
    circuit_recovery_seconds: float
    recover_interval: int
    poison_attempts: int
    status_while_bot: str
    contact_search_pages: int
    webhook_max_body_bytes: int
    webhook_dedupe_ttl: int
    signature_max_age: int
    relay_text: str
    group_prefix: str
    handoff_status: str
    handoff_labels: Tuple[str, ...]
    handoff_team_id: Optional[int]
    handoff_recent_messages: int
    handoff_max_seconds: int
    handoff_max_pause_seconds: int  # 0: the bot never comes back by itself
    handoff_texts: Dict[str, Any]
    resume_intent: str
    expired_intent: str
    status_after_resume: Optional[str]
    rasa_connect_timeout: float
    rasa_read_timeout: float
    ticket_labels: Tuple[str, ...]
    priority_labels: Dict[str, str]
    ticket_attributes: Dict[str, str]
    ticket_texts: Dict[str, Any]
    attachment_missing: str


class _Section:
    """Reads one mapping of the file, naming `file: section.key` in every error."""

    def __init__(self, data: Dict[str, Any], name: str, path: Path) -> None:
        value = data.get(name, {})
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{name}' must be a mapping")
        self.data, self.where = value, f"{path}: {name}"

    def number(self, key: str, default: float, minimum: float = 0) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ConfigError(f"{self.where}.{key} must be a number >= {minimum}, got {value!r}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.number(key, default, minimum)
        if not isinstance(value, int):
            raise ConfigError(f"{self.where}.{key} must be a whole number, got {value!r}")
        return value

    def text(self, key: str, default: Optional[str] = None, allow_empty: bool = False) -> str:
        value = self.data.get(key, default)
        if value is None and default is None:
            raise ConfigError(f"{self.where}: missing '{key}'")
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise ConfigError(f"{self.where}.{key} must be text, got {value!r}")
        return value

    def status(self, key: str, default: str, allow_empty: bool = False) -> Optional[str]:
        value = self.data.get(key, default)
        if allow_empty and value in ("", None):
            return None
        if value not in STATUSES:
            raise ConfigError(f"{self.where}.{key} must be one of {', '.join(STATUSES)}, got {value!r}")
        return value

    def optional_id(self, key: str) -> Optional[int]:
        value = self.data.get(key)
        if value in (None, ""):
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{self.where}.{key} must be a Chatwoot id (a number) or empty, got {value!r}")
        return value

    def labels(self, key: str) -> Tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{self.where}.{key} must be a list of labels")
        return tuple(v.strip().lower() for v in value)

    def texts(self, key: str, required: Tuple[str, ...] = ()) -> Dict[str, str]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: missing mapping '{key}'")
        for name in required:
            if not isinstance(value.get(name), str) or not value[name].strip():
                raise ConfigError(f"{self.where}.{key}: missing text '{name}'")
        return {str(k): str(v) for k, v in value.items() if v is not None}


def load_chatwoot_config(path: Path) -> ChatwootConfig:
    data = read_yaml(path)
    http = _Section(data, "http", path)
    delivery = _Section(data, "delivery", path)
    conversation = _Section(data, "conversation", path)
    webhook = _Section(data, "webhook", path)
    handoff = _Section(data, "handoff", path)
    resume = _Section(data, "resume", path)
    tickets = _Section(data, "tickets", path)
    attachments = _Section(data, "attachments", path)

    intervals = delivery.data.get("retry_intervals", [10, 30, 60, 120, 300, 300, 300, 300, 300, 300])
    if (
        not isinstance(intervals, list)
        or not intervals
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in intervals)
    ):
        raise ConfigError(f"{path}: delivery.retry_intervals must be a non-empty list of seconds")

    handoff_texts = {
        "note_title": handoff.text("note_title"),
        "reasons": handoff.texts("reasons", ("asked", "during_ticket", "escalation")),
        "reporter_line": handoff.text("reporter_line"),
        "reporter_unknown": handoff.text("reporter_unknown"),
        "field_labels": handoff.texts("field_labels", ("store", "system", "description")),
        "recent_title": handoff.text("recent_title"),
        "recent_line": handoff.text("recent_line"),
        "escalation_message": handoff.text("escalation_message"),
        "escalation_summary": handoff.text("escalation_summary"),
        "human_support_number": handoff.text("human_support_number", "", allow_empty=True),
        "human_support_fallback": handoff.text("human_support_fallback"),
    }
    ticket_texts = {
        "note_title": tickets.text("note_title"),
        "states": tickets.texts("states", ("pending_delivery", "delivered", "failed")),
        "note_fields": tickets.texts("note_fields"),
        "priority_names": tickets.texts("priority_names", ("urgent", "normal")),
    }
    attributes = tickets.data.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(v, str) and v.strip() for v in attributes.values()
    ):
        raise ConfigError(f"{path}: tickets.attributes must map names to Chatwoot attribute keys")
    priority_labels = tickets.data.get("priority_labels") or {}
    if not isinstance(priority_labels, dict):
        raise ConfigError(f"{path}: tickets.priority_labels must be a mapping")
    return ChatwootConfig(
        connect_timeout=float(http.number("connect_timeout_seconds", 3, 0.01)),
        read_timeout=float(http.number("read_timeout_seconds", 10, 0.01)),
        retry_intervals=tuple(intervals),
        job_timeout=delivery.integer("job_timeout_seconds", 300, 1),
        circuit_failure_threshold=delivery.integer("circuit_failure_threshold", 5, 1),
        circuit_recovery_seconds=float(delivery.number("circuit_recovery_seconds", 60, 0.1)),
        recover_interval=delivery.integer("recover_interval_seconds", 60, 0),
        poison_attempts=delivery.integer("poison_attempts", 3, 1),
        status_while_bot=conversation.status("status_while_bot", "pending"),
        contact_search_pages=conversation.integer("contact_search_pages", 3, 1),
        webhook_max_body_bytes=webhook.integer("max_body_bytes", 262144, 1024),
        webhook_dedupe_ttl=webhook.integer("dedupe_ttl_seconds", 604800, 60),
        signature_max_age=webhook.integer("signature_max_age_seconds", 300, 1),
        relay_text=webhook.text("relay_text"),
        group_prefix=webhook.text("group_prefix", "", allow_empty=True),
        handoff_status=handoff.status("status", "open"),
        handoff_labels=handoff.labels("labels"),
        handoff_team_id=handoff.optional_id("team_id"),
        handoff_recent_messages=handoff.integer("recent_user_messages", 5, 0),
        handoff_max_seconds=handoff.integer("max_seconds", 2592000, 60),
        handoff_max_pause_seconds=handoff.integer("max_pause_seconds", 86400, 0),
        handoff_texts=handoff_texts,
        resume_intent=resume.text("intent", "EXTERNAL_handoff_resumed"),
        expired_intent=resume.text("expired_intent", "EXTERNAL_handoff_expired"),
        status_after_resume=resume.status("status_after", "pending", allow_empty=True),
        rasa_connect_timeout=float(resume.number("connect_timeout_seconds", 3, 0.01)),
        rasa_read_timeout=float(resume.number("read_timeout_seconds", 30, 0.01)),
        ticket_labels=tickets.labels("labels"),
        priority_labels={str(k): str(v).strip().lower() for k, v in priority_labels.items() if v},
        ticket_attributes={str(k): str(v) for k, v in attributes.items()},
        ticket_texts=ticket_texts,
        attachment_missing=attachments.text("missing"),
    )


@lru_cache(maxsize=None)
def _config_at(path: str) -> ChatwootConfig:
    return load_chatwoot_config(Path(path))


def chatwoot_config() -> ChatwootConfig:
    """The configuration of the configured `config/` directory, read once per process."""
    return _config_at(str(load_settings().config_dir / FILE_NAME))
