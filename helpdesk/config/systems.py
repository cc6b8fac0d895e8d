"""`config/systems.yml`: the affected systems (canonical name, label, synonyms, department,
Zoho classification), checked on load against the departments of departments.yml."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from helpdesk.config.departments import Department
from helpdesk.config.reader import read_yaml, require_key
from helpdesk.errors import ConfigError
from helpdesk.text import fold


@dataclass(frozen=True)
class System:
    name: str
    label: str
    synonyms: Tuple[str, ...]
    department: str
    classification: str


def load_systems(path: Path, departments: Dict[str, Department]) -> List[System]:
    entries = require_key(read_yaml(path), "systems", list, str(path))
    systems, seen = [], {}
    for index, entry in enumerate(entries):
        where = f"{path}: systems[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        name = require_key(entry, "name", str, where)
        synonyms = require_key(entry, "synonyms", list, where)
        department = require_key(entry, "department", str, where)
        if department not in departments:
            raise ConfigError(
                f"{where}: department '{department}' is not in departments.yml "
                f"(known: {', '.join(sorted(departments))})"
            )
        for phrase in (name, *synonyms):
            if not isinstance(phrase, str):
                raise ConfigError(f"{where}: synonym {phrase!r} must be text")
            key = fold(phrase)
            if key in seen and seen[key] != name:
                raise ConfigError(f"{where}: synonym '{phrase}' also belongs to '{seen[key]}'")
            seen[key] = name
        systems.append(
            System(
                name=name,
                label=str(entry.get("label") or name),
                synonyms=tuple(synonyms),
                department=department,
                classification=require_key(entry, "classification", str, where),
            )
        )
    if not any(fold(s.name) == "otro" for s in systems):
        raise ConfigError(f"{path}: a system named 'otro' is required (the fallback)")
    return systems
