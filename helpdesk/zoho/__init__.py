"""Zoho Desk: the one client (client.py), its errors (errors.py), OAuth tokens (tokens.py), the
ledger record as a Zoho ticket (payload.py), putting Zoho work on
the RQ queue (queue.py) and a ticket's status for a waiting user (lookup.py). Other code imports
from this package only.
"""
from helpdesk.zoho.client import (  # noqa: F401
    ZohoClient,
    ZohoTicket,
)
from helpdesk.zoho.errors import (  # noqa: F401
    ZohoAuthError,
    ZohoError,
    ZohoNotFound,
    ZohoPermanent,
    ZohoQuotaExceeded,
    ZohoRateLimited,
    ZohoTransient,
    format_field_errors,
)
from helpdesk.zoho.payload import (  # noqa: F401
    ticket_payload,
    zoho_phone,
)
from helpdesk.zoho.tokens import (  # noqa: F401
    ZohoTokens,
)
from helpdesk.zoho.lookup import (  # noqa: F401
    lookup_status,
)
from helpdesk.zoho.queue import (  # noqa: F401
    ADD_TO_TICKET,
    ANNOUNCE_DELIVERED,
    ANNOUNCE_STATUS,
    DEFAULT_QUEUE,
    DELIVER,
    LIVE,
    ZOHO_QUEUE,
    announce_job_id,
    delivery_job_id,
    enqueue_addition,
    enqueue_announcement,
    enqueue_delivery,
    job_status,
    status_job_id,
)

__all__ = [
    "zoho_phone",
    "ADD_TO_TICKET",
    "ANNOUNCE_DELIVERED",
    "ANNOUNCE_STATUS",
    "DEFAULT_QUEUE",
    "DELIVER",
    "LIVE",
    "ZOHO_QUEUE",
    "ZohoAuthError",
    "ZohoClient",
    "ZohoError",
    "ZohoNotFound",
    "ZohoPermanent",
    "ZohoQuotaExceeded",
    "ZohoRateLimited",
    "ZohoTicket",
    "ZohoTokens",
    "ZohoTransient",
    "announce_job_id",
    "delivery_job_id",
    "enqueue_addition",
    "enqueue_announcement",
    "enqueue_delivery",
    "format_field_errors",
    "job_status",
    "lookup_status",
    "status_job_id",
    "ticket_payload",
]
