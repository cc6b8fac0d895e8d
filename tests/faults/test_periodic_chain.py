"""Drill: the work horse running a periodic Zoho job is killed with SIGKILL in the middle of
its pass (the worker itself lives on).

Must hold: the chain goes on: the next time slot still runs. Before workers/zoho_periodic.py
scheduled the successor first, it was scheduled in `finally`, which a killed process never
reaches: the chain ended until a worker restarted.

The status poller is stalled on a fake Zoho Desk that holds `GET /tickets/<id>`; the reconciler,
which calls no Zoho API, is stalled on the ledger: the drill holds SQLite's write lock while the
pass claims the announcement of a delivered ticket nobody told; the retention job (once a day,
workers/retention_jobs.py) likewise while it redacts an old ticket. A real RQ worker
(`python -m workers.worker`), the session's Redis.
"""
import os
import signal
import sqlite3
import subprocess
import time
from typing import List, Optional

from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from helpdesk import queues, redis_keys
from helpdesk.config import retention_config
from helpdesk.tickets import DELIVERED
from helpdesk.zoho import delivery_job_id
from tests.conftest import PROJECT
from tests.workers.zoho_support import BackgroundWorker, background_workers, run_burst, wait_until, world  # noqa: F401
from tests.workers.zoho_support import worker_command

POLL, RECONCILE = "zoho-poll-statuses", "zoho-reconcile"


def _slot_jobs(world, name: str, status: Optional[str] = None) -> List[int]:
    """Slots of the periodic job `name` known to RQ (with that status), oldest first."""
    prefix = f"rq:job:{name}-"
    slots = []
    for key in world.redis.scan_iter(f"{prefix}*"):
        suffix = key.decode()[len(prefix):]
        if not suffix.isdigit():
            continue
        job = Job.fetch(f"{name}-{suffix}", connection=world.redis)
        if status is None or job.get_status() == status:
            slots.append(int(suffix))
    return sorted(slots)


def _stalled_slot(world, name: str) -> int:
    """A slot whose run is stuck in its pass: started, past its once-per-slot marker, and
    still there a second later (a pass that is not stalled takes milliseconds)."""
    seen = {}

    def check() -> Optional[int]:
        for slot in _slot_jobs(world, name, JobStatus.STARTED):
            if world.redis.exists(redis_keys.periodic_run(f"{name}-{slot}")):
                if time.monotonic() - seen.setdefault(slot, time.monotonic()) >= 1:
                    return slot
        return None

    return wait_until(check, 40, interval=0.05, what=f"a {name} pass stalled")


def _work_horse(worker) -> int:
    """The worker's work horse: RQ forks it into a session of its own."""
    for pid in worker.children():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                session = int(handle.read().rsplit(")", 1)[1].split()[3])
        except OSError:
            continue
        if session == pid:
            return pid
    raise AssertionError("no work horse")


def _kill_mid_pass_and_see_the_next_slot(world, worker, name: str, release) -> None:
    slot = _stalled_slot(world, name)
    os.kill(_work_horse(worker), signal.SIGKILL)
    wait_until(lambda: Job.fetch(f"{name}-{slot}", connection=world.redis).get_status() == JobStatus.FAILED,
               20, what="the worker saw its work horse die")
    release()
    wait_until(lambda: [s for s in _slot_jobs(world, name, JobStatus.FINISHED) if s > slot], 30, interval=0.2,
               what=f"a {name} slot after the killed one ran")


def test_the_status_poller_goes_on_after_its_work_horse_is_killed_mid_pass(world, background_workers):
    world.reconfigure(status_polling={"interval_seconds": 2}, delivery={"read_timeout": 60})
    record = world.submit(announce_by_worker=False)
    world.enqueue(record)
    run_burst(world.env)
    record = world.ledger.get(record.id)
    assert record.state == DELIVERED
    stall = world.zoho.delay(60, method="GET", path=f"/tickets/{record.zoho_ticket_id}")
    worker = background_workers()  # its start-up schedules the poller's first slot

    def release():
        world.zoho.rules.remove(stall)

    _kill_mid_pass_and_see_the_next_slot(world, worker, POLL, release)
    assert len(world.zoho.calls("GET", f"/tickets/{record.zoho_ticket_id}")) >= 2  # it polled again


def test_the_reconciler_goes_on_after_its_work_horse_is_killed_mid_pass(world, background_workers):
    # a delivered ticket nobody told is claimed by the first pass 6 s after its delivery
    world.reconfigure(reconcile={"interval_seconds": 2, "grace_seconds": 0, "announce_after_seconds": 6})
    worker = background_workers()
    record = world.submit(announce_by_worker=False)
    world.enqueue(record)
    wait_until(lambda: Job.fetch(delivery_job_id(record.id), connection=world.redis).get_status()
               == JobStatus.FINISHED, 40, interval=0.05, what="delivered by the worker")
    assert world.ledger.get(record.id).state == DELIVERED
    ledger = sqlite3.connect(os.environ["DATABASE_URL"][len("sqlite:///"):], isolation_level=None)
    ledger.execute("BEGIN IMMEDIATE")  # the pass's claim of the announcement waits for this lock

    def release():
        if ledger.in_transaction:
            ledger.execute("ROLLBACK")

    try:
        _kill_mid_pass_and_see_the_next_slot(world, worker, RECONCILE, release)
    finally:
        release()
        ledger.close()
    wait_until(lambda: world.rasa.triggered("EXTERNAL_ticket_delivered"), 30, what="the reporter told")


def test_the_retention_job_schedules_its_next_day_even_when_killed_mid_pass(world, tmp_path):
    record = world.submit()
    world.ledger.mark_failed(record.id, "rejected")
    with world.ledger.engine.begin() as connection:  # a ticket old enough to be redacted
        connection.exec_driver_sql("UPDATE tickets SET created_at = ? WHERE id = ?", (1000.0, record.id))
    interval = retention_config().interval_seconds
    own = int(time.time() // interval)
    Queue(queues.DEFAULT, connection=world.redis).enqueue(queues.RUN_RETENTION, job_id=f"retention-{own}")
    ledger = sqlite3.connect(os.environ["DATABASE_URL"][len("sqlite:///"):], isolation_level=None)
    ledger.execute("BEGIN IMMEDIATE")  # the pass's redaction waits for this lock
    # a burst worker: its start-up schedules no periodic job, only the run above can
    worker = BackgroundWorker(world.env, tmp_path / "burst.log")
    log = open(worker.log_path, "ab")
    worker.process = subprocess.Popen(worker_command(True), cwd=PROJECT, env=world.env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        slot = _stalled_slot(world, "retention")
        assert slot == own
        os.kill(_work_horse(worker), signal.SIGKILL)
        wait_until(lambda: Job.fetch(f"retention-{own}", connection=world.redis).get_status() == JobStatus.FAILED,
                   20, what="the worker saw its work horse die")
    finally:
        ledger.execute("ROLLBACK")
        ledger.close()
        worker.stop()
    scheduled = ScheduledJobRegistry(queues.DEFAULT, connection=world.redis)
    assert scheduled.get_job_ids() == [f"retention-{own + 1}"]
