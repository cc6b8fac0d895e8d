"""The reconciler (`reconcile_deliveries`): RQ's abandoned-job cleanup after the whole worker
was SIGKILLed, pending tickets that have no live job queued again, delivered tickets nobody
announced announced, and a job RQ gave up on made a dead letter."""
import time

from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from helpdesk.tickets import DELIVERED, FAILED
from helpdesk.zoho import ZOHO_QUEUE, delivery_job_id, job_status
from tests.workers.zoho_support import background_workers, run_burst, wait_until, world  # noqa: F401

RECONCILE = "workers.zoho_periodic.reconcile_deliveries"


def created_in_zoho(world, record):
    return world.zoho.tickets_with_ref(record.id)


def test_a_worker_sigkilled_mid_job_runs_it_again_without_a_second_ticket(world, background_workers):
    # a short job timeout keeps RQ's heartbeat expiry (timeout + 60 s) as short as it gets
    world.reconfigure(delivery={"job_timeout": 5}, reconcile={"interval_seconds": 2})
    world.zoho.delay(10, method="POST", path="/tickets", after=True, times=1)
    record = world.submit()
    world.enqueue(record)
    first = background_workers("first")
    wait_until(lambda: created_in_zoho(world, record), 20, interval=0.02, what="the create reached Zoho")
    first.kill()  # worker, scheduler and work horse: nothing is left to finish the job
    killed_at = time.time()
    job_id = delivery_job_id(record.id)
    assert job_status(world.redis, job_id) == JobStatus.STARTED
    assert job_id in StartedJobRegistry(ZOHO_QUEUE, connection=world.redis).get_job_ids()

    # the replacement worker is started once the dead scheduler's lock (61 s) is gone, after
    # the job's heartbeat expired, which is what this test is about (a worker started at once
    # takes the lock over too: workers/scheduler.py, tests/faults/test_scheduler_restart.py)
    wait_until(lambda: not world.redis.exists(f"rq:scheduler-lock:{ZOHO_QUEUE}"), 70, interval=0.5,
               what="the dead scheduler's lock expired")
    second = background_workers("second")
    Queue(ZOHO_QUEUE, connection=world.redis).enqueue(RECONCILE)  # what start_periodic_jobs does
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 60, interval=0.5,
               what="delivery after RQ's heartbeat expiry")
    assert time.time() - killed_at >= 55  # RQ waited for the job's heartbeat to expire
    assert len(created_in_zoho(world, record)) == 1
    assert len(world.zoho.calls("POST", "/tickets")) == 1
    assert "abandoned zoho jobs handed back to RQ" in second.log()


def test_a_pending_ticket_without_a_job_is_queued_by_the_reconciler(world):
    record = world.submit()  # recorded, but the submit turn could not reach the queue
    queue = Queue(ZOHO_QUEUE, connection=world.redis)
    queue.enqueue(RECONCILE)
    queue.enqueue(RECONCILE)  # two passes (two workers starting): still one delivery

    run_burst(world.env)

    assert world.ledger.get(record.id).state == DELIVERED
    assert len(created_in_zoho(world, record)) == 1
    assert [t.entities["reference"] for t in world.rasa.triggered("EXTERNAL_ticket_delivered")] == [record.reference]


def test_a_delivered_ticket_nobody_announced_is_announced_by_the_reconciler(world):
    # the submit turn died while it waited: it neither answered the number nor handed it over
    record = world.submit(announce_by_worker=False)
    world.enqueue(record)
    run_burst(world.env)
    assert world.ledger.get(record.id).state == DELIVERED
    assert world.rasa.triggered() == []

    Queue(ZOHO_QUEUE, connection=world.redis).enqueue(RECONCILE)
    run_burst(world.env)

    [told] = world.rasa.triggered("EXTERNAL_ticket_delivered")
    assert told.entities["reference"] == record.reference
    assert world.ledger.get(record.id).announce == "worker"
    Queue(ZOHO_QUEUE, connection=world.redis).enqueue(RECONCILE)
    run_burst(world.env)
    assert len(world.rasa.triggered()) == 1  # told once


def test_a_job_rq_gave_up_on_is_a_dead_letter_with_a_human_told(world):
    record = world.submit()
    job = world.enqueue(record)
    # what RQ does when the horse died in every run: the job ends in the failed registry
    queue = Queue(ZOHO_QUEUE, connection=world.redis)
    queue.remove(job.id)
    job.set_status(JobStatus.FAILED)
    FailedJobRegistry(ZOHO_QUEUE, connection=world.redis).add(job, exc_string="Work-horse terminated unexpectedly")
    assert Job.fetch(job.id, connection=world.redis).get_status() == JobStatus.FAILED

    queue.enqueue(RECONCILE)
    run_burst(world.env)

    failed = world.ledger.get(record.id)
    assert failed.state == FAILED and failed.failure_kind == "crashed"
    [notice] = world.ledger.human_notices()
    assert notice["kind"] == "ticket_crashed" and record.reference in notice["text"]
    assert "se interrumpió en cada intento" in notice["text"]
    assert world.zoho.tickets == {}
