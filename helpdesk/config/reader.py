"""What every reader of `config/*.yml` shares: the file read as a mapping, a required key of a
given type, an optional or required section, and one checked number.

The files word a bad number in their own way (operators and tests know the messages), so
`number` takes a `NumberStyle` naming the field, the kind and the bounds the way the file's
reader always did; the checks themselves are the same for every file.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from helpdesk.errors import ConfigError

REQUIRED: Any = object()  # `number`'s default: the key must be in the file


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


def section(data: Dict[str, Any], key: str, where: str, optional: bool = True) -> Dict[str, Any]:
    """The mapping under `key`. Optional: left out (or empty) is `{}`; required: it must be a
    mapping. Either way anything else is "{where}: '{key}' must be a mapping"."""
    value = data.get(key)
    if optional:
        value = value or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping")
    return value


@dataclass(frozen=True)
class NumberStyle:
    """How one file's reader reads a number and words its errors.

    field:   how the field is named: "{where}: '{key}'" or "{where}.{key}"
    kinds:   what a number is called, (any number, whole number)
    wrong:   what a value that is not a number (or not whole) must be; "{kind}" is one of `kinds`
    limits:  what a number out of bounds must be; "{upto}" is " and at most {maximum}" or ""
    null_is_missing: `key: null` counts as left out (else it is not a number)
    floats:  a number that need not be whole comes back as a float (else as written)
    """

    field: str = "{where}: '{key}'"
    kinds: tuple = ("a number", "a whole number")
    wrong: str = "{kind}"
    limits: str = "at least {minimum}{upto}"
    null_is_missing: bool = True
    floats: bool = False


# config/llm.yml: "'retries' must be a whole number, got 1.5", "... must be at least 0 and at most 10"
PLAIN = NumberStyle()
# config/zoho.yml: "'read_timeout' must be a number >= 0.1, got 0" for either fault
AT_LEAST = NumberStyle(wrong="a number >= {minimum}", limits="a number >= {minimum}",
                       null_is_missing=False, floats=True)
# config/followups.yml: "reask.max_reasks must be a whole number >= 0, got -1"
DOTTED_AT_LEAST = NumberStyle(field="{where}.{key}", wrong="{kind} >= {minimum}",
                              limits="{kind} >= {minimum}", null_is_missing=False, floats=True)
# config/knowledge.yml: "'top_k' must be int, got 2.5", "... must be between 1 and 100, got 0"
BETWEEN = NumberStyle(kinds=("float", "int"), limits="between {minimum} and {maximum}",
                      null_is_missing=False, floats=True)


def number(data: Dict[str, Any], key: str, where: str, default: Any = REQUIRED, *,
           whole: bool = False, minimum: Optional[float] = 0, maximum: Optional[float] = None,
           optional: bool = False, style: NumberStyle = PLAIN) -> Any:
    """The number under `key`, checked: `default` when left out (without one: "{where}:
    missing '{key}'", or None when `optional`); never a boolean (YAML's yes/no); an int when
    `whole`; within `minimum` and `maximum` (None: no bound)."""
    value = data.get(key, default)
    if value is REQUIRED or value is None and (optional or style.null_is_missing):
        if optional:
            return None
        raise ConfigError(f"{where}: missing '{key}'")
    words = {
        "where": where, "key": key, "minimum": minimum, "maximum": maximum,
        "kind": style.kinds[1] if whole else style.kinds[0],
        "upto": f" and at most {maximum}" if maximum is not None else "",
    }
    field = style.field.format(**words)
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(f"{field} must be {style.wrong.format(**words)}, got {value!r}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ConfigError(f"{field} must be {style.limits.format(**words)}, got {value!r}")
    return float(value) if style.floats and not whole else value
