"""`InboundConsumer` on the real Redis stream, with a handler that records what it gets:
order per conversation, concurrency, debounce, acknowledgement, failures, take-over."""
import asyncio
import contextlib
import logging
import time
from typing import Any, Dict, List, Optional

from connectors.whatsapp.consumer import InboundConsumer
from helpdesk import redis_keys
from helpdesk.whatsapp import inbound
from helpdesk.whatsapp import InboundLog, InboundMessage
from tests.connectors.whatsapp.support import redis_for, run, tiny_config, wait_until

_ids = iter(range(1, 1_000_000))


def message(conversation: str, text: str, kind: str = "text", payload: Optional[str] = None,
            opt_word: Optional[str] = None) -> InboundMessage:
    return InboundMessage(channel="waha", message_id=f"false_{conversation}_{next(_ids)}",
                          conversation_id=conversation, chat_id=f"{conversation}@c.us",
                          kind=kind, text=text, payload=payload, opt_word=opt_word)


class Recorder:
    """The turn handler: records each call, optionally slow or failing."""

    def __init__(self, delays: Optional[Dict[str, float]] = None, default_delay: float = 0,
                 fail_on: str = "", client: Any = None) -> None:
        self.delays = delays or {}
        self.default_delay = default_delay
        self.fail_on = fail_on
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
                summary = await self.client.xpending(inbound.STREAM, inbound.GROUP)
                self.pending_during.append(summary["pending"])
            await asyncio.sleep(self.delays.get(conversation, self.default_delay))
            if self.fail_on and any(m.text == self.fail_on for m in messages):
                raise RuntimeError("the turn broke")
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


async def accept(client: Any, *messages: InboundMessage) -> None:
    log = InboundLog(client, 3600, 0, 60, 60)
    for item in messages:
        outcome, _ = await log.accept(item)
        assert outcome == inbound.ACCEPTED


async def stop(consumer: InboundConsumer, grace: float = 2) -> None:
    await consumer.stop(grace_seconds=grace)
    for task in consumer._tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stream_empty(client: Any) -> bool:
    return await client.xlen(inbound.STREAM) == 0


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
            pending = (await client.xpending(inbound.STREAM, inbound.GROUP))["pending"]
            return recorder, pending, await client.exists(redis_keys.consumer_alive("c1"))
        finally:
            await stop(consumer)
            await client.close()

    recorder, pending, alive = run(scenario())
    assert recorder.pending_during[0] == 2  # still pending while its turn ran
    assert recorder.pending_during[1] == 1
    assert pending == 0 and alive == 1
    assert redis_client.exists(redis_keys.consumer_alive("c1")) == 0  # cleared on stop


def test_a_failing_turn_is_logged_and_still_acknowledged(redis_client, redis_url, caplog):
    recorder = Recorder(fail_on="rompe")

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(), name="c1")
        try:
            await accept(client, message("A", "rompe"), message("A", "sigue"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 2)
            await wait_until(lambda: stream_empty(client))
            return (await client.xpending(inbound.STREAM, inbound.GROUP))["pending"]
        finally:
            await stop(consumer)
            await client.close()

    with caplog.at_level(logging.ERROR, logger="connectors.whatsapp.consumer"):
        assert run(scenario()) == 0
    assert recorder.texts("A") == [["rompe"], ["sigue"]]
    failed = [r for r in caplog.records if r.getMessage() == "turn failed"]
    assert len(failed) == 1 and failed[0].conversation_id == "A" and failed[0].exc_info


def test_an_unreadable_entry_is_dropped_and_the_rest_handled(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(), name="c1")
        try:
            await client.xadd(inbound.STREAM, {"m": "{not json"})
            await accept(client, message("A", "hola"))
            consumer.start()
            await wait_until(lambda: recorder.handled() == 1)
            await wait_until(lambda: stream_empty(client))
        finally:
            await stop(consumer)
            await client.close()

    run(scenario())
    assert recorder.texts("A") == [["hola"]]


async def _read_as(client: Any, consumer_name: str, count: int = 100) -> List[str]:
    """Entries read (and so pending) on another consumer that never finishes them."""
    await inbound.ensure_group(client)
    answer = await client.xreadgroup(inbound.GROUP, consumer_name, {inbound.STREAM: ">"},
                                     count=count)
    return [entry_id.decode() for entry_id, _ in answer[0][1]] if answer else []


def test_entries_of_a_dead_consumer_are_taken_over_as_recovered(redis_client, redis_url):
    recorder = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder, tiny_config(), name="c2")
        try:
            await accept(client, message("A", "a1"), message("B", "b1"), message("A", "a2"))
            assert len(await _read_as(client, "dead-1")) == 3  # no heartbeat: it died
            consumer.start()
            await wait_until(lambda: recorder.handled() == 3)
            await accept(client, message("A", "a3"))  # a new one after the take-over
            await wait_until(lambda: recorder.handled() == 4)
            await wait_until(lambda: stream_empty(client))
            return (await client.xpending(inbound.STREAM, inbound.GROUP))["pending"]
        finally:
            await stop(consumer)
            await client.close()

    assert run(scenario()) == 0
    assert [(c["texts"], c["recovered"]) for c in recorder.calls
            if c["conversation"] == "A"] == [(["a1"], True), (["a2"], True), (["a3"], False)]
    assert [(c["texts"], c["recovered"]) for c in recorder.calls
            if c["conversation"] == "B"] == [(["b1"], True)]


def test_entries_of_a_live_consumer_are_left_alone_until_idle_too_long(redis_client,
                                                                      redis_url):
    recorder = Recorder()

    async def scenario(reclaim_idle: float, wait: float):
        client = redis_for(redis_url)
        consumer = InboundConsumer(client, recorder,
                                   tiny_config(reclaim_idle_seconds=reclaim_idle), name="c2")
        try:
            await client.set(redis_keys.consumer_alive("busy-1"), "1", ex=15)
            await accept(client, message("A", "lento"))
            await _read_as(client, "busy-1")
            await asyncio.sleep(wait)
            consumer.start()
            await asyncio.sleep(0.5)
            return recorder.handled()
        finally:
            await stop(consumer)
            await client.close()

    assert run(scenario(reclaim_idle=30, wait=0)) == 0
    assert redis_client.xlen(inbound.STREAM) == 1
    redis_client.flushdb()
    assert run(scenario(reclaim_idle=0.2, wait=0.3)) == 1
    assert recorder.calls[0]["recovered"] is True
    assert redis_client.xlen(inbound.STREAM) == 0


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
            assert (await client.xpending(inbound.STREAM, inbound.GROUP))["pending"] == 1
            new = InboundConsumer(client, second, tiny_config(), name="new")
            new.start()
            try:
                await wait_until(lambda: second.handled() == 1)
                await wait_until(lambda: stream_empty(client))
            finally:
                await stop(new)
        finally:
            await client.close()

    run(scenario())
    assert second.calls[0]["texts"] == ["hola"] and second.calls[0]["recovered"] is True


def test_two_live_servers_never_run_one_message_twice(redis_client, redis_url):
    first = Recorder(delays={"A": 0.6})
    second = Recorder()

    async def scenario():
        client = redis_for(redis_url)
        config = tiny_config(max_concurrent_turns=1, reclaim_idle_seconds=0.2)
        one = InboundConsumer(client, first, config, name="server-1")
        two = InboundConsumer(client, second, config, name="server-2")
        try:
            await accept(client, message("A", "a1"), message("B", "b1"))
            one.start()  # reads both; b1 waits for the one turn slot while a1 runs
            await asyncio.sleep(0.35)
            two.start()  # a live peer, reclaiming entries idle longer than 0.2 s
            await wait_until(lambda: stream_empty(client), timeout=5)
            await asyncio.sleep(0.3)
        finally:
            await stop(two)
            await stop(one)
            await client.close()

    run(scenario())
    handled = sorted(t for c in first.calls + second.calls for t in c["texts"])
    assert handled == ["a1", "b1"]
