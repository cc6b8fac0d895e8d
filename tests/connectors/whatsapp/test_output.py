"""Outbound WhatsApp through `WhatsAppOutput` and `Delivery`, over real HTTP to the fake WAHA
and fake Meta, with the real Redis outbox: splitting, ordering through outages, permanent
and transient errors, Meta's 24-hour window, opt-outs, offered buttons, groups. How each
sender renders buttons and files is tested beside it (tests/connectors/test_waha.py,
test_meta.py)."""
import asyncio
import json
import time
from typing import Any, Dict, List

import pytest

from connectors.meta import MetaInput
from connectors.whatsapp.output import Delivery, TurnReplies, turn_replies
from helpdesk import redis_keys, whatsapp
from helpdesk.whatsapp import Route, save_route
from tests.fakes.gateways import graph_error
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    GROUP,
    USER,
    WAHA_CHAT,
    Rig,
    buttons_for,
    channel_env,
    close_channel,
    fake_meta,
    fake_waha,
    finish_drainer,
    fresh,
    meta_settings,
    redis_for,
    replying_to,
    run,
    tiny_config,
    wait_until,
)

GROUP_CONVERSATION = f"g{GROUP.split('@')[0]}-{USER}"


def long_text(size: int = 6000) -> str:
    sentences, number = [], 0
    while sum(len(s) + 1 for s in sentences) < size + 200:
        number += 1
        sentences.append(f"La caja {number} de la sucursal no imprime el ticket fiscal."
                         + ("\n\n" if number % 7 == 0 else " "))
    return "".join(sentences)[:size].rstrip() + "."


def meta_texts(fake) -> List[str]:
    return [m["text"]["body"] for m in fake.messages() if m.get("type") == "text"]


def _check_split(parts: List[str], text: str) -> None:
    assert len(parts) >= 2
    assert all(0 < len(part) <= 4096 for part in parts), [len(p) for p in parts]
    assert " ".join(parts).split() == text.split()  # same words, same order
    assert text.startswith(parts[0])


# --- splitting ----------------------------------------------------------------------------

def test_a_6000_character_reply_arrives_split_in_order_on_waha(redis_client, redis_url,
                                                                fake_waha):
    text = long_text()
    assert len(text) >= 6000

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            with replying_to(USER):
                await rig.outputs["waha"].send_text_message(USER, text)

    run(scenario())
    _check_split(fake_waha.texts(WAHA_CHAT), text)


def test_a_6000_character_reply_arrives_split_in_order_on_meta(redis_client, redis_url,
                                                                fake_meta):
    text = long_text()

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            with replying_to(USER):
                await rig.outputs["whatsapp"].send_text_message(USER, text)

    run(scenario())
    _check_split(meta_texts(fake_meta), text)
    assert {m["to"] for m in fake_meta.messages()} == {USER}


# --- outages and order --------------------------------------------------------------------

def _gateway(channel: str, fake_waha, fake_meta):
    if channel == "waha":
        return fake_waha, WAHA_CHAT, (lambda: fake_waha.texts(WAHA_CHAT))
    return fake_meta, USER, (lambda: meta_texts(fake_meta))


@pytest.mark.parametrize("channel", ["waha", "whatsapp"])
def test_gateway_down_then_back_everything_arrives_in_order(redis_client, redis_url,
                                                            fake_waha, fake_meta, channel):
    fake, chat, sent = _gateway(channel, fake_waha, fake_meta)
    fake.down = True

    async def scenario():
        async with Rig(redis_url, waha=fake_waha, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel=channel, chat_id=chat))
            with replying_to(USER):
                for text in ("uno", "dos", "tres"):
                    await rig.outputs[channel].send_text_message(USER, text)
            queued = [m["text"] for m in await rig.queued(channel, chat)]
            assert queued == ["uno", "dos", "tres"]
            assert await rig.counter("outbox_queued") == 1  # the others queued behind it
            assert len(fake.requests) == 2  # the quick retries of "uno" only
            rig.delivery.start()
            # the drainer keeps trying while the gateway is down, and delivers nothing
            await wait_until(lambda: len(fake.requests) >= 5)
            assert sent() == []
            head = (await rig.queued(channel, chat))[0]
            assert head["text"] == "uno" and head["attempt"] >= 2
            fake.down = False
            await wait_until(rig.empty)
            assert await rig.queued(channel, chat) == []
            return await rig.counter("outbox_delivered")

    assert run(scenario()) == 3
    assert sent() == ["uno", "dos", "tres"]


def test_a_message_sent_while_older_ones_wait_is_queued_behind_them(redis_client, redis_url,
                                                                    fake_waha):
    fake_waha.down = True

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            output = rig.outputs["waha"]
            with replying_to(USER):
                await output.send_text_message(USER, "primero")
                fake_waha.down = False  # the gateway is back, but "primero" still waits
                await output.send_text_message(USER, "segundo")
                await output.send_text_message(USER, "tercero")
            assert fake_waha.texts(WAHA_CHAT) == []
            assert [m["text"] for m in await rig.queued("waha", WAHA_CHAT)] == [
                "primero", "segundo", "tercero"]
            rig.delivery.start()
            await wait_until(rig.empty)

    run(scenario())
    assert fake_waha.texts(WAHA_CHAT) == ["primero", "segundo", "tercero"]


def test_stop_ends_the_drainer_even_when_a_message_was_just_queued(redis_client, redis_url):
    async def scenario():
        client = redis_for(redis_url)
        delivery = Delivery(client, tiny_config())
        try:
            delivery.start()
            await asyncio.sleep(0.1)  # the drainer waits for work
            delivery._wake.set()  # what send() does after queueing, here just before stop
            await delivery.stop()
            done, _pending = await asyncio.wait({delivery._task}, timeout=1)
            return bool(done)
        finally:
            await finish_drainer(delivery)
            await client.close()

    assert run(scenario())


def test_other_chats_are_not_held_up_by_a_waiting_one(redis_client, redis_url, fake_waha):
    fake_waha.fail_next = [(503, {"statusCode": 503})] * 2

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.route("5491100000009", Route(channel="waha",
                                                   chat_id="5491100000009@c.us"))
            await rig.outputs["waha"].send_text_message(USER, "para el primero")
            await rig.outputs["waha"].send_text_message("5491100000009", "para el segundo")
            assert fake_waha.texts("5491100000009@c.us") == ["para el segundo"]
            rig.delivery.start()
            await wait_until(rig.empty)

    run(scenario())
    assert fake_waha.texts(WAHA_CHAT) == ["para el primero"]


def test_a_drain_keeps_going_after_a_permanent_error(redis_client, redis_url, fake_waha):
    """A queued message the gateway refuses for good is parked (counted); the next ones go."""
    fake_waha.down = True

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            with replying_to(USER):
                for text in ("a", "b", "c"):
                    await rig.outputs["waha"].send_text_message(USER, text)
            fake_waha.down = False
            fake_waha.fail_next = [(400, {"statusCode": 400, "message": "bad chat"})]
            rig.delivery.start()
            await wait_until(rig.empty)
            return await rig.counter("failed_waha_400")

    assert run(scenario()) == 1
    assert fake_waha.texts(WAHA_CHAT) == ["b", "c"]
    [parked] = whatsapp.undelivered(redis_client)
    assert parked["text"] == "a" and "bad chat" in parked["reason"]


# --- errors: permanent, transient, Meta's window ------------------------------------------

def test_waha_400_is_permanent(redis_client, redis_url, fake_waha):
    fake_waha.fail_next = [(400, {"statusCode": 400, "message": "chatId is not valid"})]

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            with replying_to(USER):
                await rig.outputs["waha"].send_text_message(USER, "no llega")
                await rig.outputs["waha"].send_text_message(USER, "este sí")
            return (await rig.counter("failed_waha_400"), await rig.queued("waha", WAHA_CHAT),
                    await rig.empty())

    failed, queued, empty = run(scenario())
    assert failed == 1 and queued == [] and empty
    assert len(fake_waha.calls("/api/sendText")) == 2  # one try each, no retry
    assert fake_waha.texts(WAHA_CHAT) == ["este sí"]
    assert [p["text"] for p in whatsapp.undelivered(redis_client)] == ["no llega"]


def test_meta_131026_is_permanent(redis_client, redis_url, fake_meta):
    fake_meta.fail_next = [(400, graph_error(131026, "Message undeliverable"))]

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            with replying_to(USER):
                await rig.outputs["whatsapp"].send_text_message(USER, "no llega")
            return await rig.counter("failed_whatsapp_131026"), await rig.empty()

    assert run(scenario()) == (1, True)
    assert len(fake_meta.requests) == 1 and meta_texts(fake_meta) == []
    [parked] = whatsapp.undelivered(redis_client)
    assert parked["text"] == "no llega" and "131026" in parked["reason"]


@pytest.mark.parametrize("status, code", [(429, 130429), (400, 131056), (500, 131000)])
def test_meta_rate_limits_are_retried(redis_client, redis_url, fake_meta, status, code):
    fake_meta.fail_next = [(status, graph_error(code, "slow down"))]

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            with replying_to(USER):
                await rig.outputs["whatsapp"].send_text_message(USER, "hola")
            return await rig.empty()

    assert run(scenario())
    assert len(fake_meta.requests) == 2 and meta_texts(fake_meta) == ["hola"]


def test_a_lasting_meta_rate_limit_goes_through_the_outbox(redis_client, redis_url, fake_meta):
    fake_meta.fail_next = [(429, graph_error(130429, "Rate limit hit"))] * 4

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            with replying_to(USER):
                await rig.outputs["whatsapp"].send_text_message(USER, "uno")
                await rig.outputs["whatsapp"].send_text_message(USER, "dos")
            assert len(await rig.queued("whatsapp", USER)) == 2
            rig.delivery.start()
            await wait_until(rig.empty)

    run(scenario())
    assert meta_texts(fake_meta) == ["uno", "dos"]


def _template_bodies(fake) -> List[Dict[str, Any]]:
    return [m for m in fake.messages() if m.get("type") == "template"]


def test_meta_131047_on_a_proactive_message_sends_the_template(redis_client, redis_url,
                                                              fake_meta):
    fake_meta.fail_next = [(400, graph_error(131047, "Re-engagement message"))]

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            # no turn of this user is running: a proactive message (a worker's update)
            await rig.outputs["whatsapp"].send_text_message(USER, "Su ticket fue resuelto")
            return await rig.counter("reengagement_needed"), await rig.empty()

    assert run(scenario()) == (1, True)
    templates = _template_bodies(fake_meta)
    assert templates == [{"messaging_product": "whatsapp", "recipient_type": "individual",
                          "to": USER, "type": "template",
                          "template": {"name": "seguimiento_ticket",
                                       "language": {"code": "es"}}}]
    assert meta_texts(fake_meta) == []


def test_meta_131047_on_a_reply_sends_no_template(redis_client, redis_url, fake_meta):
    fake_meta.fail_next = [(400, graph_error(131047, "Re-engagement message"))]

    async def scenario():
        async with Rig(redis_url, meta=fake_meta) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            with replying_to(USER):
                await rig.outputs["whatsapp"].send_text_message(USER, "respuesta")
            return await rig.empty()

    assert run(scenario())
    assert len(fake_meta.requests) == 1 and fake_meta.messages() == []


def test_no_template_when_none_is_configured(redis_client, redis_url, fake_meta):
    fake_meta.fail_next = [(400, graph_error(131047, "Re-engagement message"))]

    async def scenario():
        async with Rig(redis_url, meta=fake_meta, reengagement_template=None) as rig:
            await rig.route(USER, Route(channel="whatsapp", chat_id=USER))
            await rig.outputs["whatsapp"].send_text_message(USER, "aviso")

    run(scenario())
    assert len(fake_meta.requests) == 1 and fake_meta.messages() == []


def test_a_late_131047_status_sends_the_template(channel_env, redis_client, fake_meta):
    """Meta often accepts the message (200 + wamid) and reports 131047 in a `failed` status."""

    async def scenario():
        channel = fresh(MetaInput, meta_settings(fake_meta.url))
        try:
            await save_route(channel.shared.redis, USER, Route(channel="whatsapp", chat_id=USER))
            await channel.output.send_text_message(USER, "Su ticket fue resuelto")  # proactive
            with replying_to(USER):
                await channel.output.send_text_message(USER, "una respuesta")
            sent_ids = [f"wamid.SENT{n:06d}" for n in (1, 2)]
            stored = [await channel.shared.redis.exists(
                redis_keys.sent_message("whatsapp", sid)) for sid in sent_ids]
            statuses = [{"id": sid, "status": "failed", "timestamp": "1689380458",
                         "recipient_id": USER,
                         "errors": [{"code": 131047, "title": "Re-engagement message"}]}
                        for sid in sent_ids]
            await channel.on_failed_statuses(statuses)
            await channel.on_failed_statuses(statuses[:1])  # a repeated status: no 2nd template
            counters = await channel.shared.redis.hgetall(redis_keys.counters())
            return stored, counters
        finally:
            await close_channel(channel)

    stored, counters = run(scenario())
    assert stored == [1, 0]  # only proactive messages are remembered
    assert len(_template_bodies(fake_meta)) == 1
    assert _template_bodies(fake_meta)[0]["to"] == USER
    assert int(counters[b"meta_failed_status"]) == 3


# --- opt-outs -----------------------------------------------------------------------------

def test_a_proactive_message_to_an_opted_out_user_is_withheld(redis_client, redis_url,
                                                              fake_waha):
    redis_client.sadd(redis_keys.opted_out_set(), USER)

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.outputs["waha"].send_text_message(USER, "Novedades de su ticket")
            with replying_to(USER):  # the answer to their own message still goes out
                await rig.outputs["waha"].send_text_message(USER, "Listo, no le escribiremos")
            return await rig.counter("withheld_opted_out")

    assert run(scenario()) == 1
    assert fake_waha.texts(WAHA_CHAT) == ["Listo, no le escribiremos"]


def test_a_queued_proactive_message_is_withheld_if_the_user_opts_out_meanwhile(
        redis_client, redis_url, fake_waha):
    fake_waha.down = True

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.outputs["waha"].send_text_message(USER, "aviso 1")
            await rig.outputs["waha"].send_text_message(USER, "aviso 2")
            await rig.redis.sadd(redis_keys.opted_out_set(), USER)
            fake_waha.down = False
            rig.delivery.start()
            await wait_until(rig.empty)
            return await rig.counter("withheld_opted_out")

    assert run(scenario()) == 2
    assert fake_waha.texts(WAHA_CHAT) == []


# --- offered buttons ----------------------------------------------------------------------

def test_a_plain_text_forgets_the_offered_buttons(redis_client, redis_url, fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            with replying_to(USER):
                await rig.outputs["waha"].send_text_with_buttons(USER, "¿Sí o no?",
                                                                 buttons_for("Sí", "No"))
                assert await rig.redis.exists(redis_keys.offered_buttons(USER))
                await rig.outputs["waha"].send_text_message(USER, "Gracias")
                return await rig.redis.exists(redis_keys.offered_buttons(USER))

    assert run(scenario()) == 0


# --- groups -------------------------------------------------------------------------------

def _group_route() -> Route:
    return Route(channel="waha", chat_id=GROUP, participant=f"{USER}@c.us", name="Ana",
                 phone=USER)


def test_a_group_reply_mentions_the_reporter(redis_client, redis_url, fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.route(GROUP_CONVERSATION, _group_route())
            with replying_to(GROUP_CONVERSATION):
                await rig.outputs["waha"].send_text_message(GROUP_CONVERSATION,
                                                            "Ya registré su reporte.")
                await rig.outputs["waha"].send_text_with_buttons(
                    GROUP_CONVERSATION, "¿Es urgente?", buttons_for("Sí", "No"))

    run(scenario())
    (first, second) = fake_waha.calls("/api/sendText")
    assert first["body"]["chatId"] == GROUP
    assert first["body"]["text"] == f"@{USER} Ya registré su reporte."
    assert first["body"]["mentions"] == [f"{USER}@c.us"]
    assert second["body"]["text"] == f"@{USER} ¿Es urgente?\n1. Sí\n2. No"
    assert second["body"]["mentions"] == [f"{USER}@c.us"]


REPORT_ID = f"false_{GROUP}_3A0F9C1E2B7D4411_{USER}@c.us"


def _in_a_turn(message_id: str = REPORT_ID, recovered: bool = False):
    return turn_replies.set(TurnReplies("waha", GROUP_CONVERSATION, message_id, recovered))


def test_a_group_turn_quotes_the_report_in_its_first_reply_only(redis_client, redis_url,
                                                                fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.route(GROUP_CONVERSATION, _group_route())
            token = _in_a_turn()
            try:
                with replying_to(GROUP_CONVERSATION):
                    await rig.outputs["waha"].send_text_message(GROUP_CONVERSATION,
                                                                "Ya registré su reporte.")
                    await rig.outputs["waha"].send_text_with_buttons(
                        GROUP_CONVERSATION, "¿Es urgente?", buttons_for("Sí", "No"))
            finally:
                turn_replies.reset(token)
            # a message outside any turn (a worker's announcement) quotes nothing
            await rig.outputs["waha"].send_text_message(GROUP_CONVERSATION, "Ticket #105.")

    run(scenario())
    first, second, third = fake_waha.calls("/api/sendText")
    assert first["body"]["reply_to"] == REPORT_ID
    assert first["body"]["text"] == f"@{USER} Ya registré su reporte."
    assert "reply_to" not in second["body"] and "reply_to" not in third["body"]


def test_quoting_is_a_setting_and_never_happens_in_a_direct_chat(redis_client, redis_url,
                                                                 fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha, quote_reports=False) as rig:
            await rig.route(GROUP_CONVERSATION, _group_route())
            token = _in_a_turn()
            try:
                with replying_to(GROUP_CONVERSATION):
                    await rig.outputs["waha"].send_text_message(GROUP_CONVERSATION, "Hola.")
            finally:
                turn_replies.reset(token)
        async with Rig(redis_url, waha=fake_waha) as rig:
            token = turn_replies.set(TurnReplies("waha", USER, f"false_{WAHA_CHAT}_AB12", False))
            try:
                with replying_to(USER):
                    await rig.outputs["waha"].send_text_message(USER, "Hola.")
            finally:
                turn_replies.reset(token)

    run(scenario())
    assert [call["body"].get("reply_to") for call in fake_waha.calls("/api/sendText")] == [
        None, None]


def test_a_reaction_from_the_outbox_is_put_on_the_report(redis_client, redis_url, fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.route(GROUP_CONVERSATION, _group_route())
            queued = await asyncio.to_thread(whatsapp.send_reaction, GROUP_CONVERSATION,
                                             REPORT_ID, "✅", redis_client)
            assert queued["kind"] == "reaction" and queued["chat_id"] == GROUP
            rig.delivery.start()
            await wait_until(lambda: fake_waha.reactions(), 10)
            await wait_until(rig.empty, 5)

    run(scenario())
    assert fake_waha.reactions() == [(REPORT_ID, "✅")]
    (call,) = fake_waha.calls("/api/reaction")
    assert call["body"]["session"] == "default" and call["headers"]["X-Api-Key"] == "waha-key"


def test_no_reaction_outside_a_waha_group(redis_client, redis_url, fake_waha):
    # a direct chat, and a conversation without a stored route: nothing is queued
    async def scenario():
        async with Rig(redis_url, waha=fake_waha):
            assert await asyncio.to_thread(whatsapp.send_reaction, USER, "false_x_AB", "✅",
                                           redis_client) is None
            assert await asyncio.to_thread(whatsapp.send_reaction, "g1203-99", "false_x_AB",
                                           "✅", redis_client) is None

    run(scenario())
    assert redis_client.zcard(redis_keys.outbox_due()) == 0


def test_a_long_group_reply_keeps_every_part_within_the_limit(redis_client, redis_url,
                                                              fake_waha):
    text = " ".join(f"palabra{n:04d}" for n in range(700))  # no better cut than spaces

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.route(GROUP_CONVERSATION, _group_route())
            with replying_to(GROUP_CONVERSATION):
                await rig.outputs["waha"].send_text_message(GROUP_CONVERSATION, text)

    run(scenario())
    parts = fake_waha.texts(GROUP)
    assert len(parts) >= 2
    assert all(len(part) <= 4096 for part in parts), [len(p) for p in parts]


def test_ask_in_direct_sends_to_the_participant_and_writes_the_alias(redis_client, redis_url,
                                                                     fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha, ask_in_direct=True) as rig:
            await rig.route(GROUP_CONVERSATION, _group_route())
            with replying_to(GROUP_CONVERSATION):
                await rig.outputs["waha"].send_text_message(GROUP_CONVERSATION,
                                                            "¿En qué sucursal está?")

    run(scenario())
    (call,) = fake_waha.calls("/api/sendText")
    assert call["body"]["chatId"] == f"{USER}@c.us"
    assert call["body"]["text"] == "¿En qué sucursal está?"
    assert "mentions" not in call["body"]
    assert redis_client.get(redis_keys.direct_alias(USER)) == GROUP_CONVERSATION.encode()
    assert 0 < redis_client.ttl(redis_keys.direct_alias(USER)) <= 24 * 3600


# --- missing routes -----------------------------------------------------------------------

def test_a_conversation_without_a_route_is_counted_not_sent(redis_client, redis_url,
                                                           fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            await rig.outputs["waha"].send_text_message("5491100000001", "¿Hola?")
            return await rig.counter("no_route")

    assert run(scenario()) == 1
    assert fake_waha.requests == []


# --- a turn run again after a crash ---------------------------------------------------------

def test_a_turn_run_again_sends_only_the_replies_the_first_run_did_not(redis_client,
                                                                      redis_url, fake_waha):
    """The first run sent two replies and died before Rasa saved the tracker; the re-run of
    the same message sends its first two again to Rasa's output, and only the third leaves."""
    long_reply = long_text(5000)  # two parts: a reply is skipped or sent whole

    async def turn(recovered: bool, texts: List[str], message_id: str = "false_1") -> None:
        async with Rig(redis_url, waha=fake_waha) as rig:
            with replying_to(USER):
                token = turn_replies.set(TurnReplies("waha", USER, message_id, recovered))
                try:
                    for text in texts:
                        await rig.outputs["waha"].send_text_message(USER, text)
                finally:
                    turn_replies.reset(token)

    run(turn(False, [long_reply, "¿En qué tienda?"]))
    first_run = fake_waha.texts(WAHA_CHAT)
    run(turn(True, [long_reply, "¿En qué tienda?", "Gracias."]))
    assert fake_waha.texts(WAHA_CHAT) == first_run + ["Gracias."]
    assert len(first_run) == 3  # the long reply's two parts and the question
    run(turn(False, ["¿En qué tienda?"], message_id="false_2"))  # a new message: sent
    assert fake_waha.texts(WAHA_CHAT)[-1] == "¿En qué tienda?"
    assert redis_client.ttl(redis_keys.reply_sent("waha", "false_1", 1)) > 23 * 3600


# --- what never blocks a chat, what waits for an operator, what is given up ----------------

class Told:
    """The support team's notices the delivery asked for."""

    def __init__(self) -> None:
        self.notices: List[Any] = []

    async def __call__(self, notice, params, once_per, once_seconds) -> None:
        self.notices.append((notice, params, once_per))


def test_a_head_that_raises_something_unexpected_blocks_no_chat(redis_client, redis_url,
                                                                fake_waha):
    """A bug on one chat's head (here a text without its text: the sender raises KeyError) is
    retried later; the other chats' messages go out in the same pass."""
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            other = "5491166667777"
            await rig.route(other, Route(channel="waha", chat_id=f"{other}@c.us"))
            await rig.delivery.outbox.push({"channel": "waha", "chat_id": WAHA_CHAT,
                                            "conversation_id": USER, "kind": "text",
                                            "attempt": 1, "queued_at": time.time()})
            with replying_to(other):
                await rig.outputs["waha"].send_text_message(other, "para el otro")
            await rig.delivery.outbox.push({"channel": "waha", "chat_id": f"{other}@c.us",
                                            "conversation_id": other, "kind": "text",
                                            "text": "en cola", "mentions": [], "attempt": 1,
                                            "queued_at": time.time()})
            rig.delivery.start()
            await wait_until(lambda: len(fake_waha.texts(f"{other}@c.us")) == 2, timeout=10)
            head = (await rig.queued("waha", WAHA_CHAT))[0]
            return head["attempt"]

    assert run(scenario()) == 2  # counted as an attempt, retried later, still there
    assert fake_waha.texts("5491166667777@c.us") == ["para el otro", "en cola"]


def test_refused_credentials_keep_messages_waiting_and_tell_an_operator(redis_client,
                                                                        redis_url, fake_waha):
    told = Told()
    fake_waha.fail_next = [(401, {"message": "Unauthorized", "statusCode": 401})] * 3

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            rig.delivery.tell_support = told
            with replying_to(USER):
                await rig.outputs["waha"].send_text_message(USER, "espera la clave")
            queued = await rig.queued("waha", WAHA_CHAT)
            rig.delivery.start()
            await wait_until(rig.empty, timeout=10)  # the key works again
            return queued

    queued = run(scenario())
    assert [m["text"] for m in queued] == ["espera la clave"]  # kept, not dropped
    assert fake_waha.texts(WAHA_CHAT) == ["espera la clave"]
    assert {(n, o) for n, _p, o in told.notices} == {("refused_waha", "gateway_refused:waha")}
    assert whatsapp.undelivered(redis_client) == []


def test_a_message_not_delivered_in_time_is_parked_and_the_team_told(redis_client, redis_url,
                                                                     fake_waha):
    told = Told()

    async def scenario():
        async with Rig(redis_url, waha=fake_waha, outbox_max_age_seconds=60) as rig:
            rig.delivery.tell_support = told
            await rig.delivery.outbox.push({
                "channel": "waha", "chat_id": WAHA_CHAT, "conversation_id": USER,
                "kind": "text", "text": "viejo", "mentions": [], "attempt": 7,
                "queued_at": time.time() - 3600})
            await rig.delivery.outbox.push({
                "channel": "waha", "chat_id": WAHA_CHAT, "conversation_id": USER,
                "kind": "text", "text": "nuevo", "mentions": [], "attempt": 0,
                "queued_at": time.time()})
            rig.delivery.start()
            await wait_until(rig.empty, timeout=10)

    run(scenario())
    assert fake_waha.texts(WAHA_CHAT) == ["nuevo"]
    [parked] = whatsapp.undelivered(redis_client)
    assert parked["text"] == "viejo" and "1.0 h" in parked["reason"]
    [(notice, params, once_per)] = told.notices
    assert notice == "outbound_parked" and params["id"] == parked["id"]
    assert USER not in str(params)  # the number masked
    whatsapp.resend(redis_client, parked["id"])  # an operator sends it again
    assert whatsapp.undelivered(redis_client) == []
    [again] = [json.loads(raw) for raw in redis_client.lrange(redis_keys.outbox("waha", WAHA_CHAT), 0, -1)]
    assert again["text"] == "viejo" and again["attempt"] == 0


def test_replies_wait_while_the_waha_session_is_down_and_go_when_it_works(redis_client,
                                                                          redis_url, fake_waha):
    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            assert await whatsapp.record_status(rig.redis, "waha", "FAILED") == "down"
            assert await whatsapp.record_status(rig.redis, "waha", "FAILED") == ""  # the same
            with replying_to(USER):
                await rig.outputs["waha"].send_text_message(USER, "espera la sesión")
            rig.delivery.start()
            await asyncio.sleep(0.5)
            tried = len(fake_waha.calls("/api/sendText"))
            assert await whatsapp.record_status(rig.redis, "waha", "WORKING") == "up"
            await wait_until(rig.empty, timeout=5)
            return tried

    assert run(scenario()) == 0  # nothing was tried while the session was down
    assert fake_waha.texts(WAHA_CHAT) == ["espera la sesión"]


def test_an_outbox_head_that_is_json_but_no_message_is_parked_and_the_chat_goes_on(
        redis_client, redis_url, fake_waha):
    """A list where a message should be raised at every drainer pass and was never parked
    (issue 12's poison head drill, tests/faults/test_whatsapp_outbound.py); the operator's
    listing read it without crashing."""
    key = redis_keys.outbox("waha", WAHA_CHAT)

    async def scenario():
        async with Rig(redis_url, waha=fake_waha) as rig:
            redis_client.rpush(key, json.dumps(["no", "es", "un", "mensaje"]))
            await rig.delivery.outbox.push({
                "channel": "waha", "chat_id": WAHA_CHAT, "conversation_id": USER,
                "kind": "text", "text": "detrás", "mentions": [], "attempt": 0,
                "queued_at": time.time()})
            rig.delivery.start()
            await wait_until(rig.empty, timeout=10)

    run(scenario())
    assert fake_waha.texts(WAHA_CHAT) == ["detrás"]
    [parked] = whatsapp.undelivered(redis_client)
    assert parked["reason"] == "unreadable entry" and parked["chat_id"] is None
    assert "mensaje" in parked["text"]
