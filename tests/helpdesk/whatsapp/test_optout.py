"""Opt-out registry (helpdesk/whatsapp/optout.py) against the session's real Redis."""
import asyncio

import pytest

from helpdesk import redis_keys
from helpdesk.whatsapp import AsyncOptOutRegistry, OptOutRegistry, restore_opt_outs

USER = "5491122334455"
OTHER = "5491199887766"


@pytest.fixture
def registry(redis_url, redis_client) -> OptOutRegistry:
    # redis_client flushes the database before and after the test
    registry = OptOutRegistry.from_url(redis_url)
    yield registry
    registry.client.close()


def test_nobody_is_opted_out_at_first(registry):
    assert registry.is_opted_out(USER) is False


def test_opt_out_then_opt_in(registry):
    registry.opt_out(USER)
    assert registry.is_opted_out(USER) is True
    assert registry.is_opted_out(OTHER) is False
    assert registry.opt_in(USER) is True
    assert registry.is_opted_out(USER) is False
    # a second opt-in has nothing to undo
    assert registry.opt_in(USER) is False


def test_opt_in_of_someone_never_opted_out_is_false(registry):
    assert registry.opt_in(OTHER) is False
    assert registry.is_opted_out(OTHER) is False


def test_opting_out_twice_is_one_opt_out(registry, redis_client):
    registry.opt_out(USER)
    registry.opt_out(USER)
    assert redis_client.scard(redis_keys.opted_out_set()) == 1
    assert registry.opt_in(USER) is True
    assert registry.is_opted_out(USER) is False


def test_the_set_lives_under_the_project_key(registry, redis_client):
    registry.opt_out(USER)
    assert redis_keys.opted_out_set() == "helpdesk:opted_out"
    assert redis_client.smembers("helpdesk:opted_out") == {USER.encode()}


def test_from_url_uses_a_given_client(redis_url, redis_client):
    registry = OptOutRegistry.from_url("redis://unused.invalid:1/0", client=redis_client)
    assert registry.client is redis_client
    registry.opt_out(USER)
    assert registry.is_opted_out(USER) is True


def test_async_registry(redis_url, redis_client):
    async def scenario():
        registry = AsyncOptOutRegistry.from_url(redis_url)
        try:
            results = [await registry.is_opted_out(USER)]
            await registry.opt_out(USER)
            results.append(await registry.is_opted_out(USER))
            results.append(await registry.is_opted_out(OTHER))
            results.append(await registry.opt_in(USER))
            results.append(await registry.is_opted_out(USER))
            results.append(await registry.opt_in(USER))
            results.append(await registry.opt_in(OTHER))
            return results
        finally:
            await registry.close()

    assert asyncio.run(scenario()) == [False, True, False, True, False, False, False]


def test_sync_and_async_registries_share_the_data(registry, redis_url):
    async def is_opted_out(user):
        async_registry = AsyncOptOutRegistry.from_url(redis_url)
        try:
            return await async_registry.is_opted_out(user)
        finally:
            await async_registry.close()

    async def opt_out_then_in(first, second):
        async_registry = AsyncOptOutRegistry.from_url(redis_url)
        try:
            await async_registry.opt_out(first)
            return await async_registry.opt_in(second)
        finally:
            await async_registry.close()

    registry.opt_out(USER)
    assert asyncio.run(is_opted_out(USER)) is True
    assert asyncio.run(is_opted_out(OTHER)) is False

    # opted out through the async API, seen and undone through the sync one
    assert asyncio.run(opt_out_then_in(OTHER, "nobody")) is False
    assert registry.is_opted_out(OTHER) is True
    assert registry.opt_in(OTHER) is True
    assert asyncio.run(is_opted_out(OTHER)) is False

    # opted in through the async API after a sync opt-out
    async def opt_in(user):
        async_registry = AsyncOptOutRegistry.from_url(redis_url)
        try:
            return await async_registry.opt_in(user)
        finally:
            await async_registry.close()

    assert asyncio.run(opt_in(USER)) is True
    assert registry.is_opted_out(USER) is False


# --- with the ledger: opt-outs survive a Redis loss ------------------------------------------
def test_an_opt_out_is_written_to_the_ledger_too_and_an_opt_in_removes_it(redis_client, ledger):
    registry = OptOutRegistry(redis_client, ledger)
    registry.opt_out(USER)
    assert ledger.opt_outs() == [USER]
    assert registry.is_opted_out(USER) is True
    assert registry.opt_in(USER) is True
    assert ledger.opt_outs() == []
    assert registry.is_opted_out(USER) is False
    assert registry.opt_in(USER) is False


def test_after_a_redis_loss_the_first_look_up_restores_the_set(redis_client, ledger):
    OptOutRegistry(redis_client, ledger).opt_out(USER)
    redis_client.flushdb()  # Redis lost: the set and its marker are gone
    registry = OptOutRegistry(redis_client, ledger)
    assert registry.is_opted_out(USER) is True
    assert registry.is_opted_out(OTHER) is False
    # the channel's own checks read the set directly: it is back for them too
    assert redis_client.sismember(redis_keys.opted_out_set(), USER)


def test_an_opt_in_after_a_redis_loss_is_an_opt_in(redis_client, ledger):
    OptOutRegistry(redis_client, ledger).opt_out(USER)
    redis_client.flushdb()
    registry = OptOutRegistry(redis_client, ledger)
    assert registry.opt_in(USER) is True
    assert ledger.opt_outs() == []
    redis_client.flushdb()
    assert registry.is_opted_out(USER) is False


def test_restore_keeps_opt_outs_recorded_only_in_redis_before_the_upgrade(redis_client, ledger):
    redis_client.sadd(redis_keys.opted_out_set(), OTHER)  # an opt-out from before the ledger kept them
    ledger.record_opt_out(USER)
    assert restore_opt_outs(redis_client, ledger) == 1
    assert sorted(ledger.opt_outs()) == sorted([USER, OTHER])
    assert redis_client.smembers(redis_keys.opted_out_set()) == {USER.encode(), OTHER.encode()}
    assert redis_client.exists(redis_keys.opted_out_restored())


def test_the_async_registry_writes_and_restores_from_the_ledger(redis_url, redis_client, ledger):
    async def scenario():
        registry = AsyncOptOutRegistry.from_url(redis_url, ledger)
        try:
            await registry.opt_out(USER)
            in_ledger = ledger.opt_outs()
            await registry.client.flushdb()
            after_loss = await registry.is_opted_out(USER)
            opted_in = await registry.opt_in(USER)
            return in_ledger, after_loss, opted_in, ledger.opt_outs()
        finally:
            await registry.close()

    assert asyncio.run(scenario()) == ([USER], True, True, [])
