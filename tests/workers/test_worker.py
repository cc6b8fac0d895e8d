"""Worker start-up (workers/worker.py `prepare`) against the session's real Redis and the test's
ledger: the retention job scheduled once, and opt-outs put back into a Redis that lost them."""
import os

from rq.registry import ScheduledJobRegistry

from helpdesk import queues, redis_keys
from helpdesk.tickets import Ledger
from workers import retention_jobs
from workers.worker import prepare


def test_start_up_schedules_retention_and_restores_opt_outs(monkeypatch, redis_url, redis_client):
    monkeypatch.setenv("REDIS_URL", redis_url)
    retention_jobs._ledger.cache_clear()
    Ledger(os.environ["DATABASE_URL"]).record_opt_out("5491122334455")  # Redis lost the set

    prepare(redis_client, burst=False)
    prepare(redis_client, burst=False)  # a second worker starting

    scheduled = ScheduledJobRegistry(queues.DEFAULT, connection=redis_client).get_job_ids()
    assert len([job_id for job_id in scheduled if job_id.startswith("retention-")]) == 1
    assert redis_client.sismember(redis_keys.opted_out_set(), "5491122334455")
    retention_jobs._ledger.cache_clear()
