"""Counts kept in the `helpdesk:counters` hash, by field-name convention (one hash every
process adds to; the collector splits the fields into metrics by their prefix):

    sent_<channel>                  messages_sent_total{channel}      (connectors/whatsapp/output.py)
    received_<channel>              messages_received_total{channel}  (the inbound accept script,
                                                                       helpdesk/whatsapp/inbound.py)
    failed_<channel>_<code>         messages_failed_total{channel,code}
    media_<outcome>_<channel>       media_downloads_total{channel,outcome} (stored | failed)
    tickets_failed_<kind>           tickets_failed_total{kind}        (workers/zoho_jobs.py)
    anything else                   whatsapp_events_total{event}
"""
import logging
from typing import Any

from helpdesk import redis_keys

logger = logging.getLogger(__name__)

SENT, RECEIVED, FAILED, MEDIA, TICKETS_FAILED = "sent_", "received_", "failed_", "media_", "tickets_failed_"
STORED, NOT_STORED = "stored", "failed"  # media download outcomes


def received_field(channel: str) -> str:
    return f"{RECEIVED}{channel}"


def media_field(outcome: str, channel: str) -> str:
    return f"{MEDIA}{outcome}_{channel}"


def count_ticket_failed(client: Any, kind: str) -> None:
    """One more ticket became a dead letter (sync Redis); never raises."""
    try:
        client.hincrby(redis_keys.counters(), f"{TICKETS_FAILED}{kind}", 1)
    except Exception:
        logger.debug("counter not written", extra={"counter": TICKETS_FAILED + kind})


async def count_media(client: Any, outcome: str, channel: str) -> None:
    """One more media download (async Redis), stored or failed; never raises."""
    try:
        await client.hincrby(redis_keys.counters(), media_field(outcome, channel), 1)
    except Exception:
        logger.debug("counter not written", extra={"counter": media_field(outcome, channel)})
