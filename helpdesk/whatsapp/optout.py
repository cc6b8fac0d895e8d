"""Opt-out registry: who asked (BAJA, STOP) not to receive messages.

The channel reads a Redis set (the inbound script and the output channel check it on every
message); opt-outs are also a legal record kept until the user opts back in, so a registry
given the ledger writes both (the ledger's `opt_outs` table first) and the set survives a
Redis loss: `restore_opt_outs` puts the ledger's opt-outs back when the set's restore marker is
missing (a fresh or emptied Redis). Workers restore at start-up and in every retention run; a
registry with the ledger restores on its first look-up after the marker went missing.

Async API for the Rasa server and the action server (both are asyncio loops), sync API for
workers and tests. Both use the same key. The ledger is any object with `record_opt_out`,
`clear_opt_out` and `opt_outs` (helpdesk.tickets.Ledger); its calls block, so the async
registry runs them in a thread.
"""
import asyncio
from typing import Any, Optional

import redis
import redis.asyncio as aioredis

from helpdesk import redis_keys


def restore_opt_outs(client: redis.Redis, ledger: Any) -> int:
    """The ledger's opt-outs into the Redis set, and opt-outs only in Redis (recorded before
    the ledger kept them) into the ledger; the marker set. How many the set got back."""
    for member in client.smembers(redis_keys.opted_out_set()):
        ledger.record_opt_out(member.decode() if isinstance(member, bytes) else member)
    kept = ledger.opt_outs()
    with client.pipeline(transaction=True) as pipe:
        if kept:
            pipe.sadd(redis_keys.opted_out_set(), *kept)
        pipe.set(redis_keys.opted_out_restored(), "1")
        added = pipe.execute()
    return int(added[0]) if kept else 0


class AsyncOptOutRegistry:
    def __init__(self, client: aioredis.Redis, ledger: Any = None) -> None:
        self.client = client
        self.ledger = ledger

    @classmethod
    def from_url(cls, url: str, ledger: Any = None) -> "AsyncOptOutRegistry":
        return cls(aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2), ledger)

    async def opt_out(self, conversation_id: str) -> None:
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.record_opt_out, conversation_id)
        await self.client.sadd(redis_keys.opted_out_set(), conversation_id)

    async def opt_in(self, conversation_id: str) -> bool:
        """True when the user was opted out and is not any more."""
        await self._restore_if_lost()
        removed = bool(await self.client.srem(redis_keys.opted_out_set(), conversation_id))
        if self.ledger is not None:
            removed = await asyncio.to_thread(self.ledger.clear_opt_out, conversation_id) or removed
        return removed

    async def is_opted_out(self, conversation_id: str) -> bool:
        await self._restore_if_lost()
        return bool(await self.client.sismember(redis_keys.opted_out_set(), conversation_id))

    async def _restore_if_lost(self) -> None:
        if self.ledger is None or await self.client.exists(redis_keys.opted_out_restored()):
            return
        kept = await asyncio.to_thread(self.ledger.opt_outs)
        async with self.client.pipeline(transaction=True) as pipe:
            if kept:
                pipe.sadd(redis_keys.opted_out_set(), *kept)
            pipe.set(redis_keys.opted_out_restored(), "1")
            await pipe.execute()

    async def close(self) -> None:
        await self.client.close()


class OptOutRegistry:
    def __init__(self, client: redis.Redis, ledger: Any = None) -> None:
        self.client = client
        self.ledger = ledger

    @classmethod
    def from_url(cls, url: str, client: Optional[redis.Redis] = None, ledger: Any = None) -> "OptOutRegistry":
        return cls(client or redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2), ledger)

    def opt_out(self, conversation_id: str) -> None:
        if self.ledger is not None:
            self.ledger.record_opt_out(conversation_id)
        self.client.sadd(redis_keys.opted_out_set(), conversation_id)

    def opt_in(self, conversation_id: str) -> bool:
        self._restore_if_lost()
        removed = bool(self.client.srem(redis_keys.opted_out_set(), conversation_id))
        if self.ledger is not None:
            removed = self.ledger.clear_opt_out(conversation_id) or removed
        return removed

    def is_opted_out(self, conversation_id: str) -> bool:
        self._restore_if_lost()
        return bool(self.client.sismember(redis_keys.opted_out_set(), conversation_id))

    def _restore_if_lost(self) -> None:
        if self.ledger is not None and not self.client.exists(redis_keys.opted_out_restored()):
            restore_opt_outs(self.client, self.ledger)
