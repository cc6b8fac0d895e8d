"""`config/stores.yml`: the chain's stores, how a store is written ("Tienda 42 (Avenida)") and
the words that name one ("tienda 42", "sucursal centro", "la 27"), checked on load.

The keywords are one list for the store look-up here and for the NLU lookup table that
scripts/sync_nlu.py generates from this file.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Pattern, Tuple

from helpdesk.config.reader import read_yaml, require_key
from helpdesk.errors import ConfigError
from helpdesk.text import fold

# values a user (or a button) gives to go on without a store
NO_STORE_ANSWERS = ("sin tienda", "continuar sin tienda", "sin especificar")
NO_STORE = "sin especificar"


@dataclass(frozen=True)
class Store:
    number: int
    name: str
    aliases: Tuple[str, ...] = ()
    # config/stores.yml `label` for this store ("Tienda 42 (Avenida)")
    display: str = field(default="", compare=False)


@dataclass
class StoresConfig:
    stores: List[Store]
    label: str
    keywords: Tuple[str, ...]
    number_words: Tuple[str, ...]
    # "tienda 42", "la 27", "suc. 8", "local nº 15", "sucursal #3" (on folded text)
    mention: Pattern = field(init=False, repr=False, compare=False)
    # an answer that is only a number: "42", "#42", "nº 42"
    bare: Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        before_number = [fold(word) for word in (*self.keywords, *self.number_words)]
        self.mention = re.compile(
            rf"\b(?:{_either(before_number)})\s*[#°º]?\s*(\d{{1,4}})\b"
        )
        self.bare = re.compile(
            rf"^(?:{_either(fold(word) for word in self.number_words)})?\s*[#°º]?\s*(\d{{1,4}})$"
        )


def _either(words: Any) -> str:
    return "|".join(re.escape(word) for word in words)


def _words(data: Dict[str, Any], key: str, path: Path) -> Tuple[str, ...]:
    words = require_key(data, key, list, str(path))
    if not words or not all(isinstance(word, str) and fold(word) for word in words):
        raise ConfigError(f"{path}: '{key}' must be a list of words, got {words!r}")
    return tuple(words)


def _label(data: Dict[str, Any], path: Path) -> str:
    label = require_key(data, "label", str, str(path))
    try:
        label.format(number=1, name="Centro")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            f"{path}: 'label' may use only {{number}} and {{name}}, got {label!r}"
        ) from error
    return label


def load_stores(path: Path) -> StoresConfig:
    data = read_yaml(path)
    entries = require_key(data, "stores", list, str(path))
    label = _label(data, path)
    keywords = _words(data, "keywords", path)
    number_words = _words(data, "number_words", path)
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
        stores.append(Store(number=number, name=name, aliases=tuple(aliases),
                            display=label.format(number=number, name=name)))
    if not stores:
        raise ConfigError(f"{path}: 'stores' is empty")
    return StoresConfig(stores=stores, label=label, keywords=keywords, number_words=number_words)
