"""What the Zoho jobs share: settings, Redis, the ledger, the client, the circuit breaker,
and how a job asks RQ to run it again.

RQ forks a work horse per job, so the context is built once per process (keyed by pid).

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
from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

import redis
from rq import get_current_job

from helpdesk.config import Catalog, catalog
from helpdesk.circuit import CircuitBreaker
from helpdesk.tickets import Ledger
from helpdesk.settings import Settings, ZohoSettings, load_settings, load_zoho
from helpdesk.zoho import ZohoClient
from helpdesk.config import ZohoConfig, zoho_config

logger = logging.getLogger(__name__)

BACKEND = "zoho"


class RunAgain(Exception):
    """Not a failure of the job's code: it runs again in `delay` seconds (RQ's scheduler)."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(f"runs again in {delay:.0f} s: {reason}")
        self.delay = delay
        self.reason = reason


class GiveUp(Exception):
    """The job is over without success; it goes to RQ's failed registry, no retries."""


@dataclass
class Context:
    settings: Settings
    zoho: Optional[ZohoSettings]
    config: ZohoConfig
    redis: redis.Redis
    ledger: Ledger
    catalog: Catalog
    _client: Optional[ZohoClient] = field(default=None, repr=False)
    _breaker: Optional[CircuitBreaker] = field(default=None, repr=False)

    @property
    def client(self) -> ZohoClient:
        if self.zoho is None:
            raise RuntimeError("Zoho Desk is not configured (ZOHO_* variables)")
        if self._client is None:
            self._client = ZohoClient(self.zoho, self.redis, self.config.delivery)
        return self._client

    @property
    def breaker(self) -> CircuitBreaker:
        if self._breaker is None:
            policy = self.config.circuit
            self._breaker = CircuitBreaker(
                self.redis,
                BACKEND,
                failure_threshold=policy.failure_threshold,
                recovery_seconds=policy.recovery_seconds,
                probe_seconds=self.config.delivery.job_timeout,
            )
        return self._breaker


_contexts: Dict[int, Context] = {}


def context() -> Context:
    """This process's context. A work horse reuses what its worker built before forking
    (`warm_up`) with connections of its own; otherwise it builds one."""
    pid = os.getpid()
    ctx = _contexts.get(pid)
    if ctx is None:
        parent = _contexts.get(os.getppid())
        if parent is not None:
            # forget the parent's pooled connections without closing them under it
            parent.ledger.engine.dispose(close=False)
            ctx = replace(parent, _client=None, _breaker=None)
        else:
            settings = load_settings()
            ctx = Context(
                settings=settings,
                zoho=load_zoho(),
                config=zoho_config(),
                redis=redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5),
                ledger=Ledger(settings.database_url),
                catalog=catalog(),
            )
        _contexts[pid] = ctx
    return ctx


def warm_up() -> Context:
    """Worker start-up, before work horses are forked: import the job modules and build the
    context once. Without it every job pays for the imports, the YAML and the ledger's schema
    check (about half a second on this machine)."""
    import workers.announcements  # noqa: F401 - imported for the work horses
    import workers.zoho_jobs  # noqa: F401
    import workers.zoho_periodic  # noqa: F401

    ctx = context()
    ctx.ledger.engine.dispose()  # no connection is shared with the work horses
    return ctx


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
