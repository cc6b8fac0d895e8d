"""Drill: RQ workers whose machine clocks are 20 s off, scheduling and running what is due.

Must hold: a job is due by one clock, whichever process scheduled it and whichever runs RQ's
scheduler. A follow-up the action server schedules 8 s ahead is not run before those 8 s by a
scheduler whose clock is 20 s ahead; a Zoho retry a work horse whose clock is 20 s behind
schedules 8 s after a failure is not sent at once by the scheduler of an accurate worker.

Before workers/scheduler.py's RedisClockJob and Scheduler (and helpdesk/followups.py taking its
due time from Redis), each side read its own clock: the follow-up ran as soon as it was
scheduled and the retry hit Zoho again within a second of the failure. Now every due time and
every "now" is the Redis server's `TIME`.

Real RQ workers (`python -m workers.worker`) run under libfaketime (Debian's `faketime`,
installed by `make setup`), which shifts the process's real-time clock as a wrong system
clock would, for everything in it: Python's `time.time`, `datetime.now`, RQ's own timestamps.
The Redis server and this test run on the true clock. Fake Zoho Desk on loopback.
"""
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rq.registry import ScheduledJobRegistry

from helpdesk import followups, queues
from helpdesk.clock import redis_now
from helpdesk.config import followup_config
from helpdesk.tickets import DELIVERED
from helpdesk.zoho import ZOHO_QUEUE
from tests.workers.zoho_support import BackgroundWorker, run_burst, wait_until, world  # noqa: F401 - fixture

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW_SECONDS = 20
DUE_IN = 8
SCHEDULER_LOCK = "rq:scheduler-lock:{}"


def _skewed(env: dict, seconds: int) -> dict:
    if not LIBFAKETIME.exists():
        pytest.fail("libfaketime is not installed: run `make setup`")
    return {**env, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def workers(world):
    started = []

    def start(name: str, skew: int = 0) -> BackgroundWorker:
        env = _skewed(world.env, skew) if skew else dict(world.env)
        worker = BackgroundWorker(env, world.tmp / f"{name}.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _runs_the_scheduler(world, worker: BackgroundWorker, queue: str) -> bool:
    return world.redis.get(SCHEDULER_LOCK.format(queue)) == str(worker.process.pid).encode()


def test_a_scheduler_twenty_seconds_ahead_runs_a_follow_up_when_it_is_due(world, workers):
    ahead = workers("ahead", skew=SKEW_SECONDS)
    wait_until(lambda: _runs_the_scheduler(world, ahead, queues.FOLLOWUPS), 60, interval=0.2,
               what="the skewed worker runs the scheduler")
    options = replace(followup_config(), reask_delay=DUE_IN, thread_timeout=600)
    conversation = "5491100000077@c.us"
    assert followups.after_turn(world.redis, conversation, "msg-anchor-1", True, options=options) == "scheduled"
    scheduled_at = redis_now(world.redis)
    job_id = followups.pending(world.redis, conversation)["job"]
    registry = ScheduledJobRegistry(queues.FOLLOWUPS, connection=world.redis)

    # the scheduler looks every second: three of its passes see the job not due yet
    time.sleep(3)
    assert job_id in registry.get_job_ids(), "the follow-up was moved to its queue before it was due"
    wait_until(lambda: job_id not in registry.get_job_ids(), DUE_IN + 10, interval=0.1,
               what="the follow-up was moved to its queue once due")
    assert redis_now(world.redis) - scheduled_at >= DUE_IN - 1
    followups.cancel(world.redis, conversation)


def test_a_retry_scheduled_by_a_work_horse_twenty_seconds_behind_waits_its_interval(world, workers):
    world.reconfigure(delivery={"retry_intervals": [DUE_IN]})
    world.zoho.fail(1, 503, method="POST", path="/tickets")
    record = world.submit()
    world.enqueue(record)
    # the delivery runs in a worker whose clock is 20 s behind: Zoho fails it, a retry is due
    run_burst(_skewed(world.env, -SKEW_SECONDS))
    assert len(world.zoho.calls("POST", "/tickets")) == 1

    # an accurate worker runs the scheduler that moves the retry when it is due
    workers("accurate")
    wait_until(lambda: world.ledger.get(record.id).state == DELIVERED, DUE_IN + 30, interval=0.1,
               what="the retry delivered the ticket")
    first, retry = world.zoho.calls("POST", "/tickets")  # times by fake Zoho's (true) clock
    assert retry.at - first.at >= DUE_IN - 1, "the retry did not wait its interval"
    assert len(world.zoho.tickets_with_ref(record.id)) == 1
