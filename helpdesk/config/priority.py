"""`config/priority.yml`: the phrases that make a ticket urgent (or say it is not) and the
priority labels, checked on load; phrases are kept folded (no accents, lower case)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

from helpdesk.config.reader import read_yaml, require_key
from helpdesk.errors import ConfigError
from helpdesk.text import fold


@dataclass(frozen=True)
class PriorityRules:
    urgent_phrases: Tuple[str, ...]
    not_urgent_phrases: Tuple[str, ...]
    labels: Dict[str, str]


def load_priority(path: Path) -> PriorityRules:
    data = read_yaml(path)
    urgent = require_key(data, "urgent_phrases", list, str(path))
    not_urgent = data.get("not_urgent_phrases") or []
    labels = require_key(data, "labels", dict, str(path))
    for value in ("urgent", "normal"):
        if not isinstance(labels.get(value), str):
            raise ConfigError(f"{path}: labels.{value} must be text")
    if not urgent:
        raise ConfigError(f"{path}: 'urgent_phrases' is empty")
    return PriorityRules(
        urgent_phrases=tuple(fold(str(p)) for p in urgent),
        not_urgent_phrases=tuple(fold(str(p)) for p in not_urgent),
        labels=dict(labels),
    )
