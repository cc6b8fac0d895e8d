"""config/dialogue.yml (helpdesk/config/dialogue.py): the shipped settings and clear errors for
a broken file."""
import pytest

from tests.helpdesk.config.support import catalog_error, dump, load


def test_shipped_dialogue_settings(catalog):
    dialogue = catalog.dialogue
    assert dialogue.store_max_attempts == 2
    assert dialogue.prefill_description_min_words == 2
    assert dialogue.description_max_chars == 4000
    assert dialogue.reference_prefix == "HD-"
    assert dialogue.max_message_chars == 4000
    assert dialogue.max_body_bytes == 65536
    assert dialogue.recent_tickets == 3
    assert set(dialogue.state_labels) == {"pending_delivery", "delivered", "failed"}


@pytest.mark.parametrize("value, shown", [("two", "'two'"), (True, "True"), (2.5, "2.5")])
def test_dialogue_setting_of_the_wrong_type(config_copy, value, shown):
    path = config_copy / "dialogue.yml"
    data = load(path)
    data["ticket"]["store_max_attempts"] = value
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "ticket" in message
    assert f"'store_max_attempts' must be int, got {shown}" in message


def test_dialogue_setting_missing(config_copy):
    path = config_copy / "dialogue.yml"
    data = load(path)
    del data["status"]["recent_tickets"]
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "status: missing 'recent_tickets'" in message
