"""Drill: Zoho's daily API credits run out while another worker's create is still in flight.

Must hold: the circuit that worker B forced open until the quota resets (429
THRESHOLD_EXCEEDED) stays open until then, although worker A's create, sent before, answers
200 afterwards; the next ticket waits without calling Zoho.

Before, A's late success deleted the circuit: every worker went on calling a Zoho that had
no credits left for the day (and, for refused credentials, the token endpoint).

Two real RQ workers on the session's Redis, fake Zoho on loopback holding A's answer.
"""
from helpdesk.circuit import OPEN, CircuitBreaker
from helpdesk.tickets import DELIVERED
from tests.workers.zoho_support import background_workers, wait_until, world  # noqa: F401 - fixtures


def _tickets_calls(world, record):
    return [c for c in world.zoho.calls("POST", "/tickets") if (c.json or {}).get("cf", {}).get(
        "cf_helpdesk_ref") == record.id]


def test_a_late_success_leaves_the_circuit_open_until_the_quota_resets(world, background_workers):
    world.reconfigure(delivery={"read_timeout": 30})  # A waits for its answer
    circuit = CircuitBreaker(world.redis, "zoho")
    first = world.submit(started=1.0)
    world.zoho.delay(10, times=1, method="POST", path="/tickets", after=True)  # A's answer held 10 s
    world.enqueue(first)
    background_workers("a")
    wait_until(lambda: _tickets_calls(world, first), 30, what="A's create in flight")

    world.zoho.rate_limit(1, "THRESHOLD_EXCEEDED", retry_after=300, method="POST", path="/tickets")
    second = world.submit(started=2.0)
    world.enqueue(second)
    background_workers("b")  # A is busy with its create: B takes the second ticket
    wait_until(lambda: world.redis.hget("helpdesk:circuit:zoho", "reason") == b"THRESHOLD_EXCEEDED", 30,
               what="the circuit forced open by B")

    wait_until(lambda: world.ledger.get(first.id).state == DELIVERED, 30, what="A's late success")

    state = circuit.state()
    assert state.state == OPEN and state.reason == "THRESHOLD_EXCEEDED"
    assert state.open_until - circuit.clock() > 250  # still the quota's time, not closed
    third = world.submit(started=3.0)
    world.enqueue(third)
    wait_until(lambda: "circuit open" in (world.ledger.get(third.id).last_error or ""), 30,
               what="the third ticket waiting for the circuit")
    assert _tickets_calls(world, third) == []  # nobody called Zoho for it
    assert [c.status for c in _tickets_calls(world, second)] == [429]
