"""A group participant's unanswered messages kept for their next report
(helpdesk/whatsapp/group_context.py), on the session's real Redis."""
import asyncio
import json

import redis.asyncio

from helpdesk import redis_keys
from helpdesk.whatsapp import keep_group_context, take_group_context

CONVERSATION = "g120363419669512474-5491122334455"


def scenario(redis_url, work):
    async def run():
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await work(client)
        finally:
            await client.close()
    return asyncio.run(run())


def test_the_latest_messages_are_kept_for_the_window_and_taken_once(redis_url, redis_client):
    async def work(client):
        for number in range(7):
            await keep_group_context(client, CONVERSATION, f"mensaje  {number}\n", 5, 10,
                                     now=1000.0 + number)
        ttl = await client.ttl(redis_keys.group_context(CONVERSATION))
        taken = await take_group_context(client, CONVERSATION, 10, now=1010.0)
        again = await take_group_context(client, CONVERSATION, 10, now=1010.0)
        return ttl, taken, again

    ttl, taken, again = scenario(redis_url, work)
    assert taken == [f"mensaje {n}" for n in range(2, 7)]  # the latest 5, spaces tidied
    assert 590 < ttl <= 600 and again == []


def test_older_than_the_window_or_foreign_entries_are_left_out(redis_url, redis_client):
    key = redis_keys.group_context(CONVERSATION)
    redis_client.rpush(key, json.dumps({"text": "hace una hora", "at": 100.0}), b"\xff no json",
                       json.dumps({"text": 5, "at": 3600.0}), json.dumps({"at": 3600.0}))

    async def work(client):
        await keep_group_context(client, CONVERSATION, "recién", 5, 10, now=3650.0)
        return await take_group_context(client, CONVERSATION, 10, now=3700.0)

    assert scenario(redis_url, work) == ["recién"]
    assert not redis_client.exists(key)


def test_nothing_is_kept_when_the_setting_is_zero_or_the_text_empty(redis_url, redis_client):
    async def work(client):
        await keep_group_context(client, CONVERSATION, "hola", 0, 10)
        await keep_group_context(client, CONVERSATION, "hola", 5, 0)
        await keep_group_context(client, CONVERSATION, "   ", 5, 10)
        return await take_group_context(client, CONVERSATION, 0)

    assert scenario(redis_url, work) == []
    assert not redis_client.exists(redis_keys.group_context(CONVERSATION))
