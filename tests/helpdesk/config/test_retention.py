"""config/retention.yml (helpdesk/config/retention.py): the shipped 90 days, defaults for missing
keys, and clear errors for a broken value."""
import pytest

from helpdesk.config import load_retention_config
from helpdesk.errors import ConfigError
from tests.conftest import PROJECT


def test_the_shipped_file_keeps_the_specs_90_days():
    config = load_retention_config(PROJECT / "config" / "retention.yml")
    assert (config.days, config.run_every_hours, config.batch_size) == (90, 24, 500)
    assert config.seconds == 90 * 86400
    assert config.interval_seconds == 86400


def test_missing_keys_take_defaults(tmp_path):
    path = tmp_path / "retention.yml"
    path.write_text("{}\n", encoding="utf-8")
    config = load_retention_config(path)
    assert (config.days, config.run_every_hours, config.batch_size) == (90, 24, 500)


@pytest.mark.parametrize("content, message", [
    ("days: 0\n", "'days' must be at least 1, got 0"),
    ("days: 30.5\n", "'days' must be a whole number, got 30.5"),
    ("days: yes\n", "'days' must be a whole number, got True"),
    ("run_every_hours: 200\n", "'run_every_hours' must be at least 1 and at most 168, got 200"),
    ("batch_size: many\n", "'batch_size' must be a whole number, got 'many'"),
])
def test_a_broken_value_is_named(tmp_path, content, message):
    path = tmp_path / "retention.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_retention_config(path)
    assert str(error.value) == f"{path}: {message}"
