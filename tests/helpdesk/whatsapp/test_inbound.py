"""`InboundLog.accept`, the one atomic step between a webhook and its turn: dedupe, opt-outs,
the per-user rate limit, and what the stream holds."""
import asyncio
import time
from typing import List, Tuple

from helpdesk import redis_keys
from helpdesk.whatsapp import inbound
from helpdesk.whatsapp import InboundLog, InboundMessage, Media
from tests.connectors.whatsapp.support import (
    USER,
    inbound_entries,
    inbound_length,
    redis_for,
    run,
)

OTHER_USER = "5491155556666"
PARTITIONS = 8


def message(number: int = 1, conversation: str = USER, text: str = "hola",
            opt_word=None, channel: str = "waha") -> InboundMessage:
    return InboundMessage(channel=channel, message_id=f"false_{conversation}_{number:04d}",
                          conversation_id=conversation, chat_id=f"{conversation}@c.us",
                          kind="text", text=text, phone=conversation, opt_word=opt_word)


async def _accept_all(redis_url: str, messages: List[InboundMessage], limit: int = 0,
                      window: int = 60, cooldown: int = 60, pause: float = 0
                      ) -> List[Tuple[str, str]]:
    client = redis_for(redis_url)
    try:
        log = InboundLog(client, 3600, limit, window, cooldown, PARTITIONS)
        outcomes = []
        for item in messages:
            if item is None:  # a pause in the sequence
                await asyncio.sleep(pause)
                continue
            outcomes.append(await log.accept(item))
        return outcomes
    finally:
        await client.close()


def accept_all(redis_url, messages, **kwargs) -> List[str]:
    return [outcome for outcome, _entry in run(_accept_all(redis_url, messages, **kwargs))]


def test_accepted_then_duplicate(redis_url, redis_client):
    results = run(_accept_all(redis_url, [message(1), message(1)]))
    (first, entry), (second, none) = results
    assert first == inbound.ACCEPTED and entry
    assert second == inbound.DUPLICATE and none is None
    assert inbound_length(redis_client) == 1
    ttl = redis_client.ttl(redis_keys.inbound_seen("waha", message(1).message_id))
    assert 3590 < ttl <= 3600


def test_same_id_on_another_channel_is_not_a_duplicate(redis_url, redis_client):
    assert accept_all(redis_url, [message(1), message(1, channel="whatsapp")]) == [
        inbound.ACCEPTED, inbound.ACCEPTED]


def test_three_concurrent_deliveries_give_one_accepted(redis_url, redis_client):
    async def scenario():
        clients = [redis_for(redis_url) for _ in range(3)]
        try:
            logs = [InboundLog(client, 3600, 20, 60, 60, PARTITIONS) for client in clients]
            return await asyncio.gather(*(log.accept(message(7)) for log in logs))
        finally:
            for client in clients:
                await client.close()

    outcomes = sorted(outcome for outcome, _ in run(scenario()))
    assert outcomes == [inbound.ACCEPTED, inbound.DUPLICATE, inbound.DUPLICATE]
    assert inbound_length(redis_client) == 1


def test_opted_out_users_are_dropped_unless_they_opt_back_in(redis_url, redis_client):
    redis_client.sadd(redis_keys.opted_out_set(), USER)
    outcomes = accept_all(redis_url, [
        message(1), message(2, text="BAJA", opt_word="out"),
        message(3, text="alta", opt_word="in"), message(4, conversation=OTHER_USER),
    ])
    assert outcomes == [inbound.OPTED_OUT, inbound.OPTED_OUT, inbound.ACCEPTED,
                        inbound.ACCEPTED]
    # a dropped message's id is still remembered: a redelivery is not counted again
    assert accept_all(redis_url, [message(1)]) == [inbound.DUPLICATE]


def test_rate_limit_then_cool_down_then_accepted_again(redis_url, redis_client):
    sequence = [message(n) for n in range(1, 6)] + [None] + [message(6), message(7)]
    started = time.monotonic()
    outcomes = accept_all(redis_url, sequence, limit=3, window=60, cooldown=1, pause=1.1)
    assert outcomes == [
        inbound.ACCEPTED, inbound.ACCEPTED, inbound.ACCEPTED,
        inbound.RATE_LIMITED_FIRST,  # told once
        inbound.RATE_LIMITED,  # during the cool-down
        inbound.ACCEPTED, inbound.ACCEPTED,  # after it
    ]
    # every message is recorded; the two over the limit are marked to be kept, not answered
    assert inbound_length(redis_client) == 7
    marked = [fields.get(b"r") for _stream, entries in redis_client.xread(
        {inbound.stream(p): "0" for p in range(PARTITIONS)}) for _id, fields in entries]
    assert marked == [None, None, None, b"1", b"1", None, None]


def test_rate_limit_is_per_user_and_opt_words_pass_it(redis_url, redis_client):
    sequence = [message(1), message(2), message(3),
                message(4, conversation=OTHER_USER),
                message(5, text="BAJA", opt_word="out"),
                message(6, text="alta", opt_word="in")]
    assert accept_all(redis_url, sequence, limit=2, cooldown=60) == [
        inbound.ACCEPTED, inbound.ACCEPTED, inbound.RATE_LIMITED_FIRST,
        inbound.ACCEPTED, inbound.ACCEPTED, inbound.ACCEPTED]


def test_rate_window_expires(redis_url, redis_client):
    sequence = [message(1), message(2), None, message(3), message(4)]
    assert accept_all(redis_url, sequence, limit=2, window=1, cooldown=60, pause=1.1) == [
        inbound.ACCEPTED] * 4


def test_limit_zero_means_no_limit(redis_url, redis_client):
    assert accept_all(redis_url, [message(n) for n in range(30)], limit=0) == [
        inbound.ACCEPTED] * 30


def test_stream_contents_round_trip(redis_url, redis_client):
    rich = InboundMessage(
        channel="waha", message_id="false_120363@g.us_ABC_5491122334455@c.us",
        conversation_id="g120363-5491122334455", chat_id="120363@g.us", kind="media",
        text="Así quedó 😀 la pantalla", participant="5491122334455@c.us",
        phone="5491122334455", name="Ana Pérez", is_group=True, mentions_bot=True,
        media=Media(kind="image", mime_type="image/jpeg", url="http://w/api/files/a.jpg",
                    filename="captura.jpg"),
        location={"latitude": "-34.6", "longitude": "-58.4"}, lid=None,
        timestamp=1667561485.0, received_at=1667561486.5, correlation_id="c0ffee",
    )
    plain = message(2)
    results = run(_accept_all(redis_url, [rich, plain]))
    entries = inbound_entries(redis_client)
    assert [e[0].decode() for e in entries] == [entry for _, entry in results]
    decoded = [InboundMessage.from_json(fields[b"m"]) for _id, fields in entries]
    assert decoded == [rich, plain]
    assert isinstance(decoded[0].media, Media) and decoded[1].media is None


def test_ensure_group_and_finish(redis_url, redis_client):
    partition = inbound.partition_of(USER, PARTITIONS)
    stream = inbound.stream(partition)

    async def scenario():
        client = redis_for(redis_url)
        try:
            await inbound.ensure_group(client, partition)
            await inbound.ensure_group(client, partition)  # BUSYGROUP is not an error
            log = InboundLog(client, 3600, 0, 60, 60, PARTITIONS)
            await log.accept(message(1))
            await log.accept(message(2))
            read = await client.xreadgroup(inbound.GROUP, "c1", {stream: ">"}, count=10)
            ids = [entry_id.decode() for entry_id, _ in read[0][1]]
            pending_before = (await client.xpending(stream, inbound.GROUP))["pending"]
            await inbound.finish(client, partition, ids[:1])
            pending_after = (await client.xpending(stream, inbound.GROUP))["pending"]
            return (pending_before, pending_after, await client.xlen(stream),
                    await inbound.backlog(client, PARTITIONS))
        finally:
            await client.close()

    assert run(scenario()) == (2, 1, 1, 1)


def test_a_conversation_always_lands_in_the_same_partition(redis_url, redis_client):
    conversations = [f"54911{n:08d}" for n in range(2000)] + [
        "120363012345678901@g.us", "120363012345678901@g.us:5491155556666"]
    for conversation in conversations:
        partition = inbound.partition_of(conversation, PARTITIONS)
        assert 0 <= partition < PARTITIONS
        assert inbound.partition_of(conversation, PARTITIONS) == partition
    spread = [sum(1 for c in conversations if inbound.partition_of(c, PARTITIONS) == p)
              for p in range(PARTITIONS)]
    assert min(spread) > len(conversations) / PARTITIONS * 0.8  # evenly shared
    assert inbound.partition_of("5491155556666", 1) == 0
    messages = [message(n, conversation=c) for n, c in enumerate([USER, OTHER_USER] * 3)]
    accept_all(redis_url, messages)
    for conversation in (USER, OTHER_USER):
        stream = inbound.stream(inbound.partition_of(conversation, PARTITIONS))
        held = [InboundMessage.from_json(fields[b"m"]).conversation_id
                for _id, fields in redis_client.xrange(stream)]
        assert held.count(conversation) == 3


def test_leases_one_holder_renewed_released_and_servers_counted(redis_url, redis_client):
    async def scenario():
        client = redis_for(redis_url)
        try:
            one = inbound.Leases(client, "server-1", lease_seconds=0.3)
            two = inbound.Leases(client, "server-2", lease_seconds=0.3)
            steps = {"one takes 3": await one.acquire(3), "two is refused": await two.acquire(3)}
            steps["one still holds"] = await one.holds(3) and not await two.holds(3)
            await asyncio.sleep(0.2)
            steps["renewed, none lost"] = await one.renew([3]) == []
            await asyncio.sleep(0.2)  # past the first lease: the renewal kept it
            steps["still held"] = await one.holds(3)
            steps["two's release does nothing"] = (await two.release(3)) is None and (
                await one.holds(3))
            await one.release(3)
            steps["two takes it"] = await two.acquire(3)
            steps["one lost it"] = await one.renew([3]) == [3]
            steps["servers"] = (await one.beat(), await two.beat())
            await asyncio.sleep(0.35)
            steps["one stopped beating"] = (await two.beat(), await two.running())
            await two.leave()
            steps["none left"] = await two.running()
            return steps
        finally:
            await client.close()

    steps = run(scenario())
    assert steps == {
        "one takes 3": True, "two is refused": False, "one still holds": True,
        "renewed, none lost": True, "still held": True, "two's release does nothing": True,
        "two takes it": True, "one lost it": True, "servers": (1, 2),
        "one stopped beating": (1, ["server-2"]), "none left": [],
    }


def test_an_accepted_edit_leaves_its_text_for_the_original_and_nothing_else_does(
        redis_url, redis_client):
    """An edit's new text waits under the original's id for the dedupe window (its turn reads
    it if it has not run); a duplicate edit, an opted-out user's edit, a revoke and an edit
    without text leave nothing."""
    def change(number, kind, original, text="", conversation=USER):
        changed = message(number, conversation=conversation, text=text, channel="whatsapp")
        changed.kind, changed.original_id = kind, original
        return changed

    edit = change(2, "edit", "wamid.original", "la caja 3 no enciende")
    assert accept_all(redis_url, [edit, edit]) == ["accepted", "duplicate"]
    key = redis_keys.inbound_edit("whatsapp", "wamid.original")
    assert redis_client.get(key) == "la caja 3 no enciende".encode()
    assert 3500 < redis_client.ttl(key) <= 3600
    assert accept_all(redis_url, [change(3, "revoke", "wamid.gone"),
                                  change(4, "edit", "wamid.empty")]) == ["accepted"] * 2
    assert not redis_client.exists(redis_keys.inbound_edit("whatsapp", "wamid.gone"))
    assert not redis_client.exists(redis_keys.inbound_edit("whatsapp", "wamid.empty"))
    redis_client.sadd(redis_keys.opted_out_set(), OTHER_USER)
    assert accept_all(redis_url, [change(5, "edit", "wamid.other", "x",
                                         conversation=OTHER_USER)]) == ["opted_out"]
    assert not redis_client.exists(redis_keys.inbound_edit("whatsapp", "wamid.other"))
