"""Delivery of ledger tickets to (fake) Zoho Desk by real RQ workers on the session's Redis."""
import time

from rq.registry import FailedJobRegistry

from helpdesk import redis_keys
from helpdesk.metrics import ZOHO_API_LATENCY
from helpdesk.tickets import DELIVERED, FAILED, PENDING_DELIVERY
from helpdesk.zoho import ZOHO_QUEUE, delivery_job_id
from tests.fakes.zoho import ORG_ID, REF_FIELD
from tests.workers.zoho_support import (  # noqa: F401 - fixtures
    DEPARTMENT_IDS,
    background_workers,
    run_burst,
    wait_until,
    world,
)


def test_a_ticket_is_delivered_once_with_every_field(world):
    record = world.submit()
    world.enqueue(record)

    run_burst(world.env)

    delivered = world.ledger.get(record.id)
    assert delivered.state == DELIVERED
    [ticket] = world.zoho.tickets_with_ref(record.id)
    assert delivered.zoho_ticket_id == ticket["id"]
    assert delivered.zoho_ticket_number == ticket["ticketNumber"]
    assert ticket["subject"] == record.subject
    assert ticket["departmentId"] == DEPARTMENT_IDS["it"]
    assert ticket["priority"] == "Medium"
    assert ticket["classification"] == record.classification
    assert ticket["channel"] == "Chat"
    assert ticket["cf"] == {REF_FIELD: record.id}
    contact = world.zoho.contacts[ticket["contactId"]]
    assert contact["mobile"] == "+5491122334455"
    assert (contact["firstName"], contact["lastName"]) == ("Ana", "Pérez")
    assert record.reference in ticket["description"]
    assert "Tienda 42 (Avenida)" in ticket["description"]
    # every Desk call carried the token and the org id
    for call in world.zoho.calls():
        if call.path.startswith("/oauth"):
            continue
        assert call.headers["authorization"].startswith("Zoho-oauthtoken 1000.")
        assert call.headers["orgid"] == ORG_ID
    assert world.zoho.refreshes == 1
    # the turn had handed the announcement over: the user is told the number
    [told] = world.rasa.triggered("EXTERNAL_ticket_delivered")
    assert told.conversation_id == record.conversation_id
    assert told.entities == {"ticket_number": ticket["ticketNumber"], "priority": "normal",
                             "reference": record.reference,
                             "announcement": f"announce-delivered-{record.id}"}
    assert told.output_channel == "latest" and told.claims["user"]["role"] == "admin"
    assert world.ledger.get(record.id).announced_at is not None


def desk_calls(world, method=None, path=None):
    return [c for c in world.zoho.calls(method, path) if not c.path.startswith("/oauth")]


def test_zoho_down_for_three_attempts_then_up(world, background_workers):
    world.reconfigure(delivery={"retry_intervals": [1, 2, 3]})
    world.zoho.fail(3, status=503)  # every Desk call fails three times, then Zoho is back
    record = world.submit()
    world.enqueue(record)
    background_workers()

    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 30, what="delivery")

    [ticket] = world.zoho.tickets_with_ref(record.id)
    delivered = world.ledger.get(record.id)
    assert delivered.attempts == 3
    assert delivered.zoho_ticket_number == ticket["ticketNumber"]
    assert len(world.zoho.calls("POST", "/tickets")) == 1
    # one contact search opened each attempt; the waits between attempts grew 1, 2, 3 s
    starts = [c.at for c in world.zoho.calls("GET", "/contacts/search") if c.query.get("mobile")]
    assert len(starts) == 4
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9 and gaps[2] >= 2.9, gaps
    told = wait_until(lambda: world.rasa.triggered("EXTERNAL_ticket_delivered"), 15, what="announcement")
    assert [t.entities["ticket_number"] for t in told] == [ticket["ticketNumber"]]


def test_zoho_refusing_connections_then_back(world, background_workers):
    world.reconfigure(delivery={"retry_intervals": [1]})
    world.zoho.go_down()
    record = world.submit()
    world.enqueue(record)
    background_workers()
    wait_until(lambda: world.ledger.get(record.id).attempts >= 2, 20, what="two failed attempts")
    assert "onnection" in world.ledger.get(record.id).last_error  # token endpoint and Desk both down
    world.zoho.come_up()
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, what="delivery")
    assert len(world.zoho.tickets_with_ref(record.id)) == 1


def test_a_create_that_succeeds_but_answers_500_is_one_ticket(world):
    world.zoho.fail(1, status=500, method="POST", path="/tickets", after=True)
    record = world.submit()
    world.enqueue(record)

    run_burst(world.env)

    assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert len(world.zoho.calls("POST", "/tickets")) == 1  # never created again
    [search] = world.zoho.calls("GET", "/tickets/search")
    assert search.query["customField1"] == [f"{REF_FIELD}:{record.id}"]
    delivered = world.ledger.get(record.id)
    assert delivered.state == DELIVERED and delivered.attempts == 1
    assert delivered.zoho_ticket_number == world.zoho.tickets_with_ref(record.id)[0]["ticketNumber"]


def test_a_lost_answer_waits_for_zohos_search_instead_of_creating_again(world, background_workers):
    # Zoho's search shows a new ticket only after 2 s; no second create before it can
    world.zoho.search_lag = 2.0
    world.reconfigure(delivery={"search_settle_seconds": 3})
    world.zoho.fail(1, status=504, method="POST", path="/tickets", after=True)
    record = world.submit()
    world.enqueue(record)
    background_workers()
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 30, what="delivery")
    assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert len(world.zoho.calls("POST", "/tickets")) == 1
    assert len(world.zoho.calls("GET", "/tickets/search")) >= 2  # empty at first, then found


def test_expired_token_is_refreshed_and_the_ticket_created_once(world):
    first = world.submit(started=1.0)
    world.enqueue(first)
    run_burst(world.env)
    world.zoho.expire_tokens()
    second = world.submit(started=2.0)
    world.enqueue(second)

    run_burst(world.env)

    assert world.ledger.get(second.id).state == DELIVERED
    assert len(world.zoho.tickets_with_ref(second.id)) == 1
    assert world.zoho.refreshes == 2
    statuses = [c.status for c in world.zoho.calls("POST", "/tickets")]
    assert statuses == [200, 401, 200]
    assert world.ledger.get(second.id).attempts == 0


def test_a_refresh_answered_with_an_error_body_stops_and_tells_a_human_once(world, background_workers):
    world.reconfigure(circuit={"auth_recovery_seconds": 3})
    world.zoho.refuse_refresh("invalid_code")
    first, second = world.submit(started=1.0), world.submit(started=2.0)
    world.enqueue(first)
    world.enqueue(second)
    background_workers()

    wait_until(lambda: world.ledger.human_notices(), 15, what="a notice")
    wait_until(lambda: "invalid_code" in (world.ledger.get(second.id).last_error or ""), 15, what="second deferred")
    token_calls = world.zoho.calls("POST", "/oauth/v2/token")
    assert len(token_calls) == 1  # the circuit keeps the other ticket off the token endpoint
    assert desk_calls(world) == []
    [notice] = world.ledger.human_notices()
    assert notice["kind"] == "zoho_auth" and "invalid_code" in notice["text"]
    assert world.ledger.get(first.id).state == PENDING_DELIVERY
    assert world.ledger.get(first.id).attempts == 0  # not the ticket's fault
    circuit = world.redis.hgetall("helpdesk:circuit:zoho")
    assert b"credentials refused" in circuit[b"reason"]

    world.zoho.clear_failures()  # an operator fixed the credentials
    for record in (first, second):
        wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, what="delivery after the fix")
    assert len(world.zoho.tickets) == 2
    assert len(world.ledger.human_notices()) == 1


def test_422_is_a_dead_letter_with_zohos_field_errors_and_a_human_told(world):
    errors = [{"fieldName": "/classification", "errorType": "invalid", "errorMessage": "not in the picklist"}]
    world.zoho.reject(1, errors)
    record = world.submit()
    world.enqueue(record)

    run_burst(world.env)

    failed = world.ledger.get(record.id)
    assert failed.state == FAILED and failed.failure_kind == "rejected"
    assert failed.field_errors == errors
    assert "/classification: invalid" in failed.last_error
    assert len(world.zoho.calls("POST", "/tickets")) == 1  # no retries
    registry = FailedJobRegistry(ZOHO_QUEUE, connection=world.redis)
    assert delivery_job_id(record.id) in registry.get_job_ids()
    [notice] = world.ledger.human_notices()
    assert notice["kind"] == "ticket_rejected" and notice["ticket_id"] == record.id
    assert record.reference in notice["text"] and "/classification" in notice["text"]
    assert world.rasa.triggered() == []
    # what /metrics reads, written by the worker process: tickets_failed_total{kind} and the
    # Zoho call's latency (zoho_api_latency_seconds{operation,status})
    assert world.redis.hget(redis_keys.counters(), "tickets_failed_rejected") == b"1"
    latency = {tuple(sorted(s.labels.items())): s.value
               for s in ZOHO_API_LATENCY.read(world.redis).samples
               if s.name == "zoho_api_latency_seconds_count"}
    assert latency[(("operation", "POST /tickets"), ("status", "4xx"))] == 1


def test_429_backs_off_without_spending_attempts(world, background_workers):
    world.reconfigure(delivery={"rate_limited_backoff": [1, 2]})
    world.zoho.rate_limit(2, "TOO_MANY_REQUESTS", method="POST", path="/tickets")
    record = world.submit()
    world.enqueue(record)
    background_workers()
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, what="delivery")
    posts = world.zoho.calls("POST", "/tickets")
    assert [c.status for c in posts] == [429, 429, 200]
    # backed off, not retried at once (RQ's scheduler works in whole seconds, so the exact
    # wait is not asserted: the deferral went through the scheduler, the job is not lost)
    assert posts[1].at > posts[0].at and posts[2].at > posts[1].at
    assert world.ledger.get(record.id).attempts == 0
    assert len(world.zoho.tickets_with_ref(record.id)) == 1


def test_threshold_exceeded_opens_the_circuit_until_the_quota_resets(world, background_workers):
    world.zoho.rate_limit(1, "THRESHOLD_EXCEEDED", retry_after=3)
    first = world.submit(started=1.0)
    world.enqueue(first)
    background_workers()
    wait_until(lambda: world.redis.hget("helpdesk:circuit:zoho", "reason") == b"THRESHOLD_EXCEEDED", 10,
               what="circuit open")
    second = world.submit(started=2.0)
    world.enqueue(second)
    wait_until(lambda: "circuit open" in (world.ledger.get(second.id).last_error or ""), 10, what="deferred")
    calls_while_open = len(desk_calls(world))
    assert calls_while_open == 1  # only the call that was refused
    for record in (first, second):
        wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, what="delivery after the reset")
    assert len(world.zoho.tickets) == 2
    first_after = min(c.at for c in desk_calls(world)[1:])
    assert first_after - desk_calls(world)[0].at >= 2.9


def test_out_of_attempts_is_a_dead_letter_and_a_human_is_told(world):
    world.reconfigure(delivery={"max_attempts": 3})
    world.zoho.fail(None, status=503)
    record = world.submit()
    world.enqueue(record)

    run_burst(world.env)

    failed = world.ledger.get(record.id)
    assert failed.state == FAILED and failed.failure_kind == "exhausted" and failed.attempts == 3
    assert len(world.zoho.calls("GET", "/contacts/search")) == 3
    assert delivery_job_id(record.id) in FailedJobRegistry(ZOHO_QUEUE, connection=world.redis).get_job_ids()
    [notice] = world.ledger.human_notices()
    assert notice["kind"] == "ticket_exhausted" and "3 intentos" in notice["text"]
    assert world.zoho.tickets == {}


def test_the_circuit_opens_after_five_failures_and_half_opens(world, background_workers):
    world.reconfigure(circuit={"recovery_seconds": 3})
    world.zoho.fail(None, status=503)
    records = [world.submit(started=float(n)) for n in range(1, 8)]
    for record in records:
        world.enqueue(record)
    background_workers()

    wait_until(lambda: world.redis.hget("helpdesk:circuit:zoho", "open_until"), 15, what="circuit open")
    opened = float(world.redis.hget("helpdesk:circuit:zoho", "opened_at"))
    failed_calls = len(desk_calls(world))
    assert failed_calls == 5  # five failures, then nobody calls
    time.sleep(2.0)
    assert len(desk_calls(world)) == 5
    # half-open after 3 s: one probe, which fails and opens it again
    wait_until(lambda: len(desk_calls(world)) >= 6, 10, what="the probe")
    probe = desk_calls(world)[5]
    assert probe.at - opened >= 2.9
    time.sleep(1.0)
    assert len(desk_calls(world)) == 6
    world.zoho.clear_failures()
    for record in records:
        wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 30, what="all delivered")
    assert sorted(len(world.zoho.tickets_with_ref(r.id)) for r in records) == [1] * 7
    # only the five failures and the failed probe were counted as attempts
    assert sum(world.ledger.get(r.id).attempts for r in records) == 6


def test_a_warmed_up_worker_shares_nothing_unsafe_with_its_work_horses(world):
    # warm_up() builds the context before RQ forks; each horse reopens its own connections
    records = [world.submit(started=float(n)) for n in range(1, 4)]
    for record in records:
        world.enqueue(record)
    run_burst(world.env, warm=True)
    for record in records:
        assert world.ledger.get(record.id).state == DELIVERED
        assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert world.zoho.refreshes == 1
