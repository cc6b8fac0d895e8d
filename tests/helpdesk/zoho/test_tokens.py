"""Zoho's OAuth access token (helpdesk/zoho/tokens.py) through the client, against the fake
Zoho over real HTTP, shared through the session's real Redis."""
import threading
import time

import pytest
import redis

from helpdesk.zoho import (
    ZohoAuthError,
    ZohoRateLimited,
)
from tests.fakes.zoho import REF_FIELD
from tests.helpdesk.zoho.support import TICKET, client_for
from tests.workers.zoho_support import world  # noqa: F401 - fixture


def test_one_refresh_serves_every_worker(world, redis_url):
    first = client_for(world)
    second = client_for(world, redis.Redis.from_url(redis_url))
    assert first.find_contact_by_phone("5491122334455") is None
    assert second.find_contact_by_phone("5491122334455") is None
    assert world.zoho.refreshes == 1
    token = world.zoho.calls(path="/contacts/search")[0].headers["authorization"]
    assert all(c.headers["authorization"] == token for c in world.zoho.calls(path="/contacts/search"))


def test_concurrent_refreshes_are_single_flight(world, redis_url):
    clients = [client_for(world, redis.Redis.from_url(redis_url)) for _ in range(8)]
    world.zoho.delay(0.3, path="/oauth")  # a slow token endpoint widens the race
    errors = []

    def call(client):
        try:
            client.find_contact_by_phone("5491100000000")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert world.zoho.refreshes == 1


def test_expired_token_refreshes_once_and_replays(world):
    client = client_for(world)
    client.find_contact_by_phone("5491122334455")
    world.zoho.expire_tokens()
    created = client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}, "cf": {REF_FIELD: "ledger-1"}})
    assert world.zoho.refreshes == 2
    assert len(world.zoho.tickets_with_ref("ledger-1")) == 1
    posts = world.zoho.calls("POST", "/tickets")
    assert [c.status for c in posts] == [401, 200]
    assert created.number == world.zoho.tickets_with_ref("ledger-1")[0]["ticketNumber"]


def test_a_second_401_is_an_auth_error_not_a_loop(world):
    client = client_for(world)
    client.find_contact_by_phone("5491122334455")
    world.zoho.fail(None, status=401, path="/tickets", code="UNAUTHORIZED")
    with pytest.raises(ZohoAuthError):
        client.create_ticket({**TICKET, "contact": {"lastName": "Ana"}})
    assert world.zoho.refreshes == 2  # the first token, then exactly one refresh
    assert len(world.zoho.calls("POST", "/tickets")) == 2


def test_refresh_answered_200_with_an_error_body_is_a_failure(world):
    world.zoho.refuse_refresh("invalid_code")
    client = client_for(world)
    with pytest.raises(ZohoAuthError, match="invalid_code"):
        client.find_contact_by_phone("5491122334455")
    assert world.redis.hgetall("helpdesk:zoho:access_token") == {}
    assert world.zoho.calls(path="/contacts/search") == []


def test_refresh_budget_is_never_exceeded(world):
    client = client_for(world, token_refresh_limit=3)
    for _ in range(3):
        world.zoho.expire_tokens()
        world.redis.delete("helpdesk:zoho:access_token")
        client.find_contact_by_phone("5491122334455")
    world.zoho.expire_tokens()
    world.redis.delete("helpdesk:zoho:access_token")
    with pytest.raises(ZohoRateLimited) as raised:
        client.find_contact_by_phone("5491122334455")
    assert world.zoho.refreshes == 3
    assert 500 < raised.value.retry_after <= 600


def test_a_token_is_refreshed_before_it_expires(world):
    client = client_for(world, token_refresh_margin=60)
    client.find_contact_by_phone("5491122334455")
    # the cached token has 30 s left: inside the margin
    world.redis.hset("helpdesk:zoho:access_token", "expires_at", repr(time.time() + 30))
    client.find_contact_by_phone("5491122334455")
    assert world.zoho.refreshes == 2
