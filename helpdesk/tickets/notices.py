"""Telling the support team something needs a person: a ticket Zoho rejected, a dead
letter, credentials Zoho refuses.

`notify_humans` always leaves
1. a durable row in the ledger's `human_notices` table (listed by
   `python -m workers.dead_letters notices`), and
2. an ERROR log line with the text (log alerting picks it up),
then hands the notice to every registered sender (WhatsApp to SUPPORT_ESCALATION_CHAT, a
Chatwoot private note ...). Senders are registered by the process that owns those channels,
at start-up: `register_human_sender(fn)`, where `fn(notice: dict)` raises on failure. A notice
no sender took stays unsent and is offered again by `send_pending_notices` (the Zoho
reconciler calls it), so a support channel that comes up later still gets it.
"""
import logging
from typing import Any, Callable, Dict, List, Optional

import redis

from helpdesk import redis_keys
from helpdesk.tickets.ledger import Ledger

logger = logging.getLogger(__name__)

Sender = Callable[[Dict[str, Any]], None]
_senders: List[Sender] = []


def register_human_sender(sender: Sender) -> None:
    """Add a way to reach the support team (called once per process at start-up)."""
    if sender not in _senders:
        _senders.append(sender)


def unregister_human_sender(sender: Sender) -> None:
    if sender in _senders:
        _senders.remove(sender)


def notify_humans(
    ledger: Ledger,
    kind: str,
    text: str,
    *,
    ticket_id: Optional[str] = None,
    once_per: Optional[str] = None,
    once_seconds: int = 3600,
    client: Optional[redis.Redis] = None,
) -> Optional[int]:
    """Record and send a notice for the support team; its id, or None when `once_per`
    says the same condition was already notified within `once_seconds`."""
    if once_per and client is not None:
        if not client.set(redis_keys.human_notice_sent(once_per), "1", nx=True, ex=once_seconds):
            logger.info("support team already told", extra={"kind": kind, "ticket_id": ticket_id})
            return None
    notice_id = ledger.add_human_notice(kind, text, ticket_id)
    logger.error(
        "support team notified: %s",
        text,
        extra={"kind": kind, "ticket_id": ticket_id, "notice_id": notice_id},
    )
    notice = {"id": notice_id, "kind": kind, "ticket_id": ticket_id, "text": text}
    _offer(ledger, notice)
    return notice_id


def send_pending_notices(ledger: Ledger) -> int:
    """Offer unsent notices to the registered senders again; how many went out."""
    if not _senders:
        return 0
    sent = 0
    for notice in ledger.human_notices(unsent_only=True):
        if _offer(ledger, notice):
            sent += 1
    return sent


def _offer(ledger: Ledger, notice: Dict[str, Any]) -> bool:
    if not _senders:
        return False
    errors = []
    for sender in list(_senders):
        try:
            sender(notice)
        except Exception as error:  # one broken channel must not hide the notice from another
            logger.warning("support notice not sent", extra={"notice_id": notice["id"], "error": repr(error)})
            errors.append(repr(error))
    ledger.mark_notice_sent(notice["id"], "; ".join(errors)[:1000] if len(errors) == len(_senders) else None)
    return len(errors) < len(_senders)
