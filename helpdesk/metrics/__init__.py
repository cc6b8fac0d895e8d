"""Prometheus metrics (prometheus_client): what `/metrics` serves and what records it.

Shared numbers are read at scrape time from Redis, the ledger and RQ (collector.py), so every
process agrees; histograms whose observations are made in processes that serve no HTTP keep
their buckets in Redis (shared.py); a serving process adds its own histograms, labelled by
process (exposition.py). Which process serves what: docs/operations.md "Metrics".
"""
from helpdesk.metrics.collector import HelpdeskCollector  # noqa: F401
from helpdesk.metrics.exposition import (  # noqa: F401
    TOKEN_VARIABLE,
    WEBHOOK_ACK_SECONDS,
    authorized,
    build_registry,
    metrics_token,
    process_name,
    render,
)
from helpdesk.metrics.recording import (  # noqa: F401
    NOT_STORED,
    STORED,
    count_media,
    count_ticket_failed,
    media_field,
    received_field,
)
from helpdesk.metrics.shared import (  # noqa: F401
    HISTOGRAMS,
    RESPONSE_TIME,
    TURN_SECONDS,
    ZOHO_API_LATENCY,
    SharedHistogram,
)

__all__ = [
    "HelpdeskCollector", "TOKEN_VARIABLE", "WEBHOOK_ACK_SECONDS", "authorized",
    "build_registry", "metrics_token", "process_name", "render", "count_media",
    "count_ticket_failed", "received_field", "media_field", "STORED", "NOT_STORED", "HISTOGRAMS", "RESPONSE_TIME", "TURN_SECONDS",
    "ZOHO_API_LATENCY", "SharedHistogram",
]
