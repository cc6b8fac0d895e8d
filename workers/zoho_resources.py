"""What the Zoho jobs run with: settings, Redis, the ledger, the Zoho client and the circuit
breaker, built once per process.

RQ forks a work horse per job, so the context is keyed by pid: a work horse reuses what its
worker built before forking (`workers.worker.warm_up`) with connections of its own.
"""
import os
from dataclasses import dataclass, field, replace
from typing import Dict, Optional

import redis

from helpdesk.circuit import CircuitBreaker
from helpdesk.config import Catalog, ZohoConfig, catalog, zoho_config
from helpdesk.settings import Settings, ZohoSettings, load_settings, load_zoho
from helpdesk.tickets import Ledger
from helpdesk.zoho import ZohoClient

BACKEND = "zoho"


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
