"""Conversation ids and routes (helpdesk/whatsapp/conversations.py): the ids every part of the bot
keys conversations by, and the route a reply needs, through the real Redis."""
import pytest

from helpdesk import redis_keys
from helpdesk.whatsapp import (
    MAX_ID_CHARS,
    ROUTE_TTL_SECONDS,
    BadId,
    Route,
    chat_jid,
    digits,
    direct_conversation_id,
    group_conversation_id,
    group_of,
    is_group_jid,
    load_route,
    load_route_sync,
    message_id,
    phone_number,
    save_route,
    user_id,
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
    ("５４９１１２２３３４４５５@c.us", "5491122334455"),  # full-width
    ("٥٤٩١١٢٢٣٣٤٤٥٥@c.us", "5491122334455"),  # Arabic-Indic
])
def test_digits(jid, expected):
    assert digits(jid) == expected


@pytest.mark.parametrize("jid, expected", [
    ("5491122334455@c.us", "5491122334455@c.us"),
    ("５４９１１２２３３４４５５@c.us", "5491122334455@c.us"),
    ("٥٤٩١١٢٢٣٣٤٤٥٥@c.us", "5491122334455@c.us"),
    ("5491122334455:20@s.whatsapp.net", "5491122334455@s.whatsapp.net"),
    ("72318944542853@lid", "72318944542853@lid"),
    (GROUP, GROUP),
    ("５４９１１２２３３４４５５-1600000000@g.us", "5491122334455-1600000000@g.us"),
])
def test_chat_jid_spells_an_id_one_way(jid, expected):
    assert chat_jid(jid) == expected


@pytest.mark.parametrize("jid", [
    "1" * 16 + "@c.us", "1" * 21 + "@lid", "1" * 21 + "@g.us", "1-" + "2" * 21 + "@g.us",
    "abc@c.us", "5491122334455", "5491122334455@c.us@c.us", "5491122334455@example.com",
    "@c.us", "²³@lid", "1-2-3@g.us", "5" * 200 + "@c.us", None, 42,
])
def test_chat_jid_refuses_what_no_gateway_sends(jid):
    with pytest.raises(BadId):
        chat_jid(jid)


def test_phone_numbers_user_ids_and_message_ids():
    assert phone_number("+54 9 11 2233-4455") == phone_number("＋５４ ９ １１ ２２３３-４４５５") \
        == "5491122334455"
    for bad in ("", "abc", "1" * 16):
        with pytest.raises(BadId):
            phone_number(bad)
    assert user_id("US.13491208655302741918") == "US.13491208655302741918"
    assert user_id("US.１３４９") == "US.1349"
    for bad in ("US." + "1" * 200, "US.1/../x", "US 1", "US.1\u202e"):
        with pytest.raises(BadId):
            user_id(bad)
    assert message_id("wamid.abc") == "wamid.abc"
    for bad in ("", None, 5, "x" * (MAX_ID_CHARS + 1)):
        with pytest.raises(BadId):
            message_id(bad)
    assert message_id("x" * 200, max_chars=200) == "x" * 200


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
