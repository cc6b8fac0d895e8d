"""workers/announcements.py: each announcement carries its key to Rasa (the job's id, the same
in every retry), and a run that finds the key recorded (the action spoke: an earlier run killed
before marking, or a call Rasa ran late) says nothing and only marks the ticket. Real RQ
workers (burst) on the session's Redis, fake Rasa and fake Zoho on loopback; the record is
written the way actions/ticket_announcements.py writes it (Ledger.record_announcement).

The drills with the real Rasa server, action server and WAHA fake are in
tests/faults/test_announcements.py."""
from rq.registry import FinishedJobRegistry

from helpdesk import queues
from helpdesk.config import zoho_config
from helpdesk.tickets import DELIVERED
from helpdesk.zoho import announce_job_id, enqueue_announcement, status_job_id
from tests.workers.zoho_support import run_burst, world  # noqa: F401

DELIVERED_INTENT = "EXTERNAL_ticket_delivered"
STATUS_INTENT = "EXTERNAL_ticket_status_changed"


def delivered_unannounced(world):
    record = world.submit(announce_by_worker=False)  # nobody queues its announcement
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.state == DELIVERED and world.rasa.triggered() == []
    return record


def queue_delivered(world, record):
    enqueue_announcement(world.redis, queues.ANNOUNCE_DELIVERED, (record.id,),
                         job_id=announce_job_id(record.id), config=zoho_config())


def test_the_key_is_the_job_id_and_a_try_answered_5xx_is_tried_again(world):
    record = delivered_unannounced(world)
    world.rasa.fail(1, status=500)  # the first try may have spoken: RQ runs it again
    queue_delivered(world, record)

    run_burst(world.env)

    # the fake records the tries it answered 200: the retry's, with the job's id
    tries = world.rasa.triggered(DELIVERED_INTENT)
    assert [t.entities["announcement"] for t in tries] == [announce_job_id(record.id)]
    assert world.ledger.get(record.id).announced_at is not None
    finished = FinishedJobRegistry(queues.DEFAULT, connection=world.redis)
    assert announce_job_id(record.id) in finished.get_job_ids()


def test_a_run_that_finds_the_announcement_said_only_marks_the_ticket(world):
    record = delivered_unannounced(world)
    # an earlier run's call reached the action, which spoke and recorded it; that run was
    # killed before marking (or timed out while Rasa waited on the conversation's lock)
    assert world.ledger.record_announcement(announce_job_id(record.id), record.conversation_id)
    queue_delivered(world, record)

    run_burst(world.env)

    assert world.rasa.triggered() == []
    assert world.ledger.get(record.id).announced_at is not None


def test_the_record_is_taken_once(world):
    assert world.ledger.announcement_spoken("announce-delivered-x") is None
    assert world.ledger.record_announcement("announce-delivered-x", "5491122334455") is True
    assert world.ledger.record_announcement("announce-delivered-x", "5491122334455") is False
    assert world.ledger.announcement_spoken("announce-delivered-x") > 0
    assert world.ledger.delete_announcements_before(0) == 0
    assert world.ledger.delete_announcements_before(float("inf")) == 1
    assert world.ledger.announcement_spoken("announce-delivered-x") is None


def test_each_status_change_is_its_own_announcement_and_said_once(world):
    record = delivered_unannounced(world)
    first, second = status_job_id(record.id, "On Hold", 1.0), status_job_id(record.id, "Open", 2.0)
    for job_id, status in ((first, "On Hold"), (second, "Open")):
        enqueue_announcement(world.redis, queues.ANNOUNCE_STATUS, (record.id, status), job_id=job_id,
                             config=zoho_config())
    run_burst(world.env)
    told = world.rasa.triggered(STATUS_INTENT)
    assert [(t.entities["announcement"], t.entities["status"]) for t in told] == [
        (first, "en espera"), (second, "abierto")]

    # the first change's job runs again (a dead letter requeued, a retry): nothing said again
    world.ledger.record_announcement(first, record.conversation_id)  # what the action recorded
    FinishedJobRegistry(queues.DEFAULT, connection=world.redis).remove(first, delete_job=True)
    enqueue_announcement(world.redis, queues.ANNOUNCE_STATUS, (record.id, "On Hold"), job_id=first,
                         config=zoho_config())
    run_burst(world.env)
    assert len(world.rasa.triggered(STATUS_INTENT)) == 2
