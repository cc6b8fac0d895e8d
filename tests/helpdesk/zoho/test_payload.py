"""The ledger record as Zoho Desk's create-ticket body (helpdesk/zoho/payload.py)."""
from types import SimpleNamespace

import pytest

from helpdesk.config import load_zoho_config
from helpdesk.errors import ConfigError
from helpdesk.zoho import ticket_payload, zoho_phone
from tests.conftest import PROJECT

SHAPE = load_zoho_config(PROJECT / "config" / "zoho.yml").ticket


def record(**overrides):
    values = dict(id="led-1", subject="POS: la caja 2 no enciende", description="la caja <2>\nno enciende",
                  priority="urgent", classification="Problem", department="it", reference="T-1",
                  store="Tienda 42 (Centro)", system="POS", reporter_name="Ana Pérez",
                  reporter_phone="5491122334455", conversation_id="5491122334455",
                  affected_person=None, error_messages=["E-12"], mentioned_users=[])
    values.update(overrides)
    return SimpleNamespace(**values)


def test_the_body_carries_the_ledger_id_the_contact_and_escaped_details():
    body = ticket_payload(record(), shape=SHAPE, department_id="100", contact_id="c-1", ref_field="cf_ref")
    assert body["cf"] == {"cf_ref": "led-1"}
    assert body["departmentId"] == "100" and body["contactId"] == "c-1"
    assert body["phone"] == "+5491122334455"
    assert body["description"].startswith("la caja &lt;2&gt;<br>no enciende<br><br>")
    assert "E-12" in body["description"] and "Tienda 42 (Centro)" in body["description"]
    assert body["priority"] == SHAPE.priorities.get("urgent", "urgent")


def test_without_a_contact_id_the_reporter_becomes_the_contact():
    body = ticket_payload(record(), shape=SHAPE, department_id="100", contact_id=None, ref_field="cf_ref")
    assert body["contact"] == {"lastName": "Ana Pérez"} and "contactId" not in body


@pytest.mark.parametrize("department_id, ref_field", [("", "cf_ref"), ("100", "")])
def test_a_missing_department_id_or_reference_field_is_a_configuration_error(department_id, ref_field):
    with pytest.raises(ConfigError):
        ticket_payload(record(), shape=SHAPE, department_id=department_id, contact_id=None, ref_field=ref_field)


def test_phones_are_sent_in_e164():
    assert zoho_phone("549 11 2233-4455") == "+5491122334455"
