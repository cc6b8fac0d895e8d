"""Histograms every process adds to and any process reads: their buckets live in Redis.

The processes that measure (RQ workers calling Zoho, the action server recording a ticket,
the Rasa server running turns) serve no HTTP of their own, and a number one process holds in
memory would differ from another's. So each observation is one Redis pipeline (HINCRBY of the
bucket, HINCRBYFLOAT of the sum, HINCRBY of the count, in one hash per histogram) and the
scrape (helpdesk/metrics/collector.py) reads the hash and exposes it as a Prometheus
histogram. A failed write is logged at debug and dropped: a metric never fails the work it
measures.

Fields of the hash `helpdesk:metrics:histogram:<name>`: `<labels>\\x1fb<i>` (observations in
bucket i alone, not cumulative; i = len(buckets) is +Inf), `<labels>\\x1fsum`,
`<labels>\\x1fcount`; `<labels>` is the JSON list of the label values.
"""
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from prometheus_client.core import HistogramMetricFamily

from helpdesk import redis_keys

logger = logging.getLogger(__name__)

SEPARATOR = "\x1f"


@dataclass(frozen=True)
class SharedHistogram:
    name: str
    documentation: str
    buckets: Tuple[float, ...]
    labelnames: Tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return redis_keys.metrics_histogram(self.name)

    def _label_key(self, labels: Dict[str, str]) -> str:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)}, expected {list(self.labelnames)}")
        return json.dumps([str(labels[name]) for name in self.labelnames], ensure_ascii=False)

    def _bucket(self, value: float) -> int:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                return index
        return len(self.buckets)

    def _queue(self, pipe: Any, value: float, prefix: str) -> None:
        pipe.hincrby(self.key, f"{prefix}b{self._bucket(value)}", 1)
        pipe.hincrbyfloat(self.key, f"{prefix}sum", float(value))
        pipe.hincrby(self.key, f"{prefix}count", 1)

    def observe(self, client: Any, value: float, **labels: str) -> None:
        """Add one observation (sync Redis client). Never raises for Redis' sake."""
        if value is None or math.isnan(value):
            return
        prefix = self._label_key(labels) + SEPARATOR  # wrong labels: a bug, raised
        try:
            pipe = client.pipeline(transaction=True)
            self._queue(pipe, value, prefix)
            pipe.execute()
        except Exception:
            logger.debug("metric not written", extra={"metric": self.name})

    async def observe_async(self, client: Any, value: float, **labels: str) -> None:
        """The same with an async Redis client."""
        if value is None or math.isnan(value):
            return
        prefix = self._label_key(labels) + SEPARATOR
        try:
            async with client.pipeline(transaction=True) as pipe:
                self._queue(pipe, value, prefix)
                await pipe.execute()
        except Exception:
            logger.debug("metric not written", extra={"metric": self.name})

    def read(self, client: Any) -> HistogramMetricFamily:
        """The histogram as Prometheus' metric family, from the hash (sync client)."""
        series: Dict[str, Dict[str, float]] = {}
        for field, value in client.hgetall(self.key).items():
            field = field.decode() if isinstance(field, bytes) else field
            value = value.decode() if isinstance(value, bytes) else value
            labels, _, part = field.rpartition(SEPARATOR)
            series.setdefault(labels, {})[part] = float(value)
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        for labels, parts in sorted(series.items()):
            cumulative = 0.0
            buckets: List[Tuple[str, float]] = []
            for index, bound in enumerate(list(self.buckets) + [math.inf]):
                cumulative += parts.get(f"b{index}", 0.0)
                buckets.append(("+Inf" if bound == math.inf else _bound(bound), cumulative))
            family.add_metric(json.loads(labels), buckets, parts.get("sum", 0.0))
        return family


def _bound(value: float) -> str:
    return repr(float(value))


def _buckets(*values: float) -> Tuple[float, ...]:
    return tuple(sorted(values))


# a Rasa server's turn (helpdesk/metrics docs: from the start of a batch's turn to its replies
# handed to the outbox), by the server's host: `rasa@<host>`
TURN_SECONDS = SharedHistogram(
    "turn_seconds", "Duration of a WhatsApp turn on a Rasa server (NLU, policies, actions, replies)",
    _buckets(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60), ("process",))
# one Zoho Desk API call, by operation ("POST /tickets", "GET /tickets/{id}") and status class
ZOHO_API_LATENCY = SharedHistogram(
    "zoho_api_latency_seconds", "Duration of one Zoho Desk API call",
    _buckets(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30), ("operation", "status"))
# from the user's first message of the incident to the ticket recorded in the ledger
RESPONSE_TIME = SharedHistogram(
    "response_time_seconds", "Time from the user's first message of an incident to its ticket",
    _buckets(15, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200))

HISTOGRAMS: Sequence[SharedHistogram] = (TURN_SECONDS, ZOHO_API_LATENCY, RESPONSE_TIME)
