"""Tickets survive a killed work horse: RQ's retry of the delivery job makes one Zoho ticket.
The whole worker SIGKILLed and lost jobs are the reconciler's (tests/workers/zoho_periodic/
test_reconciler.py)."""
from helpdesk.tickets import DELIVERED
from tests.workers.zoho_support import background_workers, wait_until, world  # noqa: F401


def created_in_zoho(world, record):
    return world.zoho.tickets_with_ref(record.id)


def test_a_work_horse_killed_mid_create_is_retried_and_makes_one_ticket(world, background_workers):
    # the create reaches Zoho, which answers only after 10 s: the kill lands in between
    world.zoho.delay(10, method="POST", path="/tickets", after=True, times=1)
    record = world.submit()
    world.enqueue(record)
    worker = background_workers()
    wait_until(lambda: created_in_zoho(world, record), 20, interval=0.02, what="the create reached Zoho")
    [horse] = [pid for pid in worker.children() if _session_leader(pid)]
    import os
    import signal

    os.kill(horse, signal.SIGKILL)

    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 30, what="delivery after the kill")
    assert len(created_in_zoho(world, record)) == 1
    assert len(world.zoho.calls("POST", "/tickets")) == 1
    assert world.zoho.calls("GET", "/tickets/search")  # the rerun looked before creating
    assert "terminated unexpectedly" in worker.log()


def _session_leader(pid: int) -> bool:
    """The RQ work horse calls setsid(): it leads its own session."""
    import os

    try:
        return os.getsid(pid) == pid
    except ProcessLookupError:
        return False
