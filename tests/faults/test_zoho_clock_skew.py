"""Drill: two Zoho workers whose clocks disagree by 15 s, and a create whose answer was lost.

Must hold: one ticket. Worker A sends the create, Zoho makes the ticket and answers 504;
worker B, whose clock runs 15 s ahead, runs the retry while Zoho's search does not show the
ticket yet (it lags 5 s). B may create again only `search_settle_seconds` (10 s) after A's
create, and it must measure those 10 s on the same clock A marked the create with.

Before, A marked the create with its own clock and B compared it with its own: by B's clock
the 10 s were over 1.5 s after the create, its search found nothing, and it made a second
ticket. Now the mark and the check read the Redis server's clock (`TIME`).

Real RQ workers (processes) on the session's Redis, fake Zoho on loopback; B's clock is
skewed the way the code read time before (its `time.time`), set before anything is imported.
"""
import os
import signal
import subprocess
import sys
import time

from rq.job import Job
from rq.registry import ScheduledJobRegistry

from helpdesk.tickets import DELIVERED
from helpdesk.zoho import ZOHO_QUEUE, delivery_job_id
from tests.conftest import PROJECT
from tests.workers.zoho_support import run_burst, wait_until, world  # noqa: F401 - fixtures

SKEW_SECONDS = 15
SKEWED_WORKER = (f"import time; _real = time.time; time.time = lambda: _real() + {SKEW_SECONDS}; "
                 "import sys; from workers.worker import main; main(sys.argv[1:])")


def _due_at(redis_client, job_id: str) -> float:
    registry = ScheduledJobRegistry(ZOHO_QUEUE, connection=redis_client)
    assert job_id in registry.get_job_ids(), "the retry is not scheduled"
    return registry.get_expiration_time(Job.fetch(job_id, connection=redis_client)).timestamp()


def test_two_workers_fifteen_seconds_apart_make_one_ticket(world, tmp_path):
    world.reconfigure(delivery={"retry_intervals": [1], "search_settle_seconds": 10})
    world.zoho.search_lag = 5.0
    world.zoho.fail(1, status=504, method="POST", path="/tickets", after=True)
    record = world.submit()
    world.enqueue(record)

    run_burst(world.env)  # worker A: the create reaches Zoho, its answer is lost
    assert len(world.zoho.tickets_with_ref(record.id)) == 1
    assert world.ledger.get(record.id).create_sent_at
    time.sleep(max(0.0, _due_at(world.redis, delivery_job_id(record.id)) - time.time()) + 0.1)

    # worker B, 15 s ahead, runs the retry (and whatever follows) until the ticket is delivered
    log = open(tmp_path / "skewed-worker.log", "ab")
    skewed = subprocess.Popen([sys.executable, "-c", SKEWED_WORKER], cwd=PROJECT, env=world.env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_until(lambda: world.ledger.get(record.id).state == DELIVERED
                   or len(world.zoho.tickets_with_ref(record.id)) > 1, 60, what="delivery or a second ticket")
    finally:
        os.killpg(skewed.pid, signal.SIGTERM)
        try:
            skewed.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(skewed.pid, signal.SIGKILL)
            skewed.wait(5)

    tickets = world.zoho.tickets_with_ref(record.id)
    assert len(tickets) == 1, (tmp_path / "skewed-worker.log").read_text(errors="replace")[-3000:]
    assert len(world.zoho.calls("POST", "/tickets")) == 1
    delivered = world.ledger.get(record.id)
    assert delivered.state == DELIVERED and delivered.zoho_ticket_id == tickets[0]["id"]
    # B searched, was told to wait for the settle time, and adopted what the search found later
    assert len(world.zoho.calls("GET", "/tickets/search")) >= 2


def _burst(env, skew: float) -> None:
    command = SKEWED_WORKER.replace(str(SKEW_SECONDS), repr(float(skew)), 1)
    finished = subprocess.run([sys.executable, "-c", command, "--burst"], cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]


def test_an_addition_waiting_for_its_ticket_is_not_given_up_by_a_worker_60_s_ahead(world):
    # the first run (a worker whose clock is 60 s behind) notes when the addition began waiting;
    # the next run, by a worker on time, must not think it has waited 60 s of its 30 already
    from helpdesk.config import zoho_config  # after reconfigure: this process's config cache is new
    from helpdesk.zoho import enqueue_addition

    world.reconfigure(additions={"wait_for_delivery_seconds": 1, "max_wait_seconds": 30})
    record = world.submit()  # never enqueued for delivery: it stays pending
    job_id = enqueue_addition(world.redis, record.id, zoho_config(), comment_text="ahora tampoco imprime",
                              addition_id="msg-2").id

    _burst(world.env, -60)
    time.sleep(max(0.0, _due_at(world.redis, job_id) - time.time()) + 0.1)
    _burst(world.env, 0)

    assert world.ledger.human_notices() == []  # nobody told it failed
    assert job_id in ScheduledJobRegistry(ZOHO_QUEUE, connection=world.redis).get_job_ids()  # still waiting
