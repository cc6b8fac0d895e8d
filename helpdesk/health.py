"""Health checks of what a service depends on: Redis, the ledger, the action server."""
import asyncio
import time
from typing import Any, Awaitable, Callable, Dict

import aiohttp
import redis.asyncio as aioredis

from helpdesk.tickets import Ledger
from helpdesk.settings import Settings

_ledgers: Dict[str, Ledger] = {}


async def _timed(check: Callable[[], Awaitable[Any]], timeout: float) -> Dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout)
        status = {"status": "ok"}
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
