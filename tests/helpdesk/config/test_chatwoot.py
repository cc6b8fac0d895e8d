"""config/chatwoot.yml (helpdesk/config/chatwoot.py): a broken file names the field, and numbers
left out take their defaults."""
import pytest
import yaml

from helpdesk.config import load_chatwoot_config
from helpdesk.errors import ConfigError
from tests.conftest import PROJECT

OPTIONS = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")


def test_project_config_loads():
    assert OPTIONS.handoff_labels == ("escalated",)
    assert OPTIONS.status_while_bot == "pending" and OPTIONS.status_after_resume == "pending"
    assert OPTIONS.retry_intervals == (10, 30, 60, 120, 300, 300, 300, 300, 300, 300)
    assert OPTIONS.handoff_texts["escalation_message"] == (
        "@{human_support} Se requiere intervención manual para el incidente reportado por @{user}")


@pytest.mark.parametrize("section, key, value, message", [
    ("delivery", "retry_intervals", [], "delivery.retry_intervals"),
    ("http", "read_timeout_seconds", "diez", "http.read_timeout_seconds"),
    ("handoff", "status", "closed", "handoff.status"),
    ("handoff", "note_title", None, "handoff: missing 'note_title'"),
    ("handoff", "labels", "escalated", "handoff.labels"),
    ("webhook", "relay_text", "", "webhook.relay_text"),
])
def test_broken_config_names_the_field(tmp_path, section, key, value, message):
    data = yaml.safe_load((PROJECT / "config" / "chatwoot.yml").read_text(encoding="utf-8"))
    if value is None:
        del data[section][key]
    else:
        data[section][key] = value
    path = tmp_path / "chatwoot.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_chatwoot_config(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_numbers_have_defaults(tmp_path):
    data = yaml.safe_load((PROJECT / "config" / "chatwoot.yml").read_text(encoding="utf-8"))
    del data["http"], data["delivery"]
    path = tmp_path / "chatwoot.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    options = load_chatwoot_config(path)
    assert (options.connect_timeout, options.read_timeout, options.job_timeout) == (3.0, 10.0, 300)
