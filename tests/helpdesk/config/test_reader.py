"""What every config reader shares (helpdesk/config/reader.py): the file read as a mapping, a
required key, a section, and the one number reader worded the way each file's errors are."""
import pytest

from helpdesk.config.reader import (
    AT_LEAST,
    BETWEEN,
    DOTTED_AT_LEAST,
    NumberStyle,
    number,
    read_yaml,
    require_key,
    section,
)
from helpdesk.errors import ConfigError


def _error(function, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        function(*args, **kwargs)
    return str(info.value)


# reading a file ----------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "stores.yml"
    assert _error(read_yaml, path) == f"{path}: file not found"


def test_invalid_yaml(config_copy):
    path = config_copy / "stores.yml"
    path.write_text("stores:\n  - {number: 1, name: Centro\n", encoding="utf-8")
    message = _error(read_yaml, path)
    assert str(path) in message
    assert "not valid YAML" in message


@pytest.mark.parametrize("content", ["- urgente\n- sistema caido\n", "just text\n", ""])
def test_top_level_not_a_mapping(config_copy, content):
    path = config_copy / "priority.yml"
    path.write_text(content, encoding="utf-8")
    message = _error(read_yaml, path)
    assert str(path) in message
    assert "expected a mapping at the top level" in message


# keys and sections -------------------------------------------------------------------
def test_require_key():
    assert require_key({"a": 1}, "a", int, "f.yml") == 1
    assert _error(require_key, {}, "a", int, "f.yml") == "f.yml: missing 'a'"
    assert _error(require_key, {"a": "1"}, "a", int, "f.yml") == "f.yml: 'a' must be int, got '1'"
    # YAML's yes/no are booleans, and booleans are ints in Python
    assert _error(require_key, {"a": True}, "a", int, "f.yml") == "f.yml: 'a' must be int, got True"


def test_section():
    assert section({"s": {"k": 1}}, "s", "f.yml") == {"k": 1}
    assert section({}, "s", "f.yml") == {} and section({"s": None}, "s", "f.yml") == {}
    assert _error(section, {"s": 5}, "s", "f.yml") == "f.yml: 's' must be a mapping"
    assert _error(section, {}, "s", "f.yml", optional=False) == "f.yml: 's' must be a mapping"


# numbers -----------------------------------------------------------------------------
def test_a_number_as_written_or_its_default():
    assert number({"n": 3}, "n", "f.yml") == 3 and isinstance(number({"n": 3}, "n", "f.yml"), int)
    assert number({}, "n", "f.yml", 2.5) == 2.5
    assert number({}, "n", "f.yml", optional=True) is None
    assert number({"n": None}, "n", "f.yml", optional=True) is None
    assert _error(number, {}, "n", "f.yml") == "f.yml: missing 'n'"


@pytest.mark.parametrize("data, kwargs, message", [
    # config/llm.yml's wording (PLAIN, the default)
    ({"n": None}, {"default": 5}, "f.yml: missing 'n'"),
    ({"n": "x"}, {}, "f.yml: 'n' must be a number, got 'x'"),
    ({"n": True}, {}, "f.yml: 'n' must be a number, got True"),
    ({"n": 1.5}, {"whole": True}, "f.yml: 'n' must be a whole number, got 1.5"),
    ({"n": -1}, {}, "f.yml: 'n' must be at least 0, got -1"),
    ({"n": 11}, {"whole": True, "maximum": 10}, "f.yml: 'n' must be at least 0 and at most 10, got 11"),
    # config/zoho.yml's
    ({"n": None}, {"minimum": 0.1, "style": AT_LEAST}, "f.yml: 'n' must be a number >= 0.1, got None"),
    ({"n": 0}, {"minimum": 0.1, "style": AT_LEAST}, "f.yml: 'n' must be a number >= 0.1, got 0"),
    # config/followups.yml's
    ({"n": "soon"}, {"default": 3, "minimum": 0.1, "style": DOTTED_AT_LEAST},
     "f.yml.n must be a number >= 0.1, got 'soon'"),
    ({"n": 1.5}, {"default": 3, "whole": True, "style": DOTTED_AT_LEAST},
     "f.yml.n must be a whole number >= 0, got 1.5"),
    # config/knowledge.yml's
    ({"n": 2.5}, {"whole": True, "minimum": 1, "maximum": 100, "style": BETWEEN},
     "f.yml: 'n' must be int, got 2.5"),
    ({"n": "a"}, {"minimum": 0, "maximum": 1, "style": BETWEEN}, "f.yml: 'n' must be float, got 'a'"),
    ({"n": 0}, {"whole": True, "minimum": 1, "maximum": 100, "style": BETWEEN},
     "f.yml: 'n' must be between 1 and 100, got 0"),
])
def test_a_bad_number_is_worded_like_its_file(data, kwargs, message):
    assert _error(number, data, "n", "f.yml", **kwargs) == message


def test_floats_when_the_style_says_so():
    assert isinstance(number({"n": 3}, "n", "f.yml", style=AT_LEAST), float)
    assert isinstance(number({"n": 3}, "n", "f.yml", whole=True, style=AT_LEAST), int)
    assert isinstance(number({"n": 3}, "n", "f.yml", style=BETWEEN), float)


def test_a_style_of_ones_own():
    fraction = NumberStyle(wrong="a number from {minimum} to {maximum}",
                           limits="a number from {minimum} to {maximum}", null_is_missing=False)
    assert _error(number, {"n": 2}, "n", "f.yml", minimum=0, maximum=1, style=fraction) == (
        "f.yml: 'n' must be a number from 0 to 1, got 2")
