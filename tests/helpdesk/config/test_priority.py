"""config/priority.yml (helpdesk/config/priority.py): clear errors for a broken file."""
from tests.helpdesk.config.support import catalog_error, dump, load


def test_priority_labels_missing(config_copy):
    path = config_copy / "priority.yml"
    data = load(path)
    del data["labels"]
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "missing 'labels'" in message


def test_priority_label_for_normal_missing(config_copy):
    path = config_copy / "priority.yml"
    data = load(path)
    data["labels"] = {"urgent": "urgente"}
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "labels.normal must be text" in message


def test_priority_without_urgent_phrases(config_copy):
    path = config_copy / "priority.yml"
    data = load(path)
    data["urgent_phrases"] = []
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "'urgent_phrases' is empty" in message
