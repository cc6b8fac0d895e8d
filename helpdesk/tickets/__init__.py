"""Tickets: the ticket the dialogue collects (ticket.py), the priority rules (priority.py), the
ledger that records every ticket and its delivery state (ledger.py), and the notices that tell
the support team a ticket needs a person (notices.py), the ledger's migrations (schema.py), and ticket numbers as users type them (numbers.py). Other code imports from this package only.
"""
from helpdesk.tickets.ledger import (  # noqa: F401
    ANNOUNCE_TURN,
    ANNOUNCE_WORKER,
    DELIVERED,
    FAILED,
    FAILURE_CONFIG,
    FAILURE_CRASHED,
    FAILURE_EXHAUSTED,
    FAILURE_REJECTED,
    InvalidTransition,
    Ledger,
    PENDING_DELIVERY,
    PERSONAL_FIELDS,
    TicketRecord,
    tickets_table,
)
from helpdesk.tickets.notices import (  # noqa: F401
    notify_humans,
    register_human_sender,
    send_pending_notices,
    unregister_human_sender,
)
from helpdesk.tickets.schema import migrate_ledger  # noqa: F401
from helpdesk.tickets.numbers import ticket_number_in  # noqa: F401
from helpdesk.tickets.priority import (  # noqa: F401
    NORMAL,
    PRIORITIES,
    URGENT,
    decide_priority,
    matched_urgent_phrases,
    priority_label,
)
from helpdesk.tickets.ticket import (  # noqa: F401
    TICKET_NAMESPACE,
    Ticket,
    build_ticket,
    cut_text,
    make_subject,
    reference_for,
    ticket_id_for,
)

__all__ = [
    "migrate_ledger",
    "ticket_number_in",
    "ANNOUNCE_TURN",
    "ANNOUNCE_WORKER",
    "DELIVERED",
    "FAILED",
    "FAILURE_CONFIG",
    "FAILURE_CRASHED",
    "FAILURE_EXHAUSTED",
    "FAILURE_REJECTED",
    "InvalidTransition",
    "Ledger",
    "NORMAL",
    "PENDING_DELIVERY",
    "PERSONAL_FIELDS",
    "PRIORITIES",
    "TICKET_NAMESPACE",
    "Ticket",
    "TicketRecord",
    "URGENT",
    "build_ticket",
    "cut_text",
    "decide_priority",
    "make_subject",
    "matched_urgent_phrases",
    "notify_humans",
    "priority_label",
    "reference_for",
    "register_human_sender",
    "send_pending_notices",
    "ticket_id_for",
    "tickets_table",
    "unregister_human_sender",
]
