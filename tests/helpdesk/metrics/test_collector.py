"""The scrape-time collector (helpdesk/metrics/collector.py) on a real Redis and a real SQLite
ledger: what the project's own code wrote (the inbound accept script, outboxes, circuit
breakers, the WAHA session, LLM usage, RQ jobs, tickets, shared histograms) comes out of
`/metrics`' text format with the right names, labels and values."""
import asyncio
import time
from typing import Dict, FrozenSet, Tuple

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.registry import FailedJobRegistry

from helpdesk import metrics, queues, redis_keys, whatsapp
from helpdesk.circuit import CircuitBreaker
from helpdesk.config import llm_config
from helpdesk.llm.budget import Usage, record_sync
from helpdesk.metrics import HelpdeskCollector, build_registry, render
from helpdesk.tickets import FAILURE_EXHAUSTED
from helpdesk.whatsapp import InboundLog, InboundMessage
from helpdesk.whatsapp.outbox import push_sync
from tests.helpdesk.tickets.test_ledger import make_ticket

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]
PARTITIONS = 2


def scrape(collector: HelpdeskCollector) -> Tuple[Samples, Dict[str, str]]:
    text, _content_type = render(build_registry(collector))
    samples: Samples = {}
    types: Dict[str, str] = {}
    for family in text_string_to_metric_families(text.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def message(message_id: str, conversation: str, kind: str = "text") -> InboundMessage:
    return InboundMessage(channel="waha", message_id=message_id, conversation_id=conversation,
                          chat_id=f"{conversation}@c.us", kind=kind, text="la caja no abre")


async def accept_messages(redis_url: str) -> None:
    """Three messages through the real accept script (one a duplicate), one read by a server."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        log = InboundLog(client, dedupe_ttl=600, rate_messages=20, rate_window=60,
                         rate_cooldown=60, partitions=PARTITIONS)
        for partition in range(PARTITIONS):
            await whatsapp.ensure_group(client, partition)
        for message_id in ("m1", "m2", "m1"):
            await log.accept(message(message_id, "5491100000001"))
        await log.accept(message("m3", "5491100000002"))
        busy = whatsapp.partition_of("5491100000001", PARTITIONS)
        await client.xreadgroup(whatsapp.GROUP, "server-a", {whatsapp.stream(busy): ">"}, count=1)
        await whatsapp.record_status(client, "waha", "SCAN_QR_CODE")
    finally:
        await client.close()


@pytest.fixture
def filled(redis_url, redis_client, ledger):
    """Every source the collector reads, filled by the project's own code where it writes."""
    asyncio.run(accept_messages(redis_url))
    client = redis_client
    # the channel's counters, as connectors/whatsapp/output.py and the fetcher write them
    client.hset(redis_keys.counters(), mapping={
        "sent_waha": 5, "failed_waha_422": 1, "outbox_queued": 3,
        metrics.media_field(metrics.STORED, "waha"): 2,
        metrics.media_field(metrics.NOT_STORED, "waha"): 1})
    metrics.count_ticket_failed(client, FAILURE_EXHAUSTED)
    # two replies waiting for one chat, one parked reply, one parked inbound message
    for text in ("uno", "dos"):
        push_sync(client, {"channel": "waha", "chat_id": "5491100000001@c.us",
                                    "kind": "text", "text": text})
    client.xadd(redis_keys.outbox_parked(), {"m": "{}", "reason": "refused"})
    client.xadd(redis_keys.inbound_parked(), {"m": "{}", "reason": "crash loop"})
    client.rpush(redis_keys.chatwoot_dead_letters(), "{}")
    # Zoho's circuit open, Chatwoot's closed
    CircuitBreaker(client, "zoho", failure_threshold=1).record_failure("503")
    # LLM usage through the budget's own recorder
    record_sync(client, llm_config(), Usage(use="intent", model="gpt-4o-mini",
                                            prompt_tokens=1000, completion_tokens=200))
    client.hincrby(redis_keys.llm_usage_total(), "intent:failed", 2)
    # RQ: one job waiting in zoho, one failed in default
    Queue(queues.ZOHO, connection=client).enqueue(queues.DELIVER_TICKET, "t-1")
    default = Queue(queues.DEFAULT, connection=client)
    failed = default.enqueue(queues.ANNOUNCE_DELIVERED, "t-2")
    default.remove(failed)  # as a worker takes it, before it fails
    FailedJobRegistry(queues.DEFAULT, connection=client).add(failed, ttl=600, exc_string="boom")
    # tickets: one delivered, one a dead letter, one pending
    delivered = ledger.submit(make_ticket("5491100000001", 1700000001.0))[0]
    ledger.mark_delivered(delivered.id, "9001", "101")
    dead = ledger.submit(make_ticket("5491100000002", 1700000002.0))[0]
    ledger.mark_failed(dead.id, "Zoho 422", kind=FAILURE_EXHAUSTED)
    ledger.submit(make_ticket("5491100000003", 1700000003.0))
    # shared histograms, as the Rasa server, a worker and the action server record them
    for seconds in (0.3, 0.4, 7.0):
        metrics.TURN_SECONDS.observe(client, seconds, process="rasa@host-a")
    metrics.ZOHO_API_LATENCY.observe(client, 0.2, operation="POST /tickets", status="2xx")
    metrics.RESPONSE_TIME.observe(client, 95.0)
    return client


def test_a_scrape_reads_every_shared_number(filled, ledger):
    collector = HelpdeskCollector(filled, ledger, PARTITIONS, monthly_budget_usd=500.0)
    samples, types = scrape(collector)

    # counters hash: the accept script counted the two new messages and the other one, not
    # the duplicate
    assert value(samples, "messages_received_total", channel="waha") == 3
    assert value(samples, "messages_sent_total", channel="waha") == 5
    assert value(samples, "messages_failed_total", channel="waha", code="422") == 1
    assert value(samples, "media_downloads_total", channel="waha", outcome="stored") == 2
    assert value(samples, "media_downloads_total", channel="waha", outcome="failed") == 1
    assert value(samples, "whatsapp_events_total", event="outbox_queued") == 3
    assert value(samples, "tickets_failed_total", kind="exhausted") == 1
    assert types["messages_received"] == "counter"

    # inbound partitions: sizes, what a server read and has not finished, the oldest's age
    busy = str(whatsapp.partition_of("5491100000001", PARTITIONS))
    other = str(whatsapp.partition_of("5491100000002", PARTITIONS))
    sizes = {p: value(samples, "inbound_stream_length", partition=p) for p in ("0", "1")}
    assert sum(sizes.values()) == 3
    assert value(samples, "inbound_pending", partition=busy) == 1
    if other != busy:
        assert value(samples, "inbound_pending", partition=other) == 0
    assert 0 <= value(samples, "inbound_lag_seconds", partition=busy) < 30
    assert ("inbound_stream_length", frozenset({("partition", "legacy")})) not in samples

    # outboxes and dead letters per kind
    assert value(samples, "outbox_size", kind="whatsapp_chats") == 1
    assert value(samples, "outbox_size", kind="whatsapp_messages") == 2
    assert value(samples, "dead_letters", kind="inbound") == 1
    assert value(samples, "dead_letters", kind="outbound") == 1
    assert value(samples, "dead_letters", kind="chatwoot") == 1
    assert value(samples, "dead_letters", kind="jobs") == 1

    # circuits, the WAHA session, RQ
    assert value(samples, "circuit_state", backend="zoho") == 2
    assert value(samples, "circuit_state", backend="chatwoot") == 0
    assert value(samples, "circuit_failures", backend="zoho") == 1
    assert value(samples, "whatsapp_session_up", channel="waha", status="SCAN_QR_CODE") == 0
    assert value(samples, "queue_depth", queue="zoho") == 1
    assert value(samples, "queue_depth", queue="default") == 0
    assert value(samples, "queue_jobs", queue="default", registry="failed") == 1

    # LLM: gpt-4o-mini at 0.15 / 0.60 USD per million tokens
    cost = (1000 * 0.15 + 200 * 0.60) / 1e6
    assert value(samples, "ai_cost_usd") == pytest.approx(cost)
    assert value(samples, "ai_cost_month_usd") == pytest.approx(cost)
    assert value(samples, "ai_budget_month_usd") == 500.0
    assert value(samples, "llm_calls_total", use="intent") == 1
    assert value(samples, "llm_tokens_total", use="intent", kind="prompt") == 1000
    assert value(samples, "llm_tokens_total", use="intent", kind="completion") == 200
    assert value(samples, "llm_outcomes_total", use="intent", outcome="failed") == 2

    # the ledger
    assert value(samples, "tickets_created_total") == 3
    assert value(samples, "tickets", state="delivered") == 1
    assert value(samples, "tickets", state="failed") == 1
    assert value(samples, "tickets", state="pending_delivery") == 1
    assert value(samples, "tickets_today") == 3

    # shared histograms, cumulative buckets
    assert types["turn_seconds"] == "histogram"
    assert value(samples, "turn_seconds_bucket", process="rasa@host-a", le="0.25") == 0
    assert value(samples, "turn_seconds_bucket", process="rasa@host-a", le="0.5") == 2
    assert value(samples, "turn_seconds_bucket", process="rasa@host-a", le="8.0") == 3
    assert value(samples, "turn_seconds_bucket", process="rasa@host-a", le="+Inf") == 3
    assert value(samples, "turn_seconds_count", process="rasa@host-a") == 3
    assert value(samples, "turn_seconds_sum", process="rasa@host-a") == pytest.approx(7.7)
    assert value(samples, "zoho_api_latency_seconds_count", operation="POST /tickets",
                 status="2xx") == 1
    assert value(samples, "response_time_seconds_bucket", le="120.0") == 1
    assert value(samples, "response_time_seconds_bucket", le="60.0") == 0

    assert value(samples, "connection_status", target="redis") == 1
    assert value(samples, "connection_status", target="ledger") == 1


def test_two_collectors_agree(filled, ledger):
    """Any number of processes serving /metrics read the same numbers."""
    first, _ = scrape(HelpdeskCollector(filled, ledger, PARTITIONS))
    second, _ = scrape(HelpdeskCollector(filled, ledger, PARTITIONS))
    # ages grow between two scrapes: the oldest inbound message, the most overdue outbox
    moving = {"inbound_lag_seconds", "outbox_overdue_seconds"}
    assert {k: v for k, v in first.items() if k[0] not in moving} == \
        {k: v for k, v in second.items() if k[0] not in moving}


def test_an_empty_redis_and_ledger_give_zeros(redis_client, ledger):
    samples, _ = scrape(HelpdeskCollector(redis_client, ledger, PARTITIONS))
    assert value(samples, "tickets_created_total") == 0
    assert value(samples, "inbound_stream_length", partition="0") == 0
    assert value(samples, "inbound_pending", partition="0") == 0  # no consumer group yet
    assert value(samples, "inbound_lag_seconds", partition="1") == 0
    assert value(samples, "circuit_state", backend="zoho") == 0
    assert value(samples, "queue_depth", queue="followups") == 0
    assert value(samples, "ai_cost_usd") == 0


def test_the_ledger_unreachable_leaves_the_rest(redis_client, tmp_path):
    """A ledger that cannot be read: its metrics are left out, connection_status says so,
    the Redis numbers are still served."""
    from helpdesk.tickets import Ledger

    broken = Ledger(f"sqlite:///{tmp_path / 'gone.sqlite3'}")
    broken.engine.dispose()
    (tmp_path / "gone.sqlite3").unlink()
    (tmp_path / "gone.sqlite3").mkdir()  # a directory where the database file was
    samples, _ = scrape(HelpdeskCollector(redis_client, broken, PARTITIONS))
    assert value(samples, "connection_status", target="ledger") == 0
    assert value(samples, "connection_status", target="redis") == 1
    assert ("tickets_created_total", frozenset()) not in samples
    assert value(samples, "queue_depth", queue="zoho") == 0


def test_today_starts_at_midnight_utc(redis_client, ledger):
    ledger.submit(make_ticket("5491100000009", 1700000009.0))
    tomorrow = time.time() + 86400
    samples, _ = scrape(HelpdeskCollector(redis_client, ledger, PARTITIONS,
                                          clock=lambda: tomorrow))
    assert value(samples, "tickets_today") == 0
    assert value(samples, "tickets_created_total") == 1


def test_a_working_session_is_up_and_an_unreported_one_absent(redis_url, redis_client, ledger):
    async def working() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await whatsapp.record_status(client, "waha", "SCAN_QR_CODE")
        await whatsapp.record_status(client, "waha", "WORKING")
        await client.close()

    asyncio.run(working())
    samples, _ = scrape(HelpdeskCollector(redis_client, ledger, PARTITIONS))
    sessions = {labels: v for (name, labels), v in samples.items() if name == "whatsapp_session_up"}
    assert sessions == {frozenset({("channel", "waha"), ("status", "WORKING")}): 1}
