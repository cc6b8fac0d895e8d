"""Every job path in helpdesk/queues.py names a function RQ can import (jobs already queued
in Redis carry these strings), and every queue a job goes to is one a worker serves."""
import importlib

from helpdesk import queues
from helpdesk.chatwoot import outbox as chatwoot_outbox
from helpdesk import followups, handoff
from helpdesk.zoho import queue as zoho_queue


def test_every_job_path_resolves_to_a_function():
    for path in queues.JOBS:
        module, name = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), path


def test_the_modules_that_queue_jobs_use_these_paths_and_queues():
    assert {zoho_queue.DELIVER, zoho_queue.ADD_TO_TICKET, zoho_queue.ANNOUNCE_DELIVERED,
            zoho_queue.ANNOUNCE_STATUS, followups.STEP_JOB, followups.CLOSE_JOB, handoff.RESUME_JOB,
            chatwoot_outbox.DRAIN_JOB} <= set(queues.JOBS)
    assert {zoho_queue.ZOHO_QUEUE, zoho_queue.DEFAULT_QUEUE, followups.QUEUE, handoff.RESUME_QUEUE,
            chatwoot_outbox.QUEUE} <= set(queues.ALL)
