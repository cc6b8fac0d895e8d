"""Health checks of what a service depends on: Redis, the ledger, the action server; and
readiness (/ready): the same plus each configured integration's set-up (Zoho Desk: the last
`make zoho-check`, kept in Redis)."""
import asyncio
import json
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

import aiohttp
import redis.asyncio as aioredis

from helpdesk import redis_keys
from helpdesk.tickets import Ledger
from helpdesk.settings import Settings, load_zoho

_ledgers: Dict[str, Ledger] = {}


async def _timed(check: Callable[[], Awaitable[Any]], timeout: float) -> Dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout)
        status = {"status": "ok"}
    except NotReady as error:  # it answers, but is not set up: its own line
        status = {"status": "not_ready", "error": str(error)[:500]}
    except Exception as error:  # a failing dependency is reported, not raised
        status = {"status": "down", "error": f"{type(error).__name__}: {error}"[:200]}
    status["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return status


async def check_redis(url: str) -> None:
    client = aioredis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        await client.ping()
    finally:
        await client.close()


async def check_ledger(database_url: str) -> None:
    if database_url not in _ledgers:
        _ledgers[database_url] = await asyncio.to_thread(Ledger, database_url)
    await asyncio.to_thread(_ledgers[database_url].ping)


async def check_action_server(port: int) -> None:
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"http://127.0.0.1:{port}/health") as answer:
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}")


async def check_all(settings: Settings, timeout: float = 2.0) -> Dict[str, Any]:
    checks = {
        "redis": lambda: check_redis(settings.redis_url),
        "ledger": lambda: check_ledger(settings.database_url),
        "action_server": lambda: check_action_server(settings.actions_port),
    }
    results = await asyncio.gather(*(_timed(c, timeout) for c in checks.values()))
    report = dict(zip(checks, results))
    healthy = all(r["status"] == "ok" for r in report.values())
    return {"status": "ok" if healthy else "degraded", "checks": report}


# --- readiness: what /ready answers (beside /health) ------------------------------------------
def zoho_readiness(remembered: Optional[Dict[str, Any]], configured: bool) -> Optional[str]:
    """Why Zoho Desk's set-up is not ready (one line), or None when it is or Zoho is off.
    `remembered` is the last `make zoho-check` (helpdesk.zoho.check.remembered)."""
    if not configured:
        return None
    if remembered is None:
        return "zoho: set-up not checked yet: run make zoho-check"
    if not remembered.get("ok"):
        # how many, not which: /ready is open (ids and names are for make zoho-check)
        count = len(remembered.get("missing") or [])
        return f"zoho: configuration incomplete ({count} missing): run make zoho-check"
    return None


async def check_zoho_setup(settings: Settings) -> None:
    """Raises with the line `zoho_readiness` gives when Zoho's set-up is not ready."""
    configured = load_zoho() is not None
    if not configured:
        return
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        raw = await client.get(redis_keys.zoho_check())
    finally:
        await client.close()
    problem = zoho_readiness(json.loads(raw) if raw else None, configured)
    if problem:
        raise NotReady(problem)


class NotReady(Exception):
    """A dependency answers but its set-up is not usable."""


async def readiness(settings: Settings, *, action_server: bool = True,
                    timeout: float = 2.0) -> Tuple[bool, Dict[str, Any]]:
    """(ready, body) for /ready: every check's status, and `not_ready`, one line each."""
    checks: Dict[str, Callable[[], Awaitable[Any]]] = {
        "redis": lambda: check_redis(settings.redis_url),
        "ledger": lambda: check_ledger(settings.database_url),
    }
    if action_server:
        checks["action_server"] = lambda: check_action_server(settings.actions_port)
    checks["zoho"] = lambda: check_zoho_setup(settings)
    results = await asyncio.gather(*(_timed(c, timeout) for c in checks.values()))
    report = dict(zip(checks, results))
    lines = []
    for name, result in report.items():
        if result["status"] == "not_ready":
            lines.append(result["error"])
        elif result["status"] != "ok":
            lines.append(f"{name}: {result.get('error') or 'down'}")
    ready = not lines
    return ready, {"status": "ready" if ready else "not_ready", "not_ready": lines, "checks": report}
