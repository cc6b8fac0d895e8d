"""`make zoho-check` (helpdesk/zoho/check.py) against the fake Zoho over real HTTP: the portal's
departments matched to config/departments.yml by id or by name, the ledger id's custom field,
the exit status, and the outcome kept in Redis."""
import json
import subprocess
import sys

import pytest
import yaml

from helpdesk.zoho.check import remembered
from tests.conftest import PROJECT
from tests.fakes.zoho import FakeZoho
from tests.workers.zoho_support import DEPARTMENT_IDS, world  # noqa: F401 - fixture

NAMES = {"it": "Soporte TI", "payments": "Medios de pago", "maintenance": "Mantenimiento",
         "operations": "Operaciones", "security": "Seguridad"}


def run(world, *args):
    return subprocess.run([sys.executable, "-m", "helpdesk.zoho.check", *args], cwd=PROJECT, env=world.env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def named_portal(world):
    """Replaces the world's fake Zoho by one whose departments carry the shipped names."""
    started = []

    def replace(world, ref_fields=None):
        world.zoho.stop()
        kwargs = {} if ref_fields is None else {"ref_fields": ref_fields}
        zoho = FakeZoho(departments=tuple(DEPARTMENT_IDS.values()),
                        department_names={DEPARTMENT_IDS[k]: v for k, v in NAMES.items()}, **kwargs).start()
        started.append(zoho)
        world.zoho = zoho
        for name, value in zoho.env().items():
            world.env[name] = value
        return zoho

    yield replace
    for zoho in started:
        zoho.stop()


def set_ids(world, ids):
    path = world.config_dir / "departments.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, entry in data["departments"].items():
        entry["zoho_id"] = ids.get(key, "")
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_everything_configured_exits_zero(world, named_portal):
    named_portal(world)
    done = run(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MISSING" not in done.stdout
    assert "ok       custom field cf_helpdesk_ref" in done.stdout
    for key in NAMES:
        assert f"ok       department '{key}'" in done.stdout
    assert [c.query for c in world.zoho.calls("GET", "/departments")] == [{"from": ["0"], "limit": ["200"]}]
    assert world.zoho.calls("GET", "/organizationFields")[0].query == {"module": ["tickets"]}
    kept = remembered(world.redis)
    assert kept["ok"] is True and kept["resolved"] == DEPARTMENT_IDS


def test_shipped_departments_without_ids_are_named_one_line_each(world, named_portal):
    zoho = named_portal(world)
    set_ids(world, {})  # config/departments.yml as shipped: every zoho_id empty
    done = run(world)
    assert done.returncode == 1, done.stdout + done.stderr
    missing = [line for line in done.stdout.splitlines() if line.startswith("MISSING")]
    assert len(missing) == 5
    assert (f"MISSING  department 'it' (Soporte TI): no zoho_id in config/departments.yml; the portal's "
            f"department 'Soporte TI' has id {DEPARTMENT_IDS['it']}: set zoho_id: \"{DEPARTMENT_IDS['it']}\""
            in missing)
    kept = remembered(world.redis)
    assert kept["ok"] is False and kept["resolved"] == {} and len(kept["missing"]) == 5
    assert zoho.calls("GET", "/departments")


def test_wrong_id_unknown_name_and_missing_custom_field(world, named_portal):
    zoho = named_portal(world, ref_fields=("cf_other",))
    set_ids(world, {"it": "1892000000000001", "payments": DEPARTMENT_IDS["payments"]})
    path = world.config_dir / "departments.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["departments"]["security"]["name"] = "Seguridad física"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    done = run(world, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["resolved"] == {"payments": DEPARTMENT_IDS["payments"]}
    lines = outcome["missing"]
    assert "department 'it' (Soporte TI): zoho_id 1892000000000001 is not a department of this portal" in lines
    assert ("department 'security' (Seguridad física): no zoho_id in config/departments.yml and no portal "
            "department named 'Seguridad física'") in lines
    assert any(line.startswith("custom field cf_helpdesk_ref (ZOHO_REF_FIELD) is not a ticket field") and
               "cf_other" in line for line in lines)
    assert len(lines) == 5  # it, maintenance, operations, security, the field
    assert zoho.calls("GET", "/organizationFields")


def test_unreachable_zoho_or_no_credentials_exit_two(world):
    world.zoho.go_down()
    done = run(world)
    assert done.returncode == 2 and "could not be checked" in done.stdout
    env = {k: v for k, v in world.env.items() if k != "ZOHO_CLIENT_SECRET"}
    env["ZOHO_CLIENT_SECRET"] = ""
    done = subprocess.run([sys.executable, "-m", "helpdesk.zoho.check"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not configured" in done.stdout
