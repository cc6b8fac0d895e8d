"""The ledger record as Zoho Desk wants it: the create-ticket body and the phone format."""
import html
from typing import Any, Dict, List, Optional

from helpdesk.config import TicketShape
from helpdesk.errors import ConfigError
from helpdesk.text import only_digits


def zoho_phone(digits: str) -> str:
    """Numbers are stored in Zoho as E.164 ('+5491122334455') so the exact search finds them."""
    return "+" + only_digits(digits)  # ASCII digits whatever script they came in


# --- the ticket as Zoho wants it -----------------------------------------------------------
def ticket_payload(
    record: Any,
    *,
    shape: TicketShape,
    department_id: str,
    contact_id: Optional[str],
    ref_field: str,
) -> Dict[str, Any]:
    """The create-ticket body for a ledger record (helpdesk.tickets.ledger.TicketRecord).

    The ledger id goes into the custom field `ref_field`: it is how a later run finds a
    ticket whose create answer was lost.
    """
    if not department_id:
        raise ConfigError(
            f"department '{record.department}' has no zoho_id in config/departments.yml"
        )
    if not ref_field:
        raise ConfigError("ZOHO_REF_FIELD is not set: tickets cannot be created without duplicates")
    details = _details(record, shape.detail_labels)
    description = html.escape(record.description).replace("\n", "<br>")
    if details:
        description += "<br><br>" + "<br>".join(details)
    payload: Dict[str, Any] = {
        "subject": record.subject[:255],
        "description": description[:65535],
        "departmentId": department_id,
        "priority": shape.priorities.get(record.priority, record.priority),
        "classification": record.classification,
        "channel": shape.channel,
        "cf": {ref_field: record.id},
    }
    if contact_id:
        payload["contactId"] = contact_id
    else:
        payload["contact"] = {"lastName": (record.reporter_name or record.conversation_id)[:80]}
    if record.reporter_phone:
        payload["phone"] = zoho_phone(record.reporter_phone)
    return payload


def _details(record: Any, labels: Dict[str, str]) -> List[str]:
    values = {
        "reference": record.reference,
        "store": record.store,
        "system": record.system,
        "reporter": " ".join(
            part for part in (record.reporter_name, zoho_phone(record.reporter_phone) if record.reporter_phone else None)
            if part
        ),
        "affected_person": record.affected_person,
        "error_messages": "; ".join(record.error_messages or []),
        "mentioned_users": ", ".join(record.mentioned_users or []),
    }
    lines = []
    for key, label in labels.items():
        value = values.get(key)
        if value:
            lines.append(f"{html.escape(label)}: {html.escape(str(value))}")
    return lines

