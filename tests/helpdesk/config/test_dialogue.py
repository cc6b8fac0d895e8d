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


def test_shipped_same_incident_settings(catalog):
    dialogue = catalog.dialogue
    assert dialogue.same_incident_minutes == 120
    assert dialogue.same_incident_fields == ("store", "system")
    assert dialogue.same_incident_scope == "all"
    assert "{description}" in dialogue.same_incident_comment


@pytest.mark.parametrize("key, value, shown", [
    ("window_minutes", -5, "window_minutes must be minutes"),
    ("window_minutes", "mucho", "window_minutes must be minutes"),
    ("match", ["store", "color"], "match must name some of store, system"),
    ("match", [], "match must name some of"),
    ("scope", "tienda", "scope must be 'all' or 'group'"),
    ("comment", "de {quien}", "comment may use {name}, {phone} and {description} only"),
    ("more_comment", "{0}", "more_comment may use {name}, {phone} and {description} only"),
])
def test_same_incident_settings_that_cannot_work(config_copy, key, value, shown):
    path = config_copy / "dialogue.yml"
    data = load(path)
    data["same_incident"][key] = value
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message and shown in message


def test_generic_words_and_the_rule_for_the_system(catalog):
    dialogue = catalog.dialogue
    assert dialogue.is_generic("system", "El sistema") and dialogue.is_generic("store", "la tienda")
    assert not dialogue.is_generic("store", "tienda 1")
    assert not dialogue.is_generic("system", "sistema de caja")  # a POS synonym, not generic
    assert dialogue.system_for_generic("se cayó el sistema, ¡no podemos COBRAR!") == "POS"
    assert dialogue.system_for_generic("se cayó el sistema") is None


def test_a_generic_rule_must_name_a_known_system(config_copy):
    path = config_copy / "dialogue.yml"
    data = load(path)
    data["generic_system_rules"] = [{"system": "heladera", "when_any": ["no enfria"]}]
    dump(path, data)
    message = catalog_error(config_copy)
    assert "generic_system_rules names the system 'heladera'" in message
