"""`InboundConsumer` on the real Redis streams, with a handler that records what it gets:
order per conversation, concurrency, debounce, acknowledgement, failures, and the partitions'
leases: take-over from a dead server, sharing between live ones, a lease lost, the old stream."""
import asyncio
import contextlib
import logging
import time
from typing import Any, Dict, List, Optional

from connectors.whatsapp.consumer import TURN_PROCESS, InboundConsumer, TurnDeferred
from helpdesk import redis_keys
from helpdesk.metrics import TURN_SECONDS
from helpdesk.whatsapp import inbound
from helpdesk.whatsapp import InboundLog, InboundMessage
from tests.connectors.whatsapp.support import redis_for, run, tiny_config, wait_until

PARTITIONS = tiny_config().inbound_partitions

_ids = iter(range(1, 1_000_000))


def message(conversation: str, text: str, kind: str = "text", payload: Optional[str] = None,
            opt_word: Optional[str] = None) -> InboundMessage:
    return InboundMessage(channel="waha", message_id=f"false_{conversation}_{next(_ids)}",
                          conversation_id=conversation, chat_id=f"{conversation}@c.us",
                          kind=kind, text=text, payload=payload, opt_word=opt_word)


class Recorder:
    """The turn handler: records each call, optionally slow or failing."""

    def __init__(self, delays: Optional[Dict[str, float]] = None, default_delay: float = 0,
                 fail_on: str = "", client: Any = None,
                 fail_times: Optional[Dict[str, int]] = None,
                 defer_times: Optional[Dict[str, int]] = None) -> None:
        self.delays = delays or {}
        self.default_delay = default_delay
        self.fail_on = fail_on
        self.fail_times = dict(fail_times or {})  # text -> how many more times it fails
        self.defer_times = dict(defer_times or {})  # text -> how many more times it waits
        self.client = client  # to look at the stream while a turn runs
        self.calls: List[Dict[str, Any]] = []
        self.running = 0
        self.max_running = 0
        self.pending_during: List[int] = []

    async def __call__(self, messages: List[InboundMessage], recovered: bool) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        start = time.monotonic()
        conversation = messages[0].conversation_id
        try:
            if self.client is not None:
                summary = await self.client.xpending(stream_of(conversation), inbound.GROUP)
                self.pending_during.append(summary["pending"])
            await asyncio.sleep(self.delays.get(conversation, self.default_delay))
            if self.fail_on and any(m.text == self.fail_on for m in messages):
                raise RuntimeError("the turn broke")
            for m in messages:
                if self.defer_times.get(m.text, 0) > 0:
                    self.defer_times[m.text] -= 1
                    raise TurnDeferred("the action server is out of reach")
                if self.fail_times.get(m.text, 0) > 0:
                    self.fail_times[m.text] -= 1
                    raise ConnectionError("Redis went away")
        finally:
            self.running -= 1
            self.calls.append({"conversation": conversation,
                               "texts": [m.text for m in messages],
                               "recovered": recovered, "start": start,
                               "end": time.monotonic()})

    def texts(self, conversation: str) -> List[List[str]]:
        return [c["texts"] for c in self.calls if c["conversation"] == conversation]

    def handled(self) -> int:
        return sum(len(c["texts"]) for c in self.calls)


def stream_of(conversation: str) -> str:
    return inbound.stream(inbound.partition_of(conversation, PARTITIONS))


async def accept(client: Any, *messages: InboundMessage) -> None:
    log = InboundLog(client, 3600, 0, 60, 60, PARTITIONS)
    for item in messages:
        outcome, _ = await log.accept(item)
        assert outcome == inbound.ACCEPTED


async def stop(consumer: InboundConsumer, grace: float = 2) -> None:
    await consumer.stop(grace_seconds=grace)
    for task in consumer._tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stream_empty(client: Any) -> bool:
    return await inbound.backlog(client, PARTITIONS) == 0


async def pending(client: Any) -> int:
    total = 0
    for partition in range(PARTITIONS):
        if await client.exists(inbound.stream(partition)):
            total += (await client.xpending(inbound.stream(partition), inbound.GROUP))["pending"]
    return total


def test_order_per_conversation_while_others_go_ahead(redis_client, redis_url):
    recorder = Recorder(delays={"A": 0.25}, default_delay=0.01)

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(), name="c1")
        try:
            await accept(client, *(message(conv, f"{conv}{n}") for n in (1, 2, 3)
                                   for conv in "ABC"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 9)
            await wait_until(lambda: stream_empty(client))
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    for conv in "ABC":
        assert recorder.texts(conv) == [[f"{conv}1"], [f"{conv}2"], [f"{conv}3"]]
        calls = [c for c in recorder.calls if c["conversation"] == conv]
        assert all(later["start"] >= earlier["end"] for earlier, later in zip(calls, calls[1:]))
    first_a_done = min(c["end"] for c in recorder.calls if c["conversation"] == "A")
    last_others_done = max(c["end"] for c in recorder.calls if c["conversation"] != "A")
    assert last_others_done < first_a_done  # the slow conversation blocked no one
    assert not any(c["recovered"] for c in recorder.calls)


def test_the_concurrency_limit_is_honoured(redis_client, redis_url):
    recorder = Recorder(default_delay=0.1)

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(max_concurrent_turns=2),
                                   name="c1")
        try:
            await accept(client, *(message(f"conv{n}", "hola") for n in range(6)))
            started = time.monotonic()
            consumer.start()
            await wait_until(lambda: recorder.handled() == 6)
            return time.monotonic() - started
        finally:
            await stop(consumer)
            await client.close()

    elapsed = run(scenario())
    assert recorder.max_running == 2
    assert elapsed >= 0.3  # three rounds of two


def test_debounce_merges_a_burst_of_short_texts(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(debounce_ms=300), name="c1")
        try:
            consumer.start()
            await asyncio.sleep(0.1)  # the consumer is reading
            for text in ("hola", "la caja 3", "no enciende"):
                await accept(client, message("A", text))
                await asyncio.sleep(0.03)
            await wait_until(lambda: recorder.handled() == 3)
            await wait_until(lambda: stream_empty(client))
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    assert recorder.texts("A") == [["hola", "la caja 3", "no enciende"]]


def test_debounce_does_not_merge_long_texts_payloads_or_opt_words(redis_client, redis_url):
    recorder = Recorder()
    long_text = ("La impresora fiscal de la caja 3 no imprime desde ayer a la tarde "
                 "y ya la reinicié")
    assert len(long_text) > 80

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(debounce_ms=200), name="c1")
        try:
            await accept(client, message("A", "hola"), message("A", long_text),
                         message("A", "gracias"),
                         message("B", "Sí", kind="interactive", payload="/affirm"),
                         message("B", "ok"), message("B", "BAJA", opt_word="out"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 6)
            await wait_until(lambda: stream_empty(client))
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    assert recorder.texts("A") == [["hola"], [long_text], ["gracias"]]
    assert recorder.texts("B") == [["Sí"], ["ok"], ["BAJA"]]


def test_debounce_off_runs_one_turn_per_message(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(debounce_ms=0), name="c1")
        try:
            await accept(client, message("A", "hola"), message("A", "chau"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 2)
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    assert recorder.texts("A") == [["hola"], ["chau"]]


def test_entries_are_acknowledged_and_deleted_after_the_turn(redis_client, redis_url):
    async def scenario():
        client = redis_for(redis_url)
        recorder = Recorder(client=client)
        consumer = InboundConsumer(client, recorder, tiny_config(), name="c1")
        try:
            await accept(client, message("A", "uno"), message("A", "dos"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 2)
            await wait_until(lambda: stream_empty(client))
            return recorder, await pending(client), await consumer.leases.running()
        finally:
            await stop(consumer)
            await client.close()

    recorder, left, running = run(scenario())
    assert recorder.pending_during[0] == 2  # still pending while its turn ran
    assert recorder.pending_during[1] == 1
    assert left == 0 and running == ["c1"]
    assert redis_client.zcard(redis_keys.inbound_servers()) == 0  # left on stop
    assert not any(redis_client.exists(inbound.lease_key(p)) for p in range(PARTITIONS))


def test_a_failing_turn_is_tried_again_and_the_later_messages_wait(redis_client, redis_url,
                                                                   caplog):
    recorder = Recorder(fail_times={"rompe": 2})

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(turn_retry_seconds=(0.05, 0.1)),
                                   name="c1")
        try:
            await accept(client, message("A", "rompe"), message("A", "sigue"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 4)
            await wait_until(lambda: stream_empty(client))
            return await pending(client), await client.xlen(redis_keys.inbound_parked())
        finally:
            await stop(consumer)
            await client.close()

    with caplog.at_level(logging.ERROR, logger="connectors.whatsapp.consumer"):
        assert run(scenario()) == (0, 0)
    assert recorder.texts("A") == [["rompe"], ["rompe"], ["rompe"], ["sigue"]]
    assert [c["recovered"] for c in recorder.calls] == [False, True, True, False]
    failed = [r for r in caplog.records if r.getMessage() == "turn failed"]
    assert [r.attempt for r in failed] == [1, 2] and failed[0].exc_info
    # turn_seconds{process}: the two turns that ran, not the two failed attempts
    counts = {s.labels["process"]: s.value for s in TURN_SECONDS.read(redis_client).samples
              if s.name == "turn_seconds_count"}
    assert counts == {TURN_PROCESS: 2} and TURN_PROCESS.startswith("rasa@")


def test_a_deferred_turn_waits_as_long_as_the_outage_and_is_never_parked(redis_client,
                                                                          redis_url):
    """Six deferrals with two retries allowed: a failure would be parked at the third; a turn
    waiting for the action server is run until it can run, the later message behind it."""
    recorder = Recorder(defer_times={"ticket": 6})
    told = []

    async def on_parked(parked_message, reason, parked_id):
        told.append(parked_message.text)

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder,
                                   tiny_config(turn_retry_seconds=(0.05, 0.05),
                                               outage_retry_seconds=0.1, max_starts=1),
                                   name="c1", on_parked=on_parked)
        try:
            await accept(client, message("A", "ticket"), message("A", "sigue"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 8)
            await wait_until(lambda: stream_empty(client))
            return await pending(client), await client.xlen(redis_keys.inbound_parked())
        finally:
            await stop(consumer)
            await client.close()

    assert run(scenario()) == (0, 0)
    assert told == []
    assert recorder.texts("A") == [["ticket"]] * 7 + [["sigue"]]
    # every run after the first may find part of the turn done: it checks, as after a crash
    assert [c["recovered"] for c in recorder.calls] == [False] + [True] * 6 + [False]
    waits = [b["start"] - a["end"] for a, b in zip(recorder.calls, recorder.calls[1:6])]
    assert min(waits) >= 0.09  # outage_retry_seconds between runs, not the retry waits


def test_a_turn_that_keeps_failing_is_parked_told_and_the_conversation_goes_on(redis_client,
                                                                             redis_url):
    recorder = Recorder(fail_on="rompe")
    told = []

    async def on_parked(parked_message, reason, parked_id):
        told.append((parked_message.text, reason, parked_id))

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(turn_retry_seconds=(0.05, 0.05)),
                                   name="c1", on_parked=on_parked)
        try:
            await accept(client, message("A", "rompe"), message("A", "sigue"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 4)
            await wait_until(lambda: stream_empty(client))
            await wait_until(lambda: len(told) == 1)
            return await pending(client)
        finally:
            await stop(consumer)
            await client.close()

    assert run(scenario()) == 0
    assert recorder.texts("A") == [["rompe"], ["rompe"], ["rompe"], ["sigue"]]
    [entry] = inbound.parked(redis_client)
    assert entry["text"] == "rompe" and entry["conversation_id"] == "A" and entry["readable"]
    assert "3 attempts failed" in entry["reason"] and "the turn broke" in entry["reason"]
    assert told == [("rompe", entry["reason"], entry["id"])]
    assert not any(redis_client.hlen(redis_keys.inbound_starts(p))
                   for p in range(PARTITIONS))  # nothing left counting


def test_a_parked_message_replayed_runs_again(redis_client, redis_url):
    recorder = Recorder(fail_on="rompe")

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(turn_retry_seconds=()),
                                   name="c1")
        try:
            await accept(client, message("A", "rompe"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 1)
            await wait_until(lambda: client.xlen(redis_keys.inbound_parked()))
            recorder.fail_on = ""  # the cause was fixed
            [entry] = await asyncio.to_thread(inbound.parked, redis_client)
            await asyncio.to_thread(inbound.replay, redis_client, entry["id"], PARTITIONS)
            await wait_until(lambda: recorder.handled() == 2)
            await wait_until(lambda: stream_empty(client))
            return await client.xlen(redis_keys.inbound_parked())
        finally:
            await stop(consumer)
            await client.close()

    assert run(scenario()) == 0
    assert recorder.texts("A") == [["rompe"], ["rompe"]]


def test_a_turn_that_hangs_is_stopped_at_its_deadline(redis_client, redis_url):
    recorder = Recorder(delays={"H": 30})

    async def scenario():
        client = redis_for(redis_url)
        config = tiny_config(turn_timeout_seconds=0.2, turn_retry_seconds=(0.05,),
                             max_concurrent_turns=1)
        consumer = InboundConsumer(client, recorder, config, name="c1")
        try:
            started = time.monotonic()
            await accept(client, message("H", "cuelga"), message("B", "hola"))
            consumer.start()
            await wait_until(lambda: client.xlen(redis_keys.inbound_parked()))
            await wait_until(lambda: stream_empty(client))
            return time.monotonic() - started
        finally:
            await stop(consumer)
            await client.close()

    elapsed = run(scenario())
    assert elapsed < 5
    assert recorder.texts("B") == [["hola"]]  # the one turn slot was given back
    assert recorder.texts("H") == [["cuelga"], ["cuelga"]]
    [entry] = inbound.parked(redis_client)
    assert "longer than 0.2 s" in entry["reason"]


def test_an_entry_started_too_often_is_parked_without_running(redis_client, redis_url):
    """Three servers died in its turn (out of memory): the fourth does not run it."""
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(max_starts=3), name="c1")
        try:
            await accept(client, message("A", "mata"), message("A", "sigue"))
            partition = inbound.partition_of("A", PARTITIONS)
            first_id = (await client.xrange(inbound.stream(partition), count=1))[0][0]
            await client.hset(redis_keys.inbound_starts(partition), first_id, 3)
            consumer.start()
            await wait_until(lambda: recorder.handled() == 1)
            await wait_until(lambda: stream_empty(client))
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    assert recorder.texts("A") == [["sigue"]]
    [entry] = inbound.parked(redis_client)
    assert entry["text"] == "mata" and "started 3 times" in entry["reason"]


def test_an_unreadable_entry_is_parked_and_the_rest_handled(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(), name="c1")
        try:
            await client.xadd(stream_of("A"), {"m": "{not json"})
            await accept(client, message("A", "hola"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 1)
            await wait_until(lambda: stream_empty(client))
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    assert recorder.texts("A") == [["hola"]]
    [entry] = inbound.parked(redis_client)
    assert entry["readable"] is False and entry["text"] == "{not json"
    assert entry["reason"] == "unreadable entry"


async def _read_as(client: Any, server: str, lease_ms: int) -> List[str]:
    """A server that leases every partition and reads all there is, then dies: its leases
    run out after `lease_ms` and its entries stay pending."""
    ids = []
    for partition in range(PARTITIONS):
        await client.set(inbound.lease_key(partition), server, px=lease_ms)
        await inbound.ensure_group(client, partition)
        answer = await client.xreadgroup(inbound.GROUP, server,
                                         {inbound.stream(partition): ">"}, count=100)
        ids += [entry_id.decode() for entry_id, _ in answer[0][1]] if answer else []
    return ids


def test_a_dead_servers_entries_are_taken_over_first_as_recovered(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(lease_seconds=0.5), name="c2")
        try:
            await accept(client, message("A", "a1"), message("B", "b1"), message("A", "a2"))
            assert len(await _read_as(client, "dead-1", lease_ms=400)) == 3
            await accept(client, message("A", "a3"))  # arrived after, never read
            consumer.start()
            await wait_until(lambda: recorder.handled() == 4)
            await accept(client, message("A", "a4"))
            await wait_until(lambda: recorder.handled() == 5)
            await wait_until(lambda: stream_empty(client))
            readers = {reader["name"] for p in range(PARTITIONS)
                       for reader in await client.xinfo_consumers(inbound.stream(p),
                                                                  inbound.GROUP)}
            return await pending(client), readers
        finally:
            await stop(consumer)
            await client.close()

    left, readers = run(scenario())
    assert left == 0 and readers == {b"c2"}  # the dead reader was forgotten
    assert [(c["texts"], c["recovered"]) for c in recorder.calls if c["conversation"] == "A"] == [
        (["a1"], True), (["a2"], True), (["a3"], False), (["a4"], False)]
    assert [(c["texts"], c["recovered"]) for c in recorder.calls
            if c["conversation"] == "B"] == [(["b1"], True)]


def test_a_live_servers_partitions_are_left_alone_until_its_lease_ends(redis_client,
                                                                      redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(lease_seconds=0.5), name="c2")
        try:
            await accept(client, message("A", "lento"))
            await _read_as(client, "busy-1", lease_ms=60_000)  # alive: it holds its leases
            consumer.start()
            await asyncio.sleep(1.2)
            before = recorder.handled(), consumer.held
            for partition in range(PARTITIONS):  # busy-1 stops and lets go
                await client.delete(inbound.lease_key(partition))
            await wait_until(lambda: recorder.handled() == 1, timeout=5)
            await wait_until(lambda: stream_empty(client))
            await wait_until(lambda: len(consumer.held) == PARTITIONS, timeout=5)
            return before, consumer.held
        finally:
            await stop(consumer)
            await client.close()

    before, after = run(scenario())
    assert before == (0, set())
    assert after == set(range(PARTITIONS))
    assert recorder.calls[0]["recovered"] is True


def test_a_turn_cut_by_shutdown_runs_again_on_the_next_consumer(redis_client, redis_url):
    first = Recorder(delays={"A": 5})
    second = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        try:
            old = InboundConsumer(client, first, tiny_config(), name="old")
            await accept(client, message("A", "hola"))
            old.start()
            await wait_until(lambda: first.running == 1)
            await stop(old, grace=0.1)  # the turn is cut: the entry stays pending
            assert await pending(client) == 1
            new = InboundConsumer(client, second, tiny_config(), name="new")
            new.start()  # the old one released its leases: no wait for them to expire
            try:
                await wait_until(lambda: second.handled() == 1, timeout=5)
                await wait_until(lambda: stream_empty(client))
            finally:
                await stop(new)
        finally:
            await client.close()

    run(scenario())
    assert second.calls[0]["texts"] == ["hola"] and second.calls[0]["recovered"] is True


def _in_order_once(recorders: List[Recorder], sent: Dict[str, List[str]]) -> None:
    calls = sorted((c for r in recorders for c in r.calls), key=lambda c: c["start"])
    for conversation, texts in sent.items():
        mine = [c for c in calls if c["conversation"] == conversation]
        assert [t for c in mine for t in c["texts"]] == texts, conversation
        assert all(later["start"] >= earlier["end"] for earlier, later in zip(mine, mine[1:]))


def test_two_servers_share_the_partitions_and_a_conversation_moves_in_order(redis_client,
                                                                           redis_url):
    first = Recorder(default_delay=0.02)
    second = Recorder(default_delay=0.02)
    conversations = [f"conv{n}" for n in range(24)]
    sent: Dict[str, List[str]] = {c: [] for c in conversations}

    async def send(client: Any, rounds: int) -> None:
        for _ in range(rounds):
            for conversation in conversations:
                text = f"{conversation}-{len(sent[conversation]) + 1}"
                sent[conversation].append(text)
                await accept(client, message(conversation, text))
            await asyncio.sleep(0.02)

    async def scenario():
        client = redis_for(redis_url)
        config = tiny_config(lease_seconds=1, max_concurrent_turns=4)
        one = InboundConsumer(client, first, config, name="server-1")
        two = InboundConsumer(client, second, config, name="server-2")
        try:
            one.start()
            await wait_until(lambda: len(one.held) == PARTITIONS)
            await send(client, 10)  # a backlog on server-1 while server-2 starts
            two.start()
            await send(client, 20)
            await wait_until(lambda: len(one.held) == len(two.held) == PARTITIONS // 2,
                             timeout=10)
            await send(client, 5)
            total = sum(len(t) for t in sent.values())
            await wait_until(lambda: first.handled() + second.handled() == total, timeout=30)
            await wait_until(lambda: stream_empty(client))
            return one.held, two.held
        finally:
            await stop(two)
            await stop(one)
            await client.close()

    held_one, held_two = run(scenario())
    assert held_one | held_two == set(range(PARTITIONS)) and not held_one & held_two
    assert second.handled() > 0 and first.handled() > 0
    _in_order_once([first, second], sent)


def test_a_lease_lost_leaves_what_was_queued_to_the_new_holder(redis_client, redis_url):
    first = Recorder(delays={"A": 0.5})
    second = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        partition = inbound.partition_of("A", PARTITIONS)
        stalled = InboundConsumer(client, first, tiny_config(lease_seconds=30), name="stalled")
        try:
            stalled.start()
            await wait_until(lambda: len(stalled.held) == PARTITIONS)
            await accept(client, message("A", "a1"), message("A", "a2"), message("A", "a3"))
            await wait_until(lambda: first.running == 1)
            # its lease ran out (as if the server had stalled) and another server took it
            await client.set(inbound.lease_key(partition), "other", px=60_000)
            await wait_until(lambda: first.handled() == 1, timeout=5)
            await asyncio.sleep(0.3)
            queued_left = await pending(client)
            await client.delete(inbound.lease_key(partition))
            # the lease is free again: the stalled one takes it back, pending entries first
            await wait_until(lambda: partition in stalled.held, timeout=5)
            await wait_until(lambda: first.handled() == 3, timeout=5)
            return queued_left
        finally:
            await stop(stalled)
            await client.close()

    assert run(scenario()) == 2  # a2, a3 were not run by a server without the lease
    assert first.texts("A") == [["a1"], ["a2"], ["a3"]]
    assert [c["recovered"] for c in first.calls] == [False, True, True]


def test_the_stream_of_the_previous_version_is_drained_first(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(lease_seconds=0.5), name="new")
        try:
            legacy = inbound.stream(inbound.LEGACY)
            await client.xgroup_create(legacy, inbound.GROUP, id="0", mkstream=True)
            for text in ("viejo-1", "viejo-2"):
                await client.xadd(legacy, {"m": message("A", text).to_json()})
            await client.xreadgroup(inbound.GROUP, "old-server", {legacy: ">"}, count=1)
            await client.xadd(legacy, {"m": message("A", "viejo-3").to_json()})
            await accept(client, message("A", "nuevo"))  # the new webhook's, in a partition
            consumer.start()
            await wait_until(lambda: recorder.handled() == 4)
            await wait_until(lambda: stream_empty(client))
            return await client.exists(legacy)
        finally:
            await stop(consumer)
            await client.close()

    assert run(scenario()) == 0  # the old stream is gone once drained
    assert recorder.texts("A") == [["viejo-1"], ["viejo-2"], ["viejo-3"], ["nuevo"]]
    assert [c["recovered"] for c in recorder.calls] == [True, False, False, False]
