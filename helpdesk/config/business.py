"""Everything designers edit about the business in `config/*.yml` in one object, with the
look-ups the dialogue needs: stores (stores.yml), systems (systems.yml), departments
(departments.yml), priority rules (priority.yml) and dialogue settings (dialogue.yml), each
read by the module of the same name. Loaded once per process, checked on load: a broken file
raises `ConfigError` naming the file and the field.
"""
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from helpdesk.config.departments import Department, load_departments
from helpdesk.config.dialogue import DialogueConfig, load_dialogue
from helpdesk.config.priority import PriorityRules, load_priority
from helpdesk.config.stores import NO_STORE_ANSWERS, Store, StoresConfig, load_stores
from helpdesk.config.systems import System, load_systems
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings
from helpdesk.text import contains_phrase, fold


@dataclass
class Catalog:
    """Everything in `config/`, with the look-ups the dialogue needs."""

    store_config: StoresConfig
    systems: List[System]
    departments: Dict[str, Department]
    priority: PriorityRules
    dialogue: DialogueConfig
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
    @property
    def stores(self) -> List[Store]:
        return self.store_config.stores

    def store_by_number(self, number: int) -> Optional[Store]:
        return next((s for s in self.stores if s.number == number), None)

    def find_store(self, text: str) -> Optional[Store]:
        """The store a mention names ("tienda 42", "la 27", "sucursal centro"), or None."""
        folded = fold(text)
        if not folded:
            return None
        # an explicit number ("tienda 8 del centro") wins over a name used as a word
        for match in self.store_config.mention.finditer(folded):
            store = self.store_by_number(int(match.group(1)))
            if store:
                return store
        for phrase, store in self._store_names:
            if contains_phrase(folded, phrase):
                return store
        bare = self.store_config.bare.match(folded)
        return self.store_by_number(int(bare.group(1))) if bare else None

    def store_number_mentioned(self, text: str) -> Optional[int]:
        """The number in a store mention, known or not ("tienda 99" -> 99)."""
        folded = fold(text)
        match = self.store_config.mention.search(folded) or self.store_config.bare.match(folded)
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


def load_catalog(config_dir: Path) -> Catalog:
    departments = load_departments(config_dir / "departments.yml")
    result = Catalog(
        store_config=load_stores(config_dir / "stores.yml"),
        systems=load_systems(config_dir / "systems.yml", departments),
        departments=departments,
        priority=load_priority(config_dir / "priority.yml"),
        dialogue=load_dialogue(config_dir / "dialogue.yml"),
    )
    for system, _phrases in result.dialogue.generic_system_rules:
        if result.system_by_name(system) is None:
            raise ConfigError(f"{config_dir / 'dialogue.yml'}: generic_system_rules names the "
                              f"system {system!r}, which systems.yml does not have")
    return result


@lru_cache(maxsize=None)
def catalog() -> Catalog:
    """The process-wide catalog, from the configured `config/` directory."""
    return load_catalog(load_settings().config_dir)
