"""config/known_fixes.yml (helpdesk/config/known_fixes.py): the shipped thresholds, defaults for
missing keys, and clear errors for a broken value."""
import pytest

from helpdesk.config import load_known_fix_config
from helpdesk.errors import ConfigError
from tests.conftest import PROJECT


def test_the_shipped_file():
    config = load_known_fix_config(PROJECT / "config" / "known_fixes.yml")
    assert (config.enabled, config.min_relevance, config.min_dense, config.skip_urgent) == (
        True, 0.7, 0.5, True)


def test_missing_keys_take_defaults(tmp_path):
    path = tmp_path / "known_fixes.yml"
    path.write_text("{}\n", encoding="utf-8")
    config = load_known_fix_config(path)
    assert (config.enabled, config.min_relevance, config.min_dense, config.skip_urgent) == (
        True, 0.7, 0.5, True)
    assert isinstance(config.min_relevance, float)


@pytest.mark.parametrize("content, message", [
    ("enabled: 'yes'\n", "'enabled' and 'skip_urgent' must be true or false"),
    ("min_relevance: 1.5\n", "'min_relevance' must be a number from 0 to 1, got 1.5"),
    ("min_dense: high\n", "'min_dense' must be a number from 0 to 1, got 'high'"),
    ("min_dense: null\n", "'min_dense' must be a number from 0 to 1, got None"),
    ("min_dense: true\n", "'min_dense' must be a number from 0 to 1, got True"),
])
def test_a_broken_value_is_named(tmp_path, content, message):
    path = tmp_path / "known_fixes.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_known_fix_config(path)
    assert str(error.value) == f"{path}: {message}"
