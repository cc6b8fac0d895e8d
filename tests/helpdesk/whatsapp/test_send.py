"""`helpdesk.whatsapp.send`: workers and actions queue texts in the outbox (sync and async),
by conversation id or by a chat id an operator wrote; the Rasa server's `Delivery.drain`
then delivers them to the fake gateways."""
import json

import pytest
import redis

from connectors.meta import MetaSender
from connectors.waha import WahaSender
from connectors.whatsapp.output import Delivery
from helpdesk import redis_keys
from helpdesk.whatsapp import outbox
from helpdesk.whatsapp import Route
from helpdesk.whatsapp import MetaClient
from helpdesk.whatsapp import WahaClient
from helpdesk.whatsapp import NoRoute, async_send_text, mention_ids, send_text
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    GROUP,
    META_PHONE_ID,
    META_TOKEN,
    OTHER,
    USER,
    WAHA_KEY,
    channel_env,
    fake_meta,
    fake_waha,
    meta_settings,
    redis_for,
    run,
    tiny_config,
    waha_settings,
)

GROUP_CONVERSATION = f"g{GROUP.split('@')[0]}-{USER}"


@pytest.fixture
def waha_env(channel_env, monkeypatch, fake_waha):
    monkeypatch.setenv("WAHA_BASE_URL", fake_waha.url)
    monkeypatch.setenv("WAHA_API_KEY", WAHA_KEY)
    return fake_waha


@pytest.fixture
def meta_only_env(channel_env, monkeypatch, fake_meta):
    monkeypatch.setenv("META_ACCESS_TOKEN", META_TOKEN)
    monkeypatch.setenv("META_PHONE_NUMBER_ID", META_PHONE_ID)
    monkeypatch.setenv("META_GRAPH_URL", fake_meta.url)
    return fake_meta


def store_route(client: redis.Redis, conversation: str, route: Route) -> None:
    client.hset(redis_keys.route(conversation), mapping=route.to_hash())


def queued(client: redis.Redis, message) -> list:
    return [json.loads(raw) for raw in client.lrange(outbox.outbox_key(message), 0, -1)]


async def drain(redis_url: str, message, waha_url: str = "http://127.0.0.1:9",
                meta_url: str = "http://127.0.0.1:9") -> None:
    """What the Rasa server's drainer does with one chat's outbox."""
    client = redis_for(redis_url)
    waha, meta = WahaClient(waha_settings(waha_url), 3), MetaClient(meta_settings(meta_url), 3)
    try:
        delivery = Delivery(client, tiny_config())
        delivery.register("waha", WahaSender(waha))
        delivery.register("whatsapp", MetaSender(meta))
        await delivery.drain(outbox.outbox_key(message))
    finally:
        await waha.close()
        await meta.close()
        await client.close()


def test_by_conversation_id_with_a_stored_route(channel_env, redis_client, redis_url,
                                                fake_waha):
    store_route(redis_client, GROUP_CONVERSATION,
                Route(channel="waha", chat_id=GROUP, participant=f"{USER}@c.us"))
    message = send_text(GROUP_CONVERSATION, f"@{USER} Su ticket 1234 fue resuelto.",
                        mentions=[GROUP_CONVERSATION], client=redis_client)
    assert message["channel"] == "waha" and message["chat_id"] == GROUP
    assert message["conversation_id"] == GROUP_CONVERSATION
    assert message["proactive"] is True and message["kind"] == "text"
    assert message["mentions"] == [f"{USER}@c.us"]
    assert queued(redis_client, message) == [message]
    assert redis_client.zscore(redis_keys.outbox_due(), outbox.outbox_key(message)) is not None

    run(drain(redis_url, message, waha_url=fake_waha.url))
    (call,) = fake_waha.calls("/api/sendText")
    assert call["body"] == {"session": "default", "chatId": GROUP,
                            "text": f"@{USER} Su ticket 1234 fue resuelto.",
                            "linkPreview": False, "mentions": [f"{USER}@c.us"]}
    assert queued(redis_client, message) == []
    assert redis_client.zcard(redis_keys.outbox_due()) == 0


def test_a_meta_route_is_delivered_through_meta(channel_env, redis_client, redis_url,
                                                fake_meta):
    store_route(redis_client, USER, Route(channel="whatsapp", chat_id=USER))
    message = send_text(USER, "Hola", client=redis_client)
    assert message["channel"] == "whatsapp" and message["chat_id"] == USER
    run(drain(redis_url, message, meta_url=fake_meta.url))
    assert [m["text"]["body"] for m in fake_meta.messages()] == ["Hola"]


@pytest.mark.parametrize("target, chat", [
    ("+54 9 11 2233-4455", f"{USER}@c.us"),
    (USER, f"{USER}@c.us"),
    (f"{USER}@c.us", f"{USER}@c.us"),
    (GROUP, GROUP),
])
def test_a_chat_id_or_number_goes_through_waha_when_configured(waha_env, redis_client,
                                                               redis_url, target, chat):
    message = send_text(target, "Aviso para soporte", client=redis_client)
    assert message["channel"] == "waha" and message["chat_id"] == chat
    # a person's chat is that person's conversation (so their opt-out counts); a group is none
    assert message["conversation_id"] == (None if chat == GROUP else USER)
    run(drain(redis_url, message, waha_url=waha_env.url))
    assert waha_env.texts(chat) == ["Aviso para soporte"]


def test_a_number_goes_through_meta_when_only_meta_is_configured(meta_only_env, redis_client):
    message = send_text(f"{USER}@c.us", "Aviso", client=redis_client)
    assert message["channel"] == "whatsapp" and message["chat_id"] == USER
    with pytest.raises(NoRoute):
        send_text(GROUP, "Aviso", client=redis_client)


def test_no_gateway_configured_is_no_route(channel_env, redis_client):
    with pytest.raises(NoRoute):
        send_text(USER, "Hola", client=redis_client)
    with pytest.raises(NoRoute):
        run(_async_send(channel_env, USER, "Hola"))
    assert redis_client.keys("helpdesk:outbox*") == []


def test_empty_text_is_refused(waha_env, redis_client):
    with pytest.raises(ValueError):
        send_text(USER, "  ", client=redis_client)


def test_send_text_opens_its_own_connection_when_given_none(waha_env, redis_client):
    message = send_text(USER, "Hola")
    assert queued(redis_client, message)[0]["text"] == "Hola"


async def _async_send(redis_url: str, target: str, text: str, mentions=None):
    client = redis_for(redis_url)
    try:
        return await async_send_text(client, target, text, mentions)
    finally:
        await client.close()


def test_async_send_by_conversation_and_by_number(waha_env, redis_client, redis_url):
    store_route(redis_client, OTHER, Route(channel="waha", chat_id=f"{OTHER}@c.us"))
    by_conversation = run(_async_send(redis_url, OTHER, "Primero"))
    by_number = run(_async_send(redis_url, "+54 9 11 2233 4455", "Segundo", [OTHER]))
    assert by_conversation["conversation_id"] == OTHER
    assert by_conversation["chat_id"] == f"{OTHER}@c.us"
    assert by_number["conversation_id"] == USER and by_number["chat_id"] == f"{USER}@c.us"
    assert by_number["mentions"] == [f"{OTHER}@c.us"]
    run(drain(redis_url, by_conversation, waha_url=waha_env.url))
    run(drain(redis_url, by_number, waha_url=waha_env.url))
    assert waha_env.texts(f"{OTHER}@c.us") == ["Primero"]
    assert waha_env.texts(f"{USER}@c.us") == ["Segundo"]


def test_queued_texts_for_one_chat_are_delivered_in_order(waha_env, redis_client, redis_url):
    messages = [send_text(USER, f"mensaje {n}", client=redis_client) for n in range(5)]
    run(drain(redis_url, messages[0], waha_url=waha_env.url))
    assert waha_env.texts(f"{USER}@c.us") == [f"mensaje {n}" for n in range(5)]


def test_a_proactive_text_to_an_opted_out_conversation_is_withheld(waha_env, redis_client,
                                                                   redis_url):
    store_route(redis_client, USER, Route(channel="waha", chat_id=f"{USER}@c.us"))
    redis_client.sadd(redis_keys.opted_out_set(), USER)
    message = send_text(USER, "Novedades", client=redis_client)
    run(drain(redis_url, message, waha_url=waha_env.url))
    assert waha_env.texts() == [] and queued(redis_client, message) == []


def test_mention_ids():
    assert mention_ids([USER, f"+{OTHER}", GROUP_CONVERSATION, "", "sin número"]) == [
        f"{USER}@c.us", f"{OTHER}@c.us", f"{USER}@c.us"]
    assert mention_ids(None) == []


def test_a_group_conversation_without_a_route_is_not_sent_to_a_made_up_chat(waha_env,
                                                                            redis_client):
    try:
        message = send_text(GROUP_CONVERSATION, "Su ticket fue resuelto", client=redis_client)
    except NoRoute:
        return
    assert message["chat_id"] in (GROUP, f"{USER}@c.us")


def test_an_opted_out_number_without_a_route_is_still_withheld(waha_env, redis_client,
                                                               redis_url):
    redis_client.sadd(redis_keys.opted_out_set(), USER)
    message = send_text(USER, "Novedades de su ticket", client=redis_client)
    run(drain(redis_url, message, waha_url=waha_env.url))
    assert waha_env.texts() == []
