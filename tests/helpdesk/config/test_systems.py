"""config/systems.yml (helpdesk/config/systems.py): clear errors for a broken list."""
from tests.helpdesk.config.support import catalog_error, dump, load


def test_system_with_an_unknown_department(config_copy):
    path = config_copy / "systems.yml"
    data = load(path)
    data["systems"][0]["department"] = "finanzas"
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "systems[0]" in message
    assert "department 'finanzas' is not in departments.yml" in message
    assert "payments" in message  # the known keys are listed


def test_missing_otro_system(config_copy):
    path = config_copy / "systems.yml"
    data = load(path)
    data["systems"] = [s for s in data["systems"] if s["name"] != "otro"]
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "'otro' is required" in message


def test_synonym_shared_by_two_systems(config_copy):
    path = config_copy / "systems.yml"
    data = load(path)
    # impresora fiscal (systems[1]) also claims terminal de pago's (systems[2]) "posnet":
    # the later entry is the one reported
    data["systems"][1]["synonyms"].append("Posnet")
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "systems[2]" in message
    assert "synonym 'posnet' also belongs to 'impresora fiscal'" in message
