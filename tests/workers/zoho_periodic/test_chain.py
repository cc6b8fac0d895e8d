"""The periodic chain (workers/zoho_periodic.py): a run schedules the slot after its own,
before its pass. A worker whose clock is behind the scheduler's (the run starts "before" its
slot by that clock) still schedules the next slot, not its own again."""
import time

from rq import Queue
from rq.registry import ScheduledJobRegistry

from helpdesk.zoho import ZOHO_QUEUE
from tests.workers.zoho_support import run_burst, world  # noqa: F401
from workers.zoho_periodic import POLL_STATUSES, RECONCILE

FUNCTIONS = {RECONCILE: "workers.zoho_periodic.reconcile_deliveries",
             POLL_STATUSES: "workers.zoho_periodic.poll_ticket_statuses"}


def test_a_run_schedules_the_slot_after_its_own_whatever_this_worker_s_clock(world):
    world.reconfigure(reconcile={"interval_seconds": 60}, status_polling={"interval_seconds": 60})
    own = int(time.time() // 60) + 100  # slots ahead of this clock: a clock 100 minutes behind
    queue = Queue(ZOHO_QUEUE, connection=world.redis)
    for name, function in FUNCTIONS.items():
        queue.enqueue(function, job_id=f"{name}-{own}")
    run_burst(world.env)
    scheduled = set(ScheduledJobRegistry(ZOHO_QUEUE, connection=world.redis).get_job_ids())
    assert {f"{RECONCILE}-{own + 1}", f"{POLL_STATUSES}-{own + 1}"} <= scheduled
    assert not {f"{RECONCILE}-{own}", f"{POLL_STATUSES}-{own}"} & scheduled
