"""Which scheduler locks a starting worker releases (workers/scheduler.py), against the
session's real Redis and RQ's own worker records: only a lock whose holder is an RQ worker of
this host that no longer exists; never a live holder, another host's, or an unknown pid."""
import os
import socket
import subprocess
import sys
import time

from rq import Queue
from rq.scheduler import RQScheduler
from rq.worker import Worker

from workers.scheduler import process_is_gone, release_dead_holders

QUEUES = ("zoho", "chatwoot", "followups", "default")


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def _registered(redis_client, name, pid, hostname=None):
    """An RQ worker record as a worker of that pid writes it at its birth."""
    worker = Worker([Queue("zoho", connection=redis_client)], connection=redis_client, name=name)
    worker.register_birth()
    redis_client.hset(worker.key, mapping={"pid": pid, "hostname": hostname or socket.gethostname()})
    return worker


def _lock(redis_client, queue, pid):
    redis_client.set(RQScheduler.get_locking_key(queue), pid, ex=61)


def _held(redis_client):
    return {q for q in QUEUES if redis_client.exists(RQScheduler.get_locking_key(q))}


def test_a_lock_of_a_dead_worker_of_this_host_is_released_and_no_other(redis_client):
    dead, alive = _dead_pid(), os.getppid()
    _registered(redis_client, "dead-here", dead)
    _registered(redis_client, "alive-here", alive)
    _registered(redis_client, "elsewhere", dead, hostname="another-host")
    _lock(redis_client, "zoho", dead)  # the dead worker of this host (and a same pid elsewhere)
    _lock(redis_client, "chatwoot", alive)
    _lock(redis_client, "followups", 999999)  # no worker record: a holder this host cannot judge

    assert release_dead_holders(redis_client, QUEUES, "new-worker") == ["zoho"]
    assert _held(redis_client) == {"chatwoot", "followups"}


def test_a_holder_on_another_host_is_left_to_its_heartbeat(redis_client):
    dead = _dead_pid()
    _registered(redis_client, "elsewhere", dead, hostname="another-host")
    _lock(redis_client, "zoho", dead)
    assert release_dead_holders(redis_client, QUEUES, "new-worker") == []
    assert _held(redis_client) == {"zoho"}


def test_this_pid_under_another_worker_s_name_is_a_previous_life(redis_client):
    # a restarted container: the new worker has the pid the dead one had
    _registered(redis_client, "before-the-restart", os.getpid())
    _lock(redis_client, "zoho", os.getpid())
    assert release_dead_holders(redis_client, QUEUES, "new-worker", held=set()) == ["zoho"]

    _registered(redis_client, "new-worker", os.getpid())
    redis_client.delete(Worker.redis_worker_namespace_prefix + "before-the-restart")
    _lock(redis_client, "zoho", os.getpid())  # now this worker's own lock
    assert release_dead_holders(redis_client, QUEUES, "new-worker", held={"zoho"}) == []
    assert release_dead_holders(redis_client, QUEUES, "new-worker") == []
    assert _held(redis_client) == {"zoho"}


def _state(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


def test_process_is_gone():
    assert process_is_gone(_dead_pid())
    assert not process_is_gone(os.getpid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while _state(zombie.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(zombie.pid) == "Z"
        assert process_is_gone(zombie.pid)  # exited, not yet reaped: it runs nothing
    finally:
        zombie.wait()
