"""The Chatwoot outbox's own guarantees on the real Redis: head first, popped only after
success, one drainer at a time, a dead drainer's retry takes its claim back, an attempt cut
short by SIGKILL still counts, refused entries set aside."""
import os
import signal
import subprocess
import sys
import time

import pytest
from rq import Queue

from helpdesk import redis_keys
from helpdesk.config import load_chatwoot_config
from helpdesk.chatwoot import ChatwootOutbox, PermanentFailure
from tests.conftest import PROJECT

CONVERSATION = "5491122334455"
OPTIONS = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")


@pytest.fixture
def outbox(redis_client):
    return ChatwootOutbox(redis_client, OPTIONS)


def fill(outbox, count):
    return [outbox.append(CONVERSATION, {"kind": "note", "text": f"n{i}"}, f"corr-{i}") for i in range(count)]


def jobs(redis_client):
    return [(j.func_name, j.args, j.meta.get("correlation_id"))
            for j in Queue("chatwoot", connection=redis_client).get_jobs()]


def test_one_queued_drain_job_per_conversation(outbox, redis_client):
    ids = fill(outbox, 3)

    assert [e["id"] for e in outbox.pending(CONVERSATION)] == ids
    assert jobs(redis_client) == [("workers.chatwoot_jobs.drain_outbox", (CONVERSATION,), "corr-0")]
    assert Queue("chatwoot", connection=redis_client).get_jobs()[0].retries_left == len(OPTIONS.retry_intervals)

    # once the job has started, a new entry queues a new job
    outbox.drain(CONVERSATION, lambda e, a: None, "job-1")
    outbox.append("5491199887766", {"kind": "note", "text": "otra"}, "corr-x")
    outbox.append(CONVERSATION, {"kind": "note", "text": "n3"}, "corr-3")
    assert jobs(redis_client)[1:] == [("workers.chatwoot_jobs.drain_outbox", ("5491199887766",), "corr-x"),
                                      ("workers.chatwoot_jobs.drain_outbox", (CONVERSATION,), "corr-3")]


def test_a_later_drain_job_is_scheduled_with_its_full_retries(outbox, redis_client):
    job_id = outbox.kick(CONVERSATION, "corr-9", delay=30)

    queue = Queue("chatwoot", connection=redis_client)
    assert queue.get_jobs() == []
    assert queue.scheduled_job_registry.get_job_ids() == [job_id]
    job = queue.fetch_job(job_id)
    assert (job.func_name, job.args, job.kwargs) == ("workers.chatwoot_jobs.drain_outbox", (CONVERSATION,), {})
    assert (job.timeout, job.retries_left, job.meta) == (OPTIONS.job_timeout, len(OPTIONS.retry_intervals),
                                                         {"correlation_id": "corr-9"})


def test_a_failure_keeps_the_head_and_counts_the_attempt(outbox, redis_client):
    fill(outbox, 3)
    seen = []

    def flaky(entry, attempts):
        seen.append((entry["text"], attempts))
        if entry["text"] == "n1" and attempts == 0:
            raise ConnectionError("chatwoot down")

    with pytest.raises(ConnectionError):
        outbox.drain(CONVERSATION, flaky, "job-1")
    assert [e["text"] for e in outbox.pending(CONVERSATION)] == ["n1", "n2"]
    assert not redis_client.exists(redis_keys.chatwoot_outbox_lock(CONVERSATION))

    assert outbox.drain(CONVERSATION, flaky, "job-1") == 2
    assert seen == [("n0", 0), ("n1", 0), ("n1", 1), ("n2", 0)]
    assert outbox.pending(CONVERSATION) == []
    assert not redis_client.exists(redis_keys.chatwoot_outbox_attempts(CONVERSATION))


def test_one_drainer_at_a_time_and_a_retry_takes_its_claim_back(outbox, redis_client):
    fill(outbox, 1)
    redis_client.set(redis_keys.chatwoot_outbox_lock(CONVERSATION), "job-dead", px=60_000)
    handled = []

    assert outbox.drain(CONVERSATION, lambda e, a: handled.append(e["text"]), "job-other") == 0
    assert handled == []
    # RQ retries the job whose worker died under the same id: it goes on at once
    assert outbox.drain(CONVERSATION, lambda e, a: handled.append(e["text"]), "job-dead") == 1
    assert handled == ["n0"]


def test_entries_added_while_draining_are_drained_by_the_same_job(outbox):
    fill(outbox, 1)
    handled = []

    def handle(entry, attempts):
        handled.append(entry["text"])
        if len(handled) < 3:
            outbox.append(CONVERSATION, {"kind": "note", "text": f"later{len(handled)}"})

    assert outbox.drain(CONVERSATION, handle, "job-1") == 3
    assert handled == ["n0", "later1", "later2"]


def test_refused_entries_are_set_aside_and_the_rest_goes_on(outbox):
    fill(outbox, 3)

    def handle(entry, attempts):
        if entry["text"] == "n0":
            raise PermanentFailure("HTTP 422 Content is too long")

    assert outbox.drain(CONVERSATION, handle, "job-1") == 3
    dead = outbox.dead_letters()
    assert [(d["conversation_id"], d["entry"]["text"], d["error"]) for d in dead] == [
        (CONVERSATION, "n0", "HTTP 422 Content is too long")]
    assert outbox.pending(CONVERSATION) == []


DRAINER = """
import sys, time, redis
from pathlib import Path
from helpdesk.config.chatwoot import load_chatwoot_config
from helpdesk.chatwoot.outbox import ChatwootOutbox
outbox = ChatwootOutbox(redis.Redis.from_url(sys.argv[1]), load_chatwoot_config(Path("config/chatwoot.yml")))
def write_slowly(entry, attempts):
    print("writing", flush=True)
    time.sleep(60)
outbox.drain(sys.argv[2], write_slowly, "job-killed")
"""


def test_an_attempt_cut_short_by_sigkill_still_counts(outbox, redis_client, redis_url):
    """The next try must look for the write before making it again."""
    fill(outbox, 1)
    process = subprocess.Popen([sys.executable, "-c", DRAINER, redis_url, CONVERSATION], cwd=PROJECT,
                               env={**os.environ, "PYTHONPATH": str(PROJECT)},
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "writing"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()

    assert redis_client.get(redis_keys.chatwoot_outbox_lock(CONVERSATION)) == b"job-killed"
    attempts = []
    started = time.monotonic()
    assert outbox.drain(CONVERSATION, lambda e, a: attempts.append(a), "job-killed") == 1
    assert attempts == [1]
    assert time.monotonic() - started < 5


def test_a_head_failing_with_a_bug_is_parked_after_its_attempts_and_the_rest_goes_on(outbox, redis_client):
    """Not a Chatwoot failure (a KeyError of bad data): tried `poison_attempts` times, then
    parked in the dead letters; the entries behind it follow in order. Replay puts it back."""
    ids = fill(outbox, 3)
    done = []

    def handle(entry, attempts):
        if entry["id"] == ids[1]:
            raise KeyError("direction")
        done.append(entry["text"])

    for _ in range(OPTIONS.poison_attempts - 1):  # each try is a job run RQ retries
        with pytest.raises(KeyError):
            outbox.drain(CONVERSATION, handle, "job-1")
        assert [e["id"] for e in outbox.pending(CONVERSATION)] == ids[1:]
    assert outbox.dead_letters() == []

    assert outbox.drain(CONVERSATION, handle, "job-1") == 2
    assert done == ["n0", "n2"]
    assert outbox.pending(CONVERSATION) == []
    [dead] = outbox.dead_letters()
    assert (dead["conversation_id"], dead["entry"]["id"], dead["parked"]) == (CONVERSATION, ids[1], True)
    assert dead["error"] == "KeyError: 'direction'"
    assert redis_client.hgetall(redis_keys.chatwoot_outbox_attempts(CONVERSATION)) == {}

    assert outbox.replay(ids[1]) == CONVERSATION
    assert outbox.dead_letters() == []
    assert [e["id"] for e in outbox.pending(CONVERSATION)] == [ids[1]]
    with pytest.raises(LookupError):
        outbox.replay(ids[1])


def test_a_chatwoot_failure_at_the_head_is_never_parked(outbox):
    from helpdesk.chatwoot import ChatwootUnavailable

    ids = fill(outbox, 2)

    def down(entry, attempts):
        raise ChatwootUnavailable("503 from chatwoot")

    for _ in range(OPTIONS.poison_attempts + 2):
        with pytest.raises(ChatwootUnavailable):
            outbox.drain(CONVERSATION, down, "job-1")
    assert [e["id"] for e in outbox.pending(CONVERSATION)] == ids
    assert outbox.dead_letters() == []


def test_the_recovery_pass_queues_a_drain_job_only_where_none_is_live(outbox, redis_client):
    fill(outbox, 2)  # its drain job is queued: live
    assert outbox.recover("7") == []

    queue = Queue("chatwoot", connection=redis_client)
    for job in queue.get_jobs():  # the job used its retries
        job.set_status("failed")
    assert outbox.recover("8") == [CONVERSATION]
    assert "chatwoot-recover-8-" + CONVERSATION in queue.get_job_ids()
    assert outbox.recover("8") == [] and outbox.recover("9") == []  # that job is live now

    outbox.drain(CONVERSATION, lambda e, a: None, "job-2")  # an empty outbox needs nothing
    queue.empty()
    assert outbox.recover("10") == []
