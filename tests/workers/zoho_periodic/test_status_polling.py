"""Status changes of open tickets are noticed by the scheduled poller and the reporter is told
through Rasa's trigger_intent; closed tickets are not polled any more."""
from rq import Queue

from helpdesk.tickets import DELIVERED
from helpdesk.zoho import ZOHO_QUEUE
from tests.workers.zoho_support import background_workers, run_burst, wait_until, world  # noqa: F401

POLL = "workers.zoho_periodic.poll_ticket_statuses"


def delivered(world, started):
    record = world.submit(started=started, announce_by_worker=False)
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.state == DELIVERED and record.zoho_status == "Open"
    return record


def poll(world):
    Queue(ZOHO_QUEUE, connection=world.redis).enqueue(POLL)
    run_burst(world.env)


def test_a_status_change_is_noticed_and_announced_once(world):
    record, other = delivered(world, 1.0), delivered(world, 2.0)
    world.zoho.set_status(record.zoho_ticket_id, "On Hold", "On Hold")

    poll(world)

    [told] = world.rasa.triggered("EXTERNAL_ticket_status_changed")
    assert told.conversation_id == record.conversation_id
    key = told.entities.pop("announcement")  # the job's id: one per change
    assert key.startswith(f"announce-status-{record.id}-")
    assert told.entities == {"ticket_number": record.zoho_ticket_number, "status": "en espera",
                             "reference": record.reference}
    assert world.ledger.get(record.id).zoho_status == "On Hold"
    assert world.ledger.get(other.id).zoho_status == "Open"
    gets = world.zoho.calls("GET", f"/tickets/{record.zoho_ticket_id}")
    assert len(gets) == 1

    poll(world)  # nothing changed since
    assert len(world.rasa.triggered("EXTERNAL_ticket_status_changed")) == 1


def test_a_closed_ticket_is_announced_and_no_longer_polled(world):
    record = delivered(world, 1.0)
    world.zoho.set_status(record.zoho_ticket_id, "Closed", "Closed")
    poll(world)
    [told] = world.rasa.triggered("EXTERNAL_ticket_status_changed")
    assert told.entities["status"] == "cerrado"
    poll(world)
    assert len(world.zoho.calls("GET", f"/tickets/{record.zoho_ticket_id}")) == 1


def test_an_unlabelled_portal_status_is_passed_as_it_is(world):
    record = delivered(world, 1.0)
    world.zoho.set_status(record.zoho_ticket_id, "Esperando repuesto", "On Hold")
    poll(world)
    [told] = world.rasa.triggered("EXTERNAL_ticket_status_changed")
    assert told.entities["status"] == "Esperando repuesto"


def test_polling_stops_when_zoho_fails_and_goes_on_next_time(world):
    first, second = delivered(world, 1.0), delivered(world, 2.0)
    world.zoho.set_status(first.zoho_ticket_id, "On Hold", "On Hold")
    world.zoho.set_status(second.zoho_ticket_id, "On Hold", "On Hold")
    world.zoho.fail(1, status=503, method="GET", path="/tickets/")
    poll(world)
    assert world.rasa.triggered() == []  # the pass stopped at the first failure
    poll(world)
    assert len(world.rasa.triggered("EXTERNAL_ticket_status_changed")) == 2


def test_the_poller_runs_on_its_interval(world, background_workers):
    world.reconfigure(status_polling={"interval_seconds": 1})
    record = delivered(world, 1.0)
    Queue(ZOHO_QUEUE, connection=world.redis).enqueue(POLL)  # starts the chain
    background_workers()
    wait_until(lambda: len(world.zoho.calls("GET", f"/tickets/{record.zoho_ticket_id}")) >= 2, 15,
               what="two polls")
    world.zoho.set_status(record.zoho_ticket_id, "Escalated", "Open")
    told = wait_until(lambda: world.rasa.triggered("EXTERNAL_ticket_status_changed"), 15, what="announcement")
    assert told[0].entities["status"] == "escalado"
