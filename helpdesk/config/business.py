"""Business data designers edit in `config/*.yml`: stores, systems, departments, priority
rules and dialogue settings. Loaded once per process, checked on load: a broken file raises
`ConfigError` naming the file and the field.
"""
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from helpdesk.errors import ConfigError
from helpdesk.text import contains_phrase, fold
from helpdesk.settings import load_settings


@dataclass(frozen=True)
class Store:
    number: int
    name: str
    aliases: Tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return f"Tienda {self.number} ({self.name})"


@dataclass(frozen=True)
class System:
    name: str
    label: str
    synonyms: Tuple[str, ...]
    department: str
    classification: str


@dataclass(frozen=True)
class Department:
    key: str
    name: str
    zoho_id: str


@dataclass(frozen=True)
class PriorityRules:
    urgent_phrases: Tuple[str, ...]
    not_urgent_phrases: Tuple[str, ...]
    labels: Dict[str, str]


@dataclass(frozen=True)
class DialogueSettings:
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


# "tienda 42", "la 27", "suc. 8", "local nº 15", "sucursal #3"
_STORE_WITH_KEYWORD = re.compile(
    r"\b(?:tienda|sucursal|suc|local|la|nro|numero|num|n|no)\s*[#°º]?\s*(\d{1,4})\b"
)
# an answer that is only a number: "42", "#42", "nº 42"
_STORE_BARE = re.compile(r"^(?:n|no|nro|numero|num)?\s*[#°º]?\s*(\d{1,4})$")
# values a user (or a button) gives to go on without a store
NO_STORE_ANSWERS = ("sin tienda", "continuar sin tienda", "sin especificar")
NO_STORE = "sin especificar"


@dataclass
class Catalog:
    """Everything in `config/`, with the look-ups the dialogue needs."""

    stores: List[Store]
    systems: List[System]
    departments: Dict[str, Department]
    priority: PriorityRules
    dialogue: DialogueSettings
    _store_names: List[Tuple[str, Store]] = field(default_factory=list, repr=False)
    _system_synonyms: List[Tuple[str, System]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        names = []
        for store in self.stores:
            for phrase in (store.name, *store.aliases):
                names.append((fold(phrase), store))
        # longest first so "shopping oeste" wins over "oeste"
        self._store_names = sorted(names, key=lambda item: -len(item[0]))
        synonyms = []
        for system in self.systems:
            for phrase in (system.name, *system.synonyms):
                synonyms.append((fold(phrase), system))
        self._system_synonyms = sorted(synonyms, key=lambda item: -len(item[0]))

    # stores -------------------------------------------------------------------------
    def store_by_number(self, number: int) -> Optional[Store]:
        return next((s for s in self.stores if s.number == number), None)

    def find_store(self, text: str) -> Optional[Store]:
        """The store a mention names ("tienda 42", "la 27", "sucursal centro"), or None."""
        folded = fold(text)
        if not folded:
            return None
        # an explicit number ("tienda 8 del centro") wins over a name used as a word
        for match in _STORE_WITH_KEYWORD.finditer(folded):
            store = self.store_by_number(int(match.group(1)))
            if store:
                return store
        for phrase, store in self._store_names:
            if contains_phrase(folded, phrase):
                return store
        bare = _STORE_BARE.match(folded)
        return self.store_by_number(int(bare.group(1))) if bare else None

    @staticmethod
    def store_number_mentioned(text: str) -> Optional[int]:
        """The number in a store mention, known or not ("tienda 99" -> 99)."""
        folded = fold(text)
        match = _STORE_WITH_KEYWORD.search(folded) or _STORE_BARE.match(folded)
        return int(match.group(1)) if match else None

    @staticmethod
    def means_no_store(text: str) -> bool:
        folded = fold(text)
        return any(contains_phrase(folded, fold(answer)) for answer in NO_STORE_ANSWERS)

    # systems ------------------------------------------------------------------------
    def system_by_name(self, name: str) -> Optional[System]:
        folded = fold(name)
        return next((s for s in self.systems if fold(s.name) == folded), None)

    def find_system(self, text: str) -> Optional[System]:
        """The canonical system a mention names ("posnet" -> terminal de pago), or None."""
        folded = fold(text)
        if not folded:
            return None
        for phrase, system in self._system_synonyms:
            if folded == phrase:
                return system
        for phrase, system in self._system_synonyms:
            if contains_phrase(folded, phrase):
                return system
        return None

    def department_for(self, system: Optional[System]) -> Department:
        key = system.department if system else self.system_by_name("otro").department
        return self.departments[key]


def read_yaml(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def require_key(data: Dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise ConfigError(f"{where}: missing '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ConfigError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _load_stores(path: Path) -> List[Store]:
    entries = require_key(read_yaml(path), "stores", list, str(path))
    stores, numbers, phrases = [], set(), {}
    for index, entry in enumerate(entries):
        where = f"{path}: stores[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with number, name, aliases")
        number = require_key(entry, "number", int, where)
        name = require_key(entry, "name", str, where)
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"{where}: 'aliases' must be a list of text")
        if number in numbers:
            raise ConfigError(f"{where}: store number {number} appears twice")
        numbers.add(number)
        for phrase in (name, *aliases):
            key = fold(phrase)
            if key in phrases and phrases[key] != number:
                raise ConfigError(f"{where}: '{phrase}' is also used by store {phrases[key]}")
            phrases[key] = number
        stores.append(Store(number=number, name=name, aliases=tuple(aliases)))
    if not stores:
        raise ConfigError(f"{path}: 'stores' is empty")
    return stores


def _load_departments(path: Path) -> Dict[str, Department]:
    entries = require_key(read_yaml(path), "departments", dict, str(path))
    departments = {}
    for key, entry in entries.items():
        where = f"{path}: departments.{key}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with name and zoho_id")
        name = require_key(entry, "name", str, where)
        zoho_id = entry.get("zoho_id") or ""
        departments[str(key)] = Department(key=str(key), name=name, zoho_id=str(zoho_id))
    return departments


def _load_systems(path: Path, departments: Dict[str, Department]) -> List[System]:
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


def _load_priority(path: Path) -> PriorityRules:
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


def _load_dialogue(path: Path) -> DialogueSettings:
    data = read_yaml(path)
    ticket = require_key(data, "ticket", dict, str(path))
    channel = require_key(data, "channel", dict, str(path))
    status = require_key(data, "status", dict, str(path))
    return DialogueSettings(
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
    )


def load_catalog(config_dir: Path) -> Catalog:
    departments = _load_departments(config_dir / "departments.yml")
    return Catalog(
        stores=_load_stores(config_dir / "stores.yml"),
        systems=_load_systems(config_dir / "systems.yml", departments),
        departments=departments,
        priority=_load_priority(config_dir / "priority.yml"),
        dialogue=_load_dialogue(config_dir / "dialogue.yml"),
    )


@lru_cache(maxsize=None)
def catalog() -> Catalog:
    """The process-wide catalog, from the configured `config/` directory."""
    return load_catalog(load_settings().config_dir)
