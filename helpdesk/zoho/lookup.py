"""A ticket's status straight from Zoho Desk, for the status question ("¿cómo va el ticket
1234?") in the action server.

Blocking (`requests`): the action calls it in a thread (`asyncio.to_thread`). It respects the
Zoho circuit breaker (an open circuit answers at once instead of waiting on an outage) and
uses short timeouts, since a user is waiting. On any failure it raises, and the action falls
back to the ledger's last known status and says so. The status seen is stored in the ledger
too, so the poller does not announce it again.
"""
from dataclasses import dataclass, replace
from typing import Optional

import redis

from helpdesk.circuit import CircuitBreaker
from helpdesk.tickets import Ledger, TicketRecord
from helpdesk.settings import load_settings, load_zoho
from helpdesk.zoho.client import ZohoClient
from helpdesk.zoho.errors import ZohoError, ZohoNotFound, ZohoTransient
from helpdesk.config import ZohoConfig, zoho_config

@dataclass(frozen=True)
class LiveStatus:
    status: str  # Zoho's status name
    label: str  # what the user reads (config/zoho.yml status_polling.labels)
    status_type: Optional[str]


def lookup_status(
    record: TicketRecord,
    ledger: Ledger,
    client: Optional[redis.Redis] = None,
    config: Optional[ZohoConfig] = None,
) -> Optional[LiveStatus]:
    """Zoho's current status of a delivered ticket; None when Zoho is not configured or the
    ticket is not in Zoho yet. Raises ZohoError or CircuitOpen when Zoho cannot answer."""
    settings = load_zoho()
    if settings is None or not record.zoho_ticket_id:
        return None
    config = config or zoho_config()
    connection = client or redis.Redis.from_url(load_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)
    # a user is waiting for the answer: config/zoho.yml `lookup`, not delivery's timeouts
    policy = replace(config.delivery, connect_timeout=config.lookup.connect_timeout,
                     read_timeout=min(config.delivery.read_timeout, config.lookup.read_timeout))
    breaker = CircuitBreaker(connection, "zoho", failure_threshold=config.circuit.failure_threshold,
                             recovery_seconds=config.circuit.recovery_seconds,
                             probe_seconds=config.delivery.job_timeout)
    breaker.before_call()
    try:
        ticket = ZohoClient(settings, connection, policy).get_ticket(record.zoho_ticket_id)
    except ZohoTransient as error:
        breaker.record_failure(str(error))
        raise
    except ZohoNotFound:
        breaker.record_success()
        raise
    except ZohoError:
        raise
    breaker.record_success()
    if ticket.status and ticket.status != record.zoho_status:
        ledger.record_status(record.id, ticket.status, ticket.status_type)
    status = ticket.status or ""
    return LiveStatus(status=status, label=config.status_polling.label(status, ticket.status_type),
                      status_type=ticket.status_type)
