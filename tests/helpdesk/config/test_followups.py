"""config/followups.yml (helpdesk/config/followups.py): the spec's numbers, defaults for
missing keys and errors naming a wrong one."""
import pytest

from helpdesk.config import load_followup_config
from helpdesk.errors import ConfigError
from tests.conftest import PROJECT


def test_the_shipped_config_says_the_specs_numbers():
    options = load_followup_config(PROJECT / "config" / "followups.yml")
    assert (options.reask_delay, options.max_reasks, options.escalate, options.thread_timeout) == (
        1800, 3, True, 86400)
    assert options.steps == 4


def test_missing_keys_take_defaults_and_wrong_ones_are_named(tmp_path):
    path = tmp_path / "followups.yml"
    path.write_text("reask: {}\n", encoding="utf-8")
    options = load_followup_config(path)
    assert (options.reask_delay, options.max_reasks, options.thread_timeout) == (1800, 3, 86400)
    assert options.retry_intervals == (30, 120, 300)

    for text, field in [("reask: {delay_seconds: soon}", "reask.delay_seconds"),
                        ("reask: {max_reasks: 1.5}", "reask.max_reasks"),
                        ("reask: {escalate: 'yes'}", "reask.escalate"),
                        ("thread: {timeout_seconds: -1}", "thread.timeout_seconds"),
                        ("jobs: {retry_intervals: 30}", "jobs.retry_intervals"),
                        ("thread: 5", "'thread' must be a mapping")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("'", "'")):
            load_followup_config(path)
