"""The RQ worker process: jobs run with the correlation id of the message that caused them."""
import os
import subprocess
import sys

from rq import Queue

from tests.conftest import PROJECT
from tests.stack import json_lines
from helpdesk import queues


def test_worker_runs_jobs_with_their_correlation_id(redis_url, redis_client, tmp_path):
    queue = Queue(queues.ZOHO, connection=redis_client)
    job = queue.enqueue(
        "tests.integration.worker_jobs.remember_correlation_id",
        redis_url,
        "test:seen-correlation",
        meta={"correlation_id": "corr-1234"},
    )
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(PROJECT),
        "WORKER_HEALTH_PORT": "0",
    }
    finished = subprocess.run(
        [sys.executable, "-m", "workers.worker", "--burst"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert redis_client.get("test:seen-correlation") == b"corr-1234"
    job.refresh()
    assert job.get_status() == "finished"
    lines = json_lines(finished.stderr)
    assert any(e.get("msg") == "job ran" and e.get("correlation_id") == "corr-1234" for e in lines)
