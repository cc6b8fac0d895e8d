"""config/departments.yml (helpdesk/config/departments.py): the shipped departments and clear
errors for a broken entry."""
from helpdesk.config.departments import Department, load_departments
from tests.helpdesk.config.support import CONFIG, catalog_error, dump, load


def test_the_shipped_departments():
    departments = load_departments(CONFIG / "departments.yml")
    assert departments["payments"] == Department(key="payments", name="Medios de pago", zoho_id="")
    assert set(departments) == {"it", "payments", "maintenance", "operations", "security"}


def test_a_department_that_is_not_a_mapping(config_copy):
    path = config_copy / "departments.yml"
    data = load(path)
    data["departments"]["it"] = "Soporte TI"
    dump(path, data)
    message = catalog_error(config_copy)
    assert str(path) in message
    assert "departments.it: expected a mapping with name and zoho_id" in message


def test_a_department_without_a_name(config_copy):
    path = config_copy / "departments.yml"
    data = load(path)
    del data["departments"]["it"]["name"]
    dump(path, data)
    assert "departments.it: missing 'name'" in catalog_error(config_copy)
