"""RQ's scheduler as the workers run it: taken over at once when its holder is gone.

RQ 1.16 lets one worker at a time run the scheduler (the process that moves jobs due in
`ScheduledJobRegistry` onto their queues: retries, follow-ups, the periodic jobs). It holds
`rq:scheduler-lock:<queue>` (value: the pid of the worker that took it; 61 s, renewed every
second by the scheduler process). A worker killed with SIGKILL leaves the lock behind for up to
61 s, and RQ's other workers try to take it only at their maintenance, which an idle worker
reaches after a `BLPOP` of `worker_ttl - 15` (405 s): scheduled jobs ran minutes late after a
restart. Two changes, both here and in `workers.worker.CorrelatedWorker`:

- a lock whose holder is provably gone is released before taking it (at start-up and on each
  retry): the pid in the lock belongs to an RQ worker registered from this host (its record in
  `rq:worker:<name>` outlives the lock: 480 s against 61 s) and that process no longer exists,
  or it is this very pid under another worker's name (a restarted container). A holder on
  another host is never judged by its pid: its lock ends with its heartbeat (61 s).
- the scheduler process dies with its worker (Linux `PR_SET_PDEATHSIG`), so a dead worker pid
  in the lock means a dead scheduler, never an orphan still moving jobs next to the new one.

The retry every few seconds (instead of at maintenance) is the worker's (workers/worker.py).

One clock for what is due. RQ compares a job's due time, written by whichever process
scheduled it, with the scheduler's own clock, and a retry's due time with the failing work
horse's: two machines whose clocks are 15 s apart ran follow-ups and retries 15 s early or
late. Here both sides read the Redis server's clock (helpdesk/clock.py): the scheduler moves
what is due by `TIME`, a retry is scheduled by `TIME` (`RedisClockJob`, the workers' job class),
and the project's own `enqueue_at` calls take their time from `redis_datetime`.
"""
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
from typing import Iterable, List, Set

from datetime import timedelta

import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.worker import Worker

from helpdesk.clock import redis_datetime, redis_now

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_RELEASE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def process_is_gone(pid: int) -> bool:
    """No process `pid` on this machine (a zombie counts as gone: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def _worker_names_by_pid(connection: redis.Redis, host: str) -> dict:
    """pid -> names of the RQ workers registered from `host` (dead ones too, until their
    record expires)."""
    found: dict = {}
    for worker in Worker.all(connection=connection):
        if worker.hostname == host and worker.pid:
            found.setdefault(int(worker.pid), []).append(worker.name)
    return found


def release_dead_holders(connection: redis.Redis, queue_names: Iterable[str], own_name: str,
                         held: Set[str] = frozenset()) -> List[str]:
    """Delete the scheduler locks of `queue_names` (those this worker does not hold) whose
    holder is provably gone (module docstring); the queue names released."""
    host = socket.gethostname()
    release = connection.register_script(_RELEASE_IF)
    workers_here = None
    released = []
    for name in queue_names:
        if name in held:
            continue
        key = RQScheduler.get_locking_key(name)
        value = connection.get(key)
        if value is None:
            continue
        try:
            pid = int(value)
        except ValueError:
            continue
        if workers_here is None:
            workers_here = _worker_names_by_pid(connection, host)
        holders = [worker for worker in workers_here.get(pid, []) if worker != own_name]
        if not holders:
            continue  # not a worker of this host (or this worker itself): its TTL decides
        if pid != os.getpid() and not process_is_gone(pid):
            continue
        if release(keys=[key], args=[value]):
            released.append(name)
    if released:
        logger.warning("scheduler lock of a dead worker released", extra={"queues": released})
    return released


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that forked it ends."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent check below still runs
        pass


class RedisClockJob(Job):
    """RQ's job whose retry after an interval is due by the Redis server's clock (RQ: the
    work horse's)."""

    def retry(self, queue: Queue, pipeline) -> None:
        interval = self.get_retry_interval()
        if not interval:
            return super().retry(queue, pipeline)
        self.retries_left = self.retries_left - 1
        self.set_status(JobStatus.SCHEDULED)
        queue.schedule_job(self, redis_datetime(self.connection) + timedelta(seconds=interval),
                           pipeline=pipeline)


class Scheduler(RQScheduler):
    """RQ's scheduler whose process never outlives the worker that started it, and which moves
    the jobs due by the Redis server's clock."""

    _worker_pid = None

    def start(self):
        self._worker_pid = os.getpid()
        return super().start()

    def work(self):
        _die_with_parent()
        if self._worker_pid is not None and os.getppid() != self._worker_pid:
            return  # the worker died before the line above: nothing to schedule for
        super().work()

    def enqueue_scheduled_jobs(self):
        """RQ's pass over the scheduled registries, with "now" read from Redis."""
        self._status = self.Status.WORKING
        if not self._scheduled_job_registries and self._acquired_locks:
            self.prepare_registries()
        for registry in self._scheduled_job_registries:
            due = registry.get_jobs_to_schedule(int(redis_now(self.connection)))
            if not due:
                continue
            queue = Queue(registry.name, connection=self.connection, serializer=self.serializer)
            with self.connection.pipeline() as pipeline:
                for job in Job.fetch_many(due, connection=self.connection, serializer=self.serializer):
                    if job is not None:
                        queue._enqueue_job(job, pipeline=pipeline, at_front=bool(job.enqueue_at_front))
                        registry.remove(job, pipeline=pipeline)
                pipeline.execute()
        self._status = self.Status.STARTED
