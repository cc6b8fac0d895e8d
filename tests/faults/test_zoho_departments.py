"""Drill: Zoho is connected but config/departments.yml still has the ticket's department without
a zoho_id (as shipped).

Must hold: the ticket is not a dead letter: it waits pending without spending attempts and
without a create sent to Zoho; the support team is told once per department (not once per
ticket); once an operator fills in the id in departments.yml, the running workers (not
restarted) deliver every waiting ticket, once each.

Before, each ticket became a dead letter at once ("department 'it' has no zoho_id") and needed
a manual requeue after the fix.

Real RQ workers on the session's Redis, fake Zoho on loopback.
"""
import yaml

from helpdesk.tickets import DELIVERED, PENDING_DELIVERY
from tests.workers.zoho_support import DEPARTMENT_IDS, background_workers, wait_until, world  # noqa: F401


def _set_zoho_id(world, key, value):
    path = world.config_dir / "departments.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["departments"][key]["zoho_id"] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_tickets_of_a_department_without_zoho_id_wait_and_go_once_it_is_set(world, background_workers):
    world.reconfigure(delivery={"unconfigured_retry_seconds": 1})
    _set_zoho_id(world, "it", "")
    first, second = world.submit(started=1.0), world.submit(started=2.0)
    assert first.department == "it"
    world.enqueue(first)
    world.enqueue(second)
    background_workers()

    for record in (first, second):
        wait_until(lambda: "has no zoho_id" in (world.ledger.get(record.id).last_error or ""), 20,
                   what="deferred for the missing zoho_id")
    wait_until(lambda: world.ledger.human_notices(), 10, what="the support team told")
    for record in (first, second):
        waiting = world.ledger.get(record.id)
        assert waiting.state == PENDING_DELIVERY and waiting.attempts == 0
    assert world.zoho.calls("POST", "/tickets") == []
    [notice] = world.ledger.human_notices()  # once for the department, not per ticket
    assert notice["kind"] == "department_unconfigured"
    assert "«Soporte TI» (it)" in notice["text"] and "make zoho-check" in notice["text"]

    _set_zoho_id(world, "it", DEPARTMENT_IDS["it"])  # the operator fills it in; no restart
    for record in (first, second):
        wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 30, what="delivery after the fix")
        assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert {t["departmentId"] for t in world.zoho.tickets.values()} == {DEPARTMENT_IDS["it"]}
    assert len(world.ledger.human_notices()) == 1
