"""Opt-out registry in Redis: who asked (BAJA, STOP) not to receive messages.

Async API for the Rasa server and the action server (both are asyncio loops), sync API for
workers and tests. Both use the same key.
"""
from typing import Optional

import redis
import redis.asyncio as aioredis

from helpdesk import redis_keys


class AsyncOptOutRegistry:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> "AsyncOptOutRegistry":
        return cls(aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    async def opt_out(self, conversation_id: str) -> None:
        await self.client.sadd(redis_keys.opted_out_set(), conversation_id)

    async def opt_in(self, conversation_id: str) -> bool:
        """True when the user was opted out and is not any more."""
        return bool(await self.client.srem(redis_keys.opted_out_set(), conversation_id))

    async def is_opted_out(self, conversation_id: str) -> bool:
        return bool(await self.client.sismember(redis_keys.opted_out_set(), conversation_id))

    async def close(self) -> None:
        await self.client.close()


class OptOutRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str, client: Optional[redis.Redis] = None) -> "OptOutRegistry":
        return cls(client or redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def opt_out(self, conversation_id: str) -> None:
        self.client.sadd(redis_keys.opted_out_set(), conversation_id)

    def opt_in(self, conversation_id: str) -> bool:
        return bool(self.client.srem(redis_keys.opted_out_set(), conversation_id))

    def is_opted_out(self, conversation_id: str) -> bool:
        return bool(self.client.sismember(redis_keys.opted_out_set(), conversation_id))
