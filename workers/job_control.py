"""How a job runs once at a time and ends: done, run again later, or given up.

Running again: every job is enqueued with RQ's `Retry`; when a run cannot finish, the job
itself decides when the next run is (the ledger's attempt count and config/zoho.yml, or the
time the circuit or the quota opens again) by setting the running job's `retry_intervals`
and `retries_left` before raising `RunAgain`. RQ's scheduler does the waiting. Waits that are
not the ticket's fault (circuit open, 429, quota, rejected credentials) do not spend attempts.
A run that must not be retried sets `retries_left = 0` and raises: RQ puts the job in its
failed registry (the dead letters).
"""
import logging
import math
import os
import random
import secrets
import socket
from typing import Tuple

import redis
from rq import get_current_job

logger = logging.getLogger(__name__)


class RunAgain(Exception):
    """Not a failure of the job's code: it runs again in `delay` seconds (RQ's scheduler)."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(f"runs again in {delay:.0f} s: {reason}")
        self.delay = delay
        self.reason = reason


class GiveUp(Exception):
    """The job is over without success; it goes to RQ's failed registry, no retries."""


def jitter(seconds: float) -> float:
    return random.uniform(0, seconds) if seconds > 0 else 0.0


def run_again_in(delay: float, reason: str, retries_left: int = 1) -> None:
    """Raise RunAgain after telling RQ to schedule this job again in `delay` seconds.

    `retries_left` is what RQ keeps for runs that die without our code deciding (a killed
    work horse, an abandoned job): at least one.
    """
    job = get_current_job()
    if job is not None:
        # RQ subtracts one when it schedules the retry
        job.retries_left = max(1, retries_left) + 1
        job.retry_intervals = [max(0, int(math.ceil(delay)))]
    raise RunAgain(delay, reason)


def give_up(reason: str) -> None:
    """Raise GiveUp with RQ's retries switched off: the job lands in the failed registry."""
    job = get_current_job()
    if job is not None:
        job.retries_left = 0
    raise GiveUp(reason)


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RunLock:
    """One run at a time for a ticket or an addition, across processes and machines.

    The value names the holder (host, pid): a run that finds the lock held by a process of
    this machine that no longer exists (a killed work horse) takes it over at once instead of
    waiting for the TTL, which only protects against holders on other machines.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.value = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        if self.client.set(self.key, self.value, nx=True, px=self.ttl_ms):
            return True
        holder = self.client.get(self.key)
        if holder and self._holder_is_dead(holder.decode()):
            if self._release(keys=[self.key], args=[holder]):
                logger.warning("lock of a dead process taken over", extra={"lock": self.key})
            return bool(self.client.set(self.key, self.value, nx=True, px=self.ttl_ms))
        return False

    def wait_seconds(self) -> float:
        return max(1.0, self.client.pttl(self.key) / 1000.0)

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.value])

    @staticmethod
    def _holder(value: str) -> Tuple[str, int]:
        host, pid, _ = value.rsplit(":", 2)
        return host, int(pid)

    def _holder_is_dead(self, value: str) -> bool:
        try:
            host, pid = self._holder(value)
        except ValueError:
            return False
        if host != socket.gethostname() or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
