"""Conversation ids and routes (helpdesk/whatsapp/conversations.py): the ids every part of the bot
keys conversations by, and the route a reply needs, through the real Redis."""
import pytest

from helpdesk import redis_keys
from helpdesk.whatsapp import (
    ROUTE_TTL_SECONDS,
    Route,
    digits,
    direct_conversation_id,
    group_conversation_id,
    group_of,
    is_group_jid,
    load_route,
    load_route_sync,
    save_route,
)
from tests.connectors.whatsapp.support import redis_for, run

GROUP = "120363419669512474@g.us"


@pytest.mark.parametrize("jid, expected", [
    ("5491122334455@c.us", "5491122334455"),
    ("5491122334455:20@s.whatsapp.net", "5491122334455"),
    ("+54 9 11 2233-4455", "5491122334455"),
    ("72318944542853@lid", "72318944542853"),
    (GROUP, "120363419669512474"),
    ("5491122334455", "5491122334455"),
    ("US.13491208655302741918", "13491208655302741918"),
    ("", ""),
])
def test_digits(jid, expected):
    assert digits(jid) == expected


def test_is_group_jid():
    assert is_group_jid(GROUP)
    assert not is_group_jid("5491122334455@c.us")
    assert not is_group_jid(None) and not is_group_jid("")


@pytest.mark.parametrize("user, expected", [
    ("5491122334455@c.us", "5491122334455"),
    ("5491122334455", "5491122334455"),
    ("+54 9 (11) 2233-4455", "5491122334455"),
    ("5491122334455:3@s.whatsapp.net", "5491122334455"),
    ("72318944542853@lid", "72318944542853"),
    ("US.13491208655302741918", "US.13491208655302741918"),  # Meta's user id stays
])
def test_direct_conversation_id(user, expected):
    assert direct_conversation_id(user) == expected


def test_group_conversation_ids_and_back():
    conversation = group_conversation_id(GROUP, "5491122334455@c.us")
    assert conversation == "g120363419669512474-5491122334455"
    assert group_conversation_id(GROUP, "153219082764294@lid") == \
        "g120363419669512474-153219082764294"
    assert group_of(conversation) == GROUP
    assert group_of("5491122334455") is None
    assert group_of("US.13491208655302741918") is None


def test_two_participants_of_one_group_are_two_conversations():
    first = group_conversation_id(GROUP, "5491122334455@c.us")
    second = group_conversation_id(GROUP, "5491199887766@c.us")
    assert first != second and group_of(first) == group_of(second) == GROUP


def test_route_hash_round_trip():
    route = Route(channel="waha", chat_id=GROUP, participant="5491122334455@c.us",
                  name="Ana Pérez", phone="5491122334455")
    assert route.is_group
    assert Route.from_hash(route.to_hash()) == route
    encoded = {k.encode(): v.encode() for k, v in route.to_hash().items()}
    assert Route.from_hash(encoded) == route
    direct = Route(channel="whatsapp", chat_id="5491122334455")
    assert direct.to_hash() == {"channel": "whatsapp", "chat_id": "5491122334455"}
    assert not direct.is_group
    assert Route.from_hash({}) is None
    assert Route.from_hash({"channel": "waha"}) is None
    assert Route.from_hash({"chat_id": "x@c.us"}) is None


def test_save_and_load_route_through_redis(redis_client, redis_url):
    conversation = "g120363419669512474-5491122334455"
    group = Route(channel="waha", chat_id=GROUP, participant="5491122334455@c.us",
                  name="Ana Pérez", phone="5491122334455")
    direct = Route(channel="waha", chat_id="5491122334455@c.us")

    async def scenario():
        client = redis_for(redis_url)
        try:
            await save_route(client, conversation, group)
            first = await load_route(client, conversation)
            await save_route(client, conversation, direct)  # replaces, keeps no old field
            second = await load_route(client, conversation)
            missing = await load_route(client, "5490000000000")
            return first, second, missing
        finally:
            await client.close()

    first, second, missing = run(scenario())
    assert first == group and second == direct and missing is None
    assert load_route_sync(redis_client, conversation) == direct
    ttl = redis_client.ttl(redis_keys.route(conversation))
    assert ROUTE_TTL_SECONDS - 60 < ttl <= ROUTE_TTL_SECONDS
