"""`config/dialogue.yml`: what the ticket form, the channels and the status question read
(attempts, description limits, subject and reference texts, correction words, status
labels), checked on load."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from helpdesk.config.reader import read_yaml, require_key
from helpdesk.errors import ConfigError
from helpdesk.text import contains_phrase, fold


@dataclass(frozen=True)
class DialogueConfig:
    store_max_attempts: int
    prefill_description_min_words: int
    vague_words: Tuple[str, ...]
    description_max_chars: int
    cut_marker: str
    subject_store: str
    subject_without_system: str
    reference_prefix: str
    field_labels: Dict[str, str]
    list_separator: str
    last_separator: str
    correction_words: Dict[str, Tuple[str, ...]]
    max_message_chars: int
    max_body_bytes: int
    recent_tickets: int
    add_files_within_minutes: float
    state_labels: Dict[str, str]
    same_incident_minutes: float
    same_incident_fields: Tuple[str, ...]
    same_incident_scope: str
    same_incident_comment: str
    more_comment: str
    generic_words: Dict[str, Tuple[str, ...]]
    generic_system_rules: Tuple[Tuple[str, Tuple[str, ...]], ...]

    def is_generic(self, field: str, text: str) -> bool:
        """The answer is only a generic word for the field ("el sistema", "la tienda")."""
        words = fold(text).split()
        if words and words[0] in _ARTICLES:
            words = words[1:]
        return " ".join(words) in self.generic_words.get(field, ())

    def system_for_generic(self, text: str) -> Optional[str]:
        """The system a generic word means in this message, by generic_system_rules."""
        folded = fold(text)
        for system, phrases in self.generic_system_rules:
            if any(contains_phrase(folded, phrase) for phrase in phrases):
                return system
        return None


_ARTICLES = ("el", "la", "los", "las", "un", "una", "mi", "nuestro", "nuestra")


SAME_INCIDENT_FIELDS = ("store", "system", "department", "classification")


def load_dialogue(path: Path) -> DialogueConfig:
    data = read_yaml(path)
    ticket = require_key(data, "ticket", dict, str(path))
    channel = require_key(data, "channel", dict, str(path))
    status = require_key(data, "status", dict, str(path))
    same = data.get("same_incident") or {}
    if not isinstance(same, dict):
        raise ConfigError(f"{path}: same_incident must be a mapping")
    minutes = same.get("window_minutes", 0) or 0
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes < 0:
        raise ConfigError(f"{path}: same_incident.window_minutes must be minutes (0: off)")
    fields = tuple(str(f) for f in (same.get("match") or ()))
    unknown = [f for f in fields if f not in SAME_INCIDENT_FIELDS]
    if unknown or (minutes and not fields):
        raise ConfigError(f"{path}: same_incident.match must name some of "
                          f"{', '.join(SAME_INCIDENT_FIELDS)}, not {unknown or 'nothing'}")
    scope = same.get("scope", "all")
    if scope not in ("all", "group"):
        raise ConfigError(f"{path}: same_incident.scope must be 'all' or 'group', not {scope!r}")
    comment = str(same.get("comment") or "{description}")
    more_comment = str(same.get("more_comment") or "{description}")
    for key, text in (("comment", comment), ("more_comment", more_comment)):
        try:
            text.format(name="", phone="", description="")
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigError(f"{path}: same_incident.{key} may use {{name}}, {{phone}} and "
                              f"{{description}} only ({error!r})") from error
    generic = data.get("generic_words") or {}
    if not isinstance(generic, dict) or not all(isinstance(v, list) for v in generic.values()):
        raise ConfigError(f"{path}: generic_words must map store/system to lists of words")
    rules = []
    for index, rule in enumerate(data.get("generic_system_rules") or []):
        if not (isinstance(rule, dict) and isinstance(rule.get("system"), str)
                and isinstance(rule.get("when_any"), list) and rule["when_any"]):
            raise ConfigError(f"{path}: generic_system_rules[{index}] needs a system and a "
                              "when_any list of phrases")
        rules.append((rule["system"], tuple(fold(str(p)) for p in rule["when_any"])))
    return DialogueConfig(
        store_max_attempts=require_key(ticket, "store_max_attempts", int, f"{path}: ticket"),
        prefill_description_min_words=require_key(
            ticket, "prefill_description_min_words", int, f"{path}: ticket"
        ),
        vague_words=tuple(fold(str(w)) for w in ticket.get("vague_words") or []),
        description_max_chars=require_key(ticket, "description_max_chars", int, f"{path}: ticket"),
        cut_marker=require_key(ticket, "cut_marker", str, f"{path}: ticket"),
        subject_store=require_key(ticket, "subject_store", str, f"{path}: ticket"),
        subject_without_system=require_key(ticket, "subject_without_system", str, f"{path}: ticket"),
        reference_prefix=require_key(ticket, "reference_prefix", str, f"{path}: ticket"),
        field_labels={
            str(k): str(v)
            for k, v in require_key(ticket, "field_labels", dict, f"{path}: ticket").items()
        },
        list_separator=require_key(ticket, "list_separator", str, f"{path}: ticket"),
        last_separator=require_key(ticket, "last_separator", str, f"{path}: ticket"),
        correction_words={
            str(k): tuple(fold(str(w)) for w in (v or []))
            for k, v in require_key(ticket, "correction_words", dict, f"{path}: ticket").items()
        },
        max_message_chars=require_key(channel, "max_message_chars", int, f"{path}: channel"),
        max_body_bytes=require_key(channel, "max_body_bytes", int, f"{path}: channel"),
        recent_tickets=require_key(status, "recent_tickets", int, f"{path}: status"),
        add_files_within_minutes=float(status.get("add_files_within_minutes", 0) or 0),
        state_labels={
            str(k): str(v)
            for k, v in require_key(status, "state_labels", dict, f"{path}: status").items()
        },
        same_incident_minutes=float(minutes),
        same_incident_fields=fields,
        same_incident_scope=scope,
        same_incident_comment=comment,
        more_comment=more_comment,
        generic_words={str(k): tuple(fold(str(w)) for w in v) for k, v in generic.items()},
        generic_system_rules=tuple(rules),
    )
