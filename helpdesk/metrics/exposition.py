"""`/metrics`: the registry a process serves, its own histograms and who may read it.

A process that serves `/metrics` builds one registry (`build_registry`): the shared collector
(helpdesk/metrics/collector.py, what every process agrees on) and the histograms this process
keeps in memory, labelled by `process` (`ingress@<host>`): the webhook acknowledgement's
latency. Reading it needs `Authorization: Bearer METRICS_TOKEN`; without METRICS_TOKEN set
the route is off (404), as the REST channel is without its flag.
"""
import hmac
import os
import socket
from typing import Optional, Tuple

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from helpdesk.metrics.collector import HelpdeskCollector

TOKEN_VARIABLE = "METRICS_TOKEN"

# the webhook's answer, from the request's arrival to its response (per process: the ingress)
WEBHOOK_ACK_SECONDS = Histogram(
    "webhook_ack_seconds", "Time a webhook took to answer (verify, dedupe, record), by channel "
    "and status", ["process", "channel", "status"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=None)


def process_name(role: str) -> str:
    """The `process` label of a process's own metrics: `<role>@<host>`."""
    return f"{role}@{socket.gethostname()}"


def build_registry(collector: HelpdeskCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(WEBHOOK_ACK_SECONDS)
    return registry


def render(registry: CollectorRegistry) -> Tuple[bytes, str]:
    """The text exposition format and its content type (blocking: run it in a thread)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def metrics_token() -> Optional[str]:
    return os.environ.get(TOKEN_VARIABLE) or None


def authorized(header: Optional[str], token: Optional[str]) -> bool:
    """Whether an Authorization header carries the token (constant time); never without one."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
