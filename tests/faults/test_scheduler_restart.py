"""Drill: a worker killed with SIGKILL (worker, scheduler and work horse, as a crash or a
supervisor's kill does) and started again at once; then Zoho fails a create.

Must hold: the retry RQ schedules 5 s later runs on time, with the restarted worker running
the scheduler. Before workers/scheduler.py, RQ 1.16's scheduler lock (`rq:scheduler-lock:<queue>`,
61 s) still named the dead worker, the new worker did not run a scheduler, and it tried the lock
again only at its maintenance (after a 405 s idle wait): the retry ran minutes late. The same
wait kept a running worker from taking the scheduler over when the one running it stopped.

Real RQ workers started as `make run` starts them (`python -m workers.worker`), the session's
Redis, fake Zoho Desk on loopback.
"""
import os
import signal
import time

import pytest
from rq import Queue
from rq.worker import Worker

from helpdesk.tickets import DELIVERED
from helpdesk.zoho import ZOHO_QUEUE
from tests.workers.zoho_support import background_workers, wait_until, world  # noqa: F401
from workers.scheduler import process_is_gone

LOCK = f"rq:scheduler-lock:{ZOHO_QUEUE}"


def _registered(world, worker):
    return any(w.pid == worker.process.pid for w in Worker.all(connection=world.redis))


@pytest.mark.parametrize("killed", ["everything", "the worker process alone"])
def test_a_retry_runs_on_time_after_the_worker_was_killed_and_started_again(world, background_workers, killed):
    world.reconfigure(delivery={"retry_intervals": [5]})
    first = background_workers("first")
    wait_until(lambda: world.redis.get(LOCK) == str(first.process.pid).encode(), 60, interval=0.2,
               what="the first worker runs the scheduler")
    if killed == "everything":
        first.kill()
    else:  # its scheduler process ends with it: no orphan moving jobs next to the new one
        [scheduler] = [pid for pid in first.children() if os.getsid(pid) != pid]  # not a work horse
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        wait_until(lambda: process_is_gone(scheduler), 10, what="the scheduler process ended with its worker")
    assert world.redis.exists(LOCK)  # left behind by the dead worker

    second = background_workers("second")  # a supervisor restarting it within seconds
    wait_until(lambda: _registered(world, second), 60, interval=0.2, what="the second worker started")
    world.zoho.fail(1, 503, method="POST", path="/tickets")
    record = world.submit()
    world.enqueue(record)
    wait_until(lambda: world.zoho.calls("POST", "/tickets"), 30, interval=0.05, what="the first create")
    failed_at = time.time()

    # the retry is due 5 s after the failure: it runs within seconds of that, not minutes
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, interval=0.2,
               what="the retry scheduled 5 s after the failure ran")
    assert time.time() - failed_at >= 4  # it was the scheduled retry, not an immediate one
    assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert world.redis.get(LOCK) == str(second.process.pid).encode()
    assert Queue(ZOHO_QUEUE, connection=world.redis).count == 0


def test_when_the_worker_running_the_scheduler_stops_a_running_worker_takes_it_over(world, background_workers):
    # RQ tried the lock again only at its maintenance: an idle worker after a 405 s wait
    world.reconfigure(delivery={"retry_intervals": [5]})
    first = background_workers("first")
    wait_until(lambda: world.redis.get(LOCK) == str(first.process.pid).encode(), 60, interval=0.2,
               what="the first worker runs the scheduler")
    second = background_workers("second")
    wait_until(lambda: _registered(world, second), 60, interval=0.2, what="the second worker started")
    first.stop()  # SIGTERM: a warm shutdown that releases the lock

    world.zoho.fail(1, 503, method="POST", path="/tickets")
    record = world.submit()
    world.enqueue(record)
    wait_until(lambda: world.zoho.calls("POST", "/tickets"), 30, interval=0.05, what="the first create")
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, 20, interval=0.2,
               what="the retry scheduled 5 s after the failure ran")
    assert world.redis.get(LOCK) == str(second.process.pid).encode()
    assert len(world.zoho.tickets_with_ref(record.id)) == 1
