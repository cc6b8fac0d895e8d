"""The shared numbers, read at scrape time from Redis, the ledger and RQ.

Whatever serves `/metrics` (the webhook ingress, connectors/ingress.py) registers one
`HelpdeskCollector`: each scrape reads the counters every process writes
(`helpdesk:counters`, the LLM usage hashes, the shared histograms of helpdesk/metrics/shared.py),
the sizes of the inbound streams, outboxes and dead-letter logs, the circuit breakers, the
WhatsApp session the gateway reported, the ledger's tickets by state and RQ's queues and
registries. Nothing is counted in the serving process itself, so any number of processes,
and any number of scrapers, see the same values.

Blocking (sync Redis, SQLAlchemy): an async server scrapes in a thread. A source that fails
(the ledger unreachable, say) leaves its metrics out and sets `connection_status{target}` to 0;
the others are still served.
"""
import logging
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue
from rq.registry import (DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry,
                         StartedJobRegistry)

from helpdesk import queues, redis_keys, whatsapp
from helpdesk.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from helpdesk.llm import month_of, read_usage
from helpdesk.tickets import Ledger
from helpdesk.metrics.recording import FAILED, MEDIA, RECEIVED, SENT, TICKETS_FAILED
from helpdesk.metrics.shared import HISTOGRAMS

logger = logging.getLogger(__name__)

BACKENDS = ("zoho", "chatwoot")  # the circuit breakers (helpdesk/circuit.py)
# the input channels whose gateway reports its session (WAHA's session.status); read by name,
# never by scanning the keyspace
SESSION_CHANNELS = ("waha", "whatsapp")
CIRCUIT_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
OUTBOX_SAMPLE = 500  # chats whose waiting replies are counted one by one (LLEN), at most


class HelpdeskCollector(Collector):
    def __init__(self, client: Any, ledger: Optional[Ledger], partitions: int,
                 monthly_budget_usd: Optional[float] = None,
                 clock: Callable[[], float] = time.time,
                 ledger_factory: Optional[Callable[[], Ledger]] = None) -> None:
        """`ledger_factory` instead of `ledger`: the ledger is opened at the first scrape that
        can (a database down when the process starts is tried again at each scrape)."""
        self.client = client  # sync Redis
        self.ledger = ledger
        self.ledger_factory = ledger_factory
        self.partitions = partitions
        self.monthly_budget_usd = monthly_budget_usd
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # families are known only once read; no check at registration

    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily("connection_status", "1 when the scrape could read this "
                                   "dependency (redis, ledger), else 0", labels=["target"])
        redis_ok = True
        for name, part in (("counters", self._counters), ("inbound", self._inbound),
                           ("outbox", self._outbox), ("sessions", self._sessions),
                           ("circuits", self._circuits), ("llm", self._llm),
                           ("rq", self._rq), ("histograms", self._histograms)):
            try:
                yield from list(part())
            except Exception:
                redis_ok = False
                logger.warning("metrics from Redis not read", extra={"part": name},
                               exc_info=True)
        status.add_metric(["redis"], 1 if redis_ok else 0)
        if self.ledger is not None or self.ledger_factory is not None:
            try:
                if self.ledger is None:
                    self.ledger = self.ledger_factory()
                yield from list(self._tickets())
                status.add_metric(["ledger"], 1)
            except Exception:
                logger.warning("metrics from the ledger not read", exc_info=True)
                status.add_metric(["ledger"], 0)
        yield status

    # helpdesk:counters -----------------------------------------------------------------------
    def _counters(self) -> Iterator[Metric]:
        raw = self.client.hgetall(redis_keys.counters())
        counters = {_text(k): int(float(_text(v))) for k, v in raw.items()}
        sent = CounterMetricFamily("messages_sent", "WhatsApp messages the gateway accepted",
                                   labels=["channel"])
        received = CounterMetricFamily("messages_received", "WhatsApp user messages recorded "
                                       "in the inbound log (duplicates and opted-out excluded)",
                                       labels=["channel"])
        failed = CounterMetricFamily("messages_failed", "WhatsApp messages refused for good "
                                     "(parked), by the gateway's code", labels=["channel", "code"])
        media = CounterMetricFamily("media_downloads", "WhatsApp media downloads, by outcome",
                                    labels=["channel", "outcome"])
        tickets_failed = CounterMetricFamily("tickets_failed", "Tickets that became dead "
                                             "letters (Zoho never got them), by why",
                                             labels=["kind"])
        events = CounterMetricFamily("whatsapp_events", "Other WhatsApp delivery events "
                                     "(outbox_queued, outbox_delivered, withheld_opted_out ...)",
                                     labels=["event"])
        for field, value in sorted(counters.items()):
            if field.startswith(TICKETS_FAILED):
                tickets_failed.add_metric([field[len(TICKETS_FAILED):]], value)
            elif field.startswith(SENT):
                sent.add_metric([field[len(SENT):]], value)
            elif field.startswith(RECEIVED):
                received.add_metric([field[len(RECEIVED):]], value)
            elif field.startswith(FAILED):
                channel, _, code = field[len(FAILED):].partition("_")
                failed.add_metric([channel, code], value)
            elif field.startswith(MEDIA):
                outcome, _, channel = field[len(MEDIA):].partition("_")
                media.add_metric([channel, outcome], value)
            else:
                events.add_metric([field], value)
        yield from (sent, received, failed, media, tickets_failed, events)

    # the inbound log ---------------------------------------------------------------------------
    def _inbound(self) -> Iterator[Metric]:
        length = GaugeMetricFamily("inbound_stream_length", "Messages in an inbound partition "
                                   "(waiting for or in their turn)", labels=["partition"])
        pending = GaugeMetricFamily("inbound_pending", "Messages a Rasa server read and has not "
                                    "finished (in a turn, or left by a dead server)",
                                    labels=["partition"])
        lag = GaugeMetricFamily("inbound_lag_seconds", "Age of the oldest message of an "
                                "inbound partition (0 when empty)", labels=["partition"])
        now_ms = _redis_ms(self.client)
        for partition in [whatsapp.LEGACY, *range(self.partitions)]:
            name = whatsapp.stream(partition)
            label = "legacy" if partition == whatsapp.LEGACY else str(partition)
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(name)
            pipe.xrange(name, count=1)
            size, first = pipe.execute()
            if partition == whatsapp.LEGACY and not size:
                continue  # the old single stream, drained: nothing to show
            length.add_metric([label], size)
            oldest = first[0][0] if first else None
            age = max(0.0, (now_ms - _entry_ms(oldest)) / 1000.0) if oldest else 0.0
            lag.add_metric([label], age)
            pending.add_metric([label], _pending(self.client, name))
        servers = GaugeMetricFamily("rasa_servers", "Rasa servers reading the inbound log "
                                    "(by heartbeat)")
        servers.add_metric([], self.client.zcard(redis_keys.inbound_servers()))
        fetches = GaugeMetricFamily("media_fetch_backlog", "WAHA media files waiting to be "
                                    "fetched at acceptance")
        fetches.add_metric([], self.client.xlen(redis_keys.media_fetches()))
        yield from (length, pending, lag, servers, fetches)

    # outboxes and dead letters ----------------------------------------------------------------
    def _outbox(self) -> Iterator[Metric]:
        chats = self.client.zcard(redis_keys.outbox_due())
        keys = self.client.zrange(redis_keys.outbox_due(), 0, OUTBOX_SAMPLE - 1)
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        waiting = sum(pipe.execute()) if keys else 0
        oldest_due = self.client.zrange(redis_keys.outbox_due(), 0, 0, withscores=True)
        outbox = GaugeMetricFamily("outbox_size", "Undelivered messages waiting in outboxes, "
                                   "by kind (whatsapp_chats: chats with replies waiting; "
                                   "whatsapp_messages: their messages, first "
                                   f"{OUTBOX_SAMPLE} chats)", labels=["kind"])
        outbox.add_metric(["whatsapp_chats"], chats)
        outbox.add_metric(["whatsapp_messages"], waiting)
        overdue = GaugeMetricFamily("outbox_overdue_seconds", "How late the most overdue "
                                    "WhatsApp outbox is (0: none waiting or none due yet)")
        overdue.add_metric([], max(0.0, self.clock() - oldest_due[0][1]) if oldest_due else 0.0)
        dead = GaugeMetricFamily("dead_letters", "Dead letters kept for a person, by kind "
                                 "(workers.dead_letters lists and replays them)", labels=["kind"])
        dead.add_metric(["inbound"], self.client.xlen(redis_keys.inbound_parked()))
        dead.add_metric(["outbound"], self.client.xlen(redis_keys.outbox_parked()))
        dead.add_metric(["chatwoot"], self.client.llen(redis_keys.chatwoot_dead_letters()))
        failed_jobs = sum(self.client.zcard(FailedJobRegistry(queue, connection=self.client).key)
                          for queue in queues.ALL)
        dead.add_metric(["jobs"], failed_jobs)
        yield from (outbox, overdue, dead)

    def _sessions(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("whatsapp_session_up", "1 while the gateway reports its WhatsApp "
                               "session working (WAHA's session.status), 0 while it is down",
                               labels=["channel", "status"])
        for channel in SESSION_CHANNELS:
            status = self.client.hget(redis_keys.gateway_session(channel), "status")
            if status is None:  # never reported (Meta reports none): unknown, not down
                continue
            status = _text(status)
            up.add_metric([channel, status], 0 if status in whatsapp.SESSION_DOWN else 1)
        yield up

    def _circuits(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("circuit_state", "A backend's circuit breaker: 0 closed, "
                                  "1 half-open (one probe allowed), 2 open", labels=["backend"])
        failures = GaugeMetricFamily("circuit_failures", "Failures in a row a backend's circuit "
                                     "breaker counts", labels=["backend"])
        for backend in BACKENDS:
            circuit = CircuitBreaker(self.client, backend).state()
            state.add_metric([backend], CIRCUIT_VALUES[circuit.state])
            failures.add_metric([backend], circuit.failures)
        yield from (state, failures)

    # LLM usage (helpdesk/llm/budget.py) -------------------------------------------------------
    def _llm(self) -> Iterator[Metric]:
        usage = read_usage(self.client, month_of(self.clock()))
        total, month = usage["total"], usage["month"]
        cost = GaugeMetricFamily("ai_cost_usd", "USD the LLM calls cost since the start")
        cost.add_metric([], total["cost_usd"])
        month_cost = GaugeMetricFamily("ai_cost_month_usd", "USD the LLM calls cost this UTC month")
        month_cost.add_metric([], month["cost_usd"])
        families: List[Metric] = [cost, month_cost]
        if self.monthly_budget_usd is not None:
            budget = GaugeMetricFamily("ai_budget_month_usd", "The monthly LLM budget "
                                       "(config/llm.yml budgets.monthly_usd)")
            budget.add_metric([], self.monthly_budget_usd)
            families.append(budget)
        calls = CounterMetricFamily("llm_calls", "LLM calls, by use", labels=["use"])
        tokens = CounterMetricFamily("llm_tokens", "LLM tokens, by use and kind",
                                     labels=["use", "kind"])
        use_cost = CounterMetricFamily("llm_cost_usd", "USD of LLM calls, by use", labels=["use"])
        outcomes = CounterMetricFamily("llm_outcomes", "LLM outcomes other than an answer "
                                       "(failed, invalid, refused, skipped_budget, cache_hit), "
                                       "by use", labels=["use", "outcome"])
        for use, numbers in sorted(total["by_use"].items()):
            calls.add_metric([use], numbers.get("calls", 0))
            for kind in ("prompt", "completion"):
                tokens.add_metric([use, kind], numbers.get(f"{kind}_tokens", 0))
            use_cost.add_metric([use], float(numbers.get("cost_usd", 0.0)))
            for outcome in ("failed", "invalid", "refused", "skipped_budget", "cache_hit"):
                if outcome in numbers:
                    outcomes.add_metric([use, outcome], numbers[outcome])
        yield from families + [calls, tokens, use_cost, outcomes]

    # RQ --------------------------------------------------------------------------------------
    def _rq(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("queue_depth", "RQ jobs waiting to run, by queue",
                                  labels=["queue"])
        registries = GaugeMetricFamily("queue_jobs", "RQ jobs in a registry (started, "
                                       "scheduled, deferred, failed), by queue",
                                       labels=["queue", "registry"])
        pipe = self.client.pipeline(transaction=False)
        for queue in queues.ALL:
            pipe.llen(Queue(queue, connection=self.client).key)
            for registry in REGISTRIES.values():
                pipe.zcard(registry(queue, connection=self.client).key)
        values = iter(pipe.execute())
        for queue in queues.ALL:
            depth.add_metric([queue], next(values))
            for registry in REGISTRIES:
                registries.add_metric([queue, registry], next(values))
        yield from (depth, registries)

    def _histograms(self) -> Iterator[Metric]:
        for histogram in HISTOGRAMS:
            yield histogram.read(self.client)

    # the ledger ------------------------------------------------------------------------------
    def _tickets(self) -> Iterator[Metric]:
        counts = self.ledger.count_by_state()
        created = CounterMetricFamily("tickets_created", "Tickets recorded in the ledger (the "
                                      "bot's tickets; the ledger keeps every row)")
        created.add_metric([], sum(counts.values()))
        by_state = GaugeMetricFamily("tickets", "Tickets in the ledger by delivery state "
                                     "(pending_delivery, delivered, failed: a dead letter)",
                                     labels=["state"])
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        today = GaugeMetricFamily("tickets_today", "Tickets recorded since 00:00 UTC")
        now = self.clock()
        today.add_metric([], self.ledger.count_created_since(now - now % 86400))
        yield from (created, by_state, today)


# RQ's registries (sorted sets), read with ZCARD: reading runs none of RQ's clean-ups
REGISTRIES = {"started": StartedJobRegistry, "scheduled": ScheduledJobRegistry,
              "deferred": DeferredJobRegistry, "failed": FailedJobRegistry}


def _pending(client: Any, stream: str) -> int:
    try:
        summary = client.xpending(stream, whatsapp.GROUP)
    except Exception as error:  # no such group yet: nothing read, nothing pending
        if "NOGROUP" in str(error):
            return 0
        raise
    return int(summary.get("pending", 0) if isinstance(summary, dict) else summary[0])


def _redis_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _entry_ms(entry_id: Any) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
