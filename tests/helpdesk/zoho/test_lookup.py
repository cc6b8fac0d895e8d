"""The status question answered from Zoho Desk (helpdesk/zoho/lookup.py), against the fake."""
import pytest

from helpdesk.circuit import CircuitBreaker, CircuitOpen
from helpdesk.zoho import ZohoTransient
from helpdesk.zoho import lookup_status
from tests.workers.zoho_support import run_burst, world  # noqa: F401


def delivered(world):
    record = world.submit(announce_by_worker=False)
    world.enqueue(record)
    run_burst(world.env)
    return world.ledger.get(record.id)


def test_the_live_status_with_its_label_and_stored(world):
    record = delivered(world)
    world.zoho.set_status(record.zoho_ticket_id, "On Hold", "On Hold")
    live = lookup_status(record, world.ledger, world.redis)
    assert (live.status, live.label, live.status_type) == ("On Hold", "en espera", "On Hold")
    assert world.ledger.get(record.id).zoho_status == "On Hold"  # the poller will not repeat it


def test_not_in_zoho_yet_or_without_zoho(world, monkeypatch):
    pending = world.submit()
    assert lookup_status(pending, world.ledger, world.redis) is None
    record = delivered(world)
    monkeypatch.delenv("ZOHO_CLIENT_ID")
    assert lookup_status(record, world.ledger, world.redis) is None


def test_zoho_failing_raises_for_the_ledger_fallback_and_counts_for_the_circuit(world):
    record = delivered(world)
    world.zoho.fail(1, status=503, method="GET")
    with pytest.raises(ZohoTransient):
        lookup_status(record, world.ledger, world.redis)
    assert world.redis.hget("helpdesk:circuit:zoho", "failures") == b"1"


def test_an_open_circuit_answers_at_once(world):
    record = delivered(world)
    CircuitBreaker(world.redis, "zoho").open_for(60, "outage")
    calls = len(world.zoho.requests)
    with pytest.raises(CircuitOpen):
        lookup_status(record, world.ledger, world.redis)
    assert len(world.zoho.requests) == calls
