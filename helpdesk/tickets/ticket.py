"""The ticket as the dialogue collects it, and the fields derived from it by rules."""
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from helpdesk.config import NO_STORE, Catalog
from helpdesk.tickets.priority import decide_priority

# Namespace for ticket ids derived from (conversation, form start): the same form
# submitted twice gives the same id, which the ledger uses as its idempotency key.
TICKET_NAMESPACE = uuid.UUID("6f1b7a52-3c1e-4f0e-9d7e-2a4c5b8e9d10")
_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def ticket_id_for(conversation_id: str, form_started_at: float) -> str:
    return str(uuid.uuid5(TICKET_NAMESPACE, f"{conversation_id}:{form_started_at:.6f}"))


def reference_for(ticket_id: str, prefix: str, length: int = 6) -> str:
    """A short reference users can read and type: prefix + `length` characters from the id.

    The ledger lengthens it in the rare case two tickets would share one.
    """
    number = uuid.UUID(ticket_id).int
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_REFERENCE_ALPHABET))
        chars.append(_REFERENCE_ALPHABET[index])
    return prefix + "".join(chars)


@dataclass
class Ticket:
    id: str
    reference: str
    conversation_id: str
    subject: str
    description: str
    priority: str
    classification: str
    department: str
    store: Optional[str]
    system: Optional[str]
    reporter_name: Optional[str] = None
    reporter_phone: Optional[str] = None
    channel: Optional[str] = None
    affected_person: Optional[str] = None
    error_messages: List[str] = field(default_factory=list)
    attachments: List[str] = field(default_factory=list)
    mentioned_users: List[str] = field(default_factory=list)
    correlation_id: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def cut_text(text: str, limit: int, marker: str) -> str:
    """The text, or its start and the marker when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))].rstrip() + marker


def make_subject(
    system_label: Optional[str],
    store: Optional[str],
    description: str,
    *,
    store_format: str,
    without_system: str,
) -> str:
    """Subject from system, store and the start of the symptom, at most 120 characters.

    `store_format` (" en {store}") and `without_system` come from config/dialogue.yml.
    """
    head = system_label or without_system
    where = store_format.format(store=store) if store and store != NO_STORE else ""
    symptom = " ".join(description.split())
    subject = f"{head}{where}: {symptom}" if symptom else f"{head}{where}"
    return subject if len(subject) <= 120 else subject[:117].rstrip() + "..."


def build_ticket(
    catalog: Catalog,
    *,
    ticket_id: str,
    conversation_id: str,
    store: Optional[str],
    system: Optional[str],
    description: str,
    stated_priority: Optional[str],
    priority_texts: List[str],
    reporter_name: Optional[str] = None,
    reporter_phone: Optional[str] = None,
    channel: Optional[str] = None,
    affected_person: Optional[str] = None,
    mentioned_users: Optional[List[str]] = None,
    correlation_id: Optional[str] = None,
    attachments: Optional[List[str]] = None,
) -> Ticket:
    found_system = catalog.system_by_name(system) if system else None
    department = catalog.department_for(found_system)
    settings = catalog.dialogue
    description = cut_text(description, settings.description_max_chars, settings.cut_marker)
    return Ticket(
        id=ticket_id,
        reference=reference_for(ticket_id, catalog.dialogue.reference_prefix),
        conversation_id=conversation_id,
        subject=make_subject(
            found_system.label if found_system else system,
            store,
            description,
            store_format=settings.subject_store,
            without_system=settings.subject_without_system,
        ),
        description=description,
        priority=decide_priority(catalog.priority, priority_texts, stated_priority),
        classification=(found_system or catalog.system_by_name("otro")).classification,
        department=department.key,
        store=store,
        system=found_system.name if found_system else system,
        reporter_name=reporter_name,
        reporter_phone=reporter_phone,
        channel=channel,
        affected_person=affected_person,
        mentioned_users=list(mentioned_users or []),
        attachments=list(attachments or []),
        correlation_id=correlation_id,
    )
