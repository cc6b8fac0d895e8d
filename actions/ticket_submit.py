"""Submitting the confirmed ticket to the ledger and to Zoho Desk, and clearing a finished
or cancelled one."""
import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Text

import redis
from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import (
    bind_correlation,
    form_started_event,
    get_catalog,
    get_ledger,
    first_value,
    incident_started_at,
    media_paths,
    report_message_id,
    reporter,
    reset_ticket_slots,
    user_texts_since,
)
from actions import same_incident
from actions.ticket_extras import (
    KNOWN_FIX_SOLVED,
    current_error_messages,
    current_known_fix,
)
from helpdesk.errors import ConfigError
from helpdesk.tickets import ANNOUNCE_TURN, DELIVERED, Ledger, TicketRecord
from helpdesk import chatwoot, metrics
from helpdesk.tickets import priority_label
from helpdesk.settings import load_settings, load_zoho
from helpdesk.tickets import build_ticket, ticket_id_for
from helpdesk.config import Catalog, ZohoConfig, channel_config, load_departments, zoho_config
from helpdesk.whatsapp import send_reaction
from helpdesk.zoho import enqueue_addition, enqueue_delivery

logger = logging.getLogger(__name__)

_redis_clients: Dict[str, redis.Redis] = {}


def _queue_connection() -> redis.Redis:
    """A sync Redis client for RQ (used from a thread, never on the event loop)."""
    url = load_settings().redis_url
    if url not in _redis_clients:
        _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _redis_clients[url]


class ActionSubmitTicket(Action):
    """Writes the ticket to the ledger (state pending delivery), queues its delivery to Zoho
    Desk and waits a few seconds (config/zoho.yml `submit.wait_seconds`) for the Zoho number:
    "He creado el ticket #…" when it comes, "Zoho no está disponible…" with the reference
    when it does not (a worker sends the number later). Without Zoho configured, the ledger
    reference. With Zoho configured but the ticket's department without a zoho_id, the
    reference and the truth (utter_ticket_waiting_setup): it waits, the support team is told.

    The ticket id comes from the conversation and the moment the form started, so the same
    form submitted twice (a redelivered message, a retried action call) is one row.
    """

    def name(self) -> Text:
        return "action_submit_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        correlation_id = bind_correlation(tracker)
        catalog = get_catalog()
        started = form_started_event(tracker)
        # a suggested known fix solved the problem (actions/known_fix.py): the form ended
        # without a confirmation on purpose, and no ticket is opened
        if current_known_fix(tracker) == KNOWN_FIX_SOLVED:
            logger.info("no ticket: a known fix solved the problem")
            return reset_ticket_slots()
        # the same outage as a ticket just recorded (actions/same_incident.py): the report
        # joins that ticket, and the reporter is told its number
        joined = same_incident.joined(tracker)
        if started is not None and joined:
            await _join(dispatcher, tracker, joined, started["timestamp"], correlation_id)
            return reset_ticket_slots()
        if started is None or tracker.get_slot("confirm_ticket") is not True:
            logger.warning("submit without a confirmed ticket form; nothing recorded")
            return reset_ticket_slots()
        persons = tracker.get_slot("person") or []
        who = reporter(tracker)
        ticket_id = ticket_id_for(tracker.sender_id, started["timestamp"])
        ticket = build_ticket(
            catalog,
            ticket_id=ticket_id,
            conversation_id=tracker.sender_id,
            store=tracker.get_slot("store"),
            system=tracker.get_slot("system"),
            description=tracker.get_slot("description") or "",
            stated_priority=tracker.get_slot("priority"),
            priority_texts=user_texts_since(tracker, started["timestamp"])
            + [tracker.get_slot("description") or ""],
            reporter_name=who["name"],
            reporter_phone=who["phone"],
            channel=who["channel"],
            affected_person=first_value([p for p in persons if not str(p).startswith("@")]),
            mentioned_users=[p for p in persons if str(p).startswith("@")],
            # only files of the media directory: the slot may come from a forged call
            attachments=media_paths(tracker.get_slot("attachments") or [], "attachments slot",
                                    ticket_id=ticket_id, conversation_id=tracker.sender_id),
            correlation_id=correlation_id,
        )
        # error messages read from screenshots (actions/vision.py) go with the ticket
        ticket.error_messages = current_error_messages(tracker)
        try:
            record, created = await asyncio.to_thread(get_ledger().submit, ticket)
        except Exception:
            logger.exception("ledger write failed", extra={"ticket_id": ticket.id})
            dispatcher.utter_message(response="utter_ticket_record_failed")
            # keep what was collected and read it back again: the user confirms once more
            # when they want to retry, and nothing is submitted without that confirmation
            return [SlotSet("confirm_ticket", None), FollowupAction("ticket_form")]
        logger.info(
            "ticket recorded" if created else "ticket already recorded",
            extra={
                "ticket_id": record.id,
                "reference": record.reference,
                "priority": record.priority,
                "conversation_id": tracker.sender_id,
            },
        )
        if created:  # response_time_seconds: the incident's first message to its ticket
            await _observe_response_time(record.created_at - incident_started_at(tracker, started))
        await _note_in_chatwoot(tracker.sender_id, record.id, correlation_id)
        if created:
            await _react_to_report(tracker, started["timestamp"])
        label = priority_label(catalog.priority, record.priority)
        config = _zoho_config_or_none()
        if config is None:
            # no Zoho Desk: the ledger reference is the answer; if Zoho is connected later,
            # a worker tells the user the Zoho number once the ticket is delivered
            await _hand_over(get_ledger(), record.id)
            dispatcher.utter_message(response="utter_ticket_recorded", reference=record.reference, priority=label)
            return reset_ticket_slots()
        if record.state != DELIVERED and not await asyncio.to_thread(_department_connected, catalog, record):
            # Zoho is connected but not for this department (no zoho_id yet): the ticket waits,
            # the delivery job tells the support team, a worker sends the number once it exists
            await _queue_delivery(record, config, correlation_id)
            await _hand_over(get_ledger(), record.id)
            dispatcher.utter_message(response="utter_ticket_waiting_setup", reference=record.reference,
                                     priority=label)
            return reset_ticket_slots()
        record = await _deliver_within_the_turn(get_ledger(), record, config, correlation_id)
        if record.state == DELIVERED:
            dispatcher.utter_message(
                response="utter_ticket_created",
                ticket_number=record.zoho_ticket_number,
                priority=label,
                reference=record.reference,
            )
        else:
            dispatcher.utter_message(response="utter_zoho_unavailable", reference=record.reference, priority=label)
        return reset_ticket_slots()


def _zoho_config_or_none() -> Optional[ZohoConfig]:
    if load_zoho() is None:
        return None
    try:
        return zoho_config()
    except ConfigError:
        logger.exception("config/zoho.yml is broken; tickets stay in the ledger")
        return None


async def _observe_response_time(seconds: float) -> None:
    try:
        await asyncio.to_thread(metrics.RESPONSE_TIME.observe, _queue_connection(), max(0.0, seconds))
    except Exception:  # a metric never fails the ticket
        logger.debug("response time not recorded", exc_info=True)


async def _hand_over(ledger: Ledger, ticket_id: str) -> bool:
    """A worker will tell the user the Zoho number (the turn stops waiting)."""
    try:
        return await asyncio.to_thread(ledger.hand_announcement_to_worker, ticket_id)
    except Exception:
        logger.exception("could not hand the announcement to the workers", extra={"ticket_id": ticket_id})
        return False


async def _deliver_within_the_turn(
    ledger: Ledger, record: TicketRecord, config: ZohoConfig, correlation_id: Optional[str]
) -> TicketRecord:
    """Queue the delivery and wait a few seconds for the Zoho number.

    Returns the record delivered (the turn answers with the number) or not (the turn says
    Zoho is unavailable, and a worker tells the number once it has it). Exactly one of the
    two tells the user: the ledger's `announce` decides it atomically.
    """
    if record.state != DELIVERED:
        if await _queue_delivery(record, config, correlation_id):
            record = await _wait_for_delivery(ledger, record, config.submit.wait_seconds, config.submit.poll_seconds)
    if record.state == DELIVERED:
        if record.announce in (None, ANNOUNCE_TURN):
            await asyncio.to_thread(ledger.claim_announcement_for_turn, record.id)
        return record
    if await _hand_over(ledger, record.id):
        return record
    # delivered between our last look and the hand-over: answer with the number after all
    latest = await asyncio.to_thread(ledger.get, record.id)
    if latest is not None and latest.state == DELIVERED:
        await asyncio.to_thread(ledger.claim_announcement_for_turn, record.id)
        return latest
    return record


async def _queue_delivery(record: TicketRecord, config: ZohoConfig, correlation_id: Optional[str]) -> bool:
    try:
        await asyncio.to_thread(enqueue_delivery, _queue_connection(), record.id, config, correlation_id)
    except Exception:
        # the ticket is safe in the ledger; the reconciler queues it when Redis is back
        logger.exception("delivery not queued", extra={"ticket_id": record.id})
        return False
    return True


def _department_connected(catalog: Catalog, record: TicketRecord) -> bool:
    """Whether the ticket's department has its Zoho id (config/departments.yml, read again
    when the cached catalog has none: an operator may have filled it in since)."""
    department = catalog.departments.get(record.department)
    if department is not None and department.zoho_id:
        return True
    try:
        fresh = load_departments(load_settings().config_dir / "departments.yml").get(record.department)
    except ConfigError:
        logger.exception("config/departments.yml unreadable", extra={"ticket_id": record.id})
        return department is None  # unknown here: let the delivery job decide and report it
    return bool(fresh and fresh.zoho_id) or (department is None and fresh is None)


async def _wait_for_delivery(ledger: Ledger, record: TicketRecord, wait: float, poll: float) -> TicketRecord:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await asyncio.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        try:
            latest = await asyncio.to_thread(ledger.get, record.id)
        except Exception:
            logger.exception("ledger read failed while waiting for delivery", extra={"ticket_id": record.id})
            return record
        if latest is None:
            return record
        record = latest
        if record.state != "pending_delivery":
            break
    return record


class ActionResetTicket(Action):
    """Clears what a cancelled ticket form collected."""

    def name(self) -> Text:
        return "action_reset_ticket"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        bind_correlation(tracker)
        return reset_ticket_slots()


async def _join(dispatcher: CollectingDispatcher, tracker: Tracker, ticket_id: str,
                started: float, correlation_id: str) -> None:
    """Add this report to the ticket of the same outage: a comment (reporter, description) and
    its files, through the Zoho queue like any addition; the reporter told the number."""
    who = reporter(tracker)
    report_id = ticket_id_for(tracker.sender_id, started)  # the same form: one comment
    paths = media_paths(tracker.get_slot("attachments") or [], "attachments slot",
                        ticket_id=ticket_id, conversation_id=tracker.sender_id)
    settings = get_catalog().dialogue
    template = settings.same_incident_comment
    if ticket_id == (await asyncio.to_thread(_own_recent_id, tracker)):
        template = settings.more_comment  # more about the reporter's own ticket
    description = tracker.get_slot("description") or " ".join(
        text for text in user_texts_since(tracker, started) if text)
    comment = template.format(name=who["name"] or "", phone=who["phone"] or tracker.sender_id,
                              description=description)
    try:
        record = await asyncio.to_thread(_add_report, ticket_id, report_id, comment, paths,
                                         correlation_id)
    except Exception:
        logger.exception("report not added to the ticket of the same incident",
                         extra={"ticket_id": ticket_id})
        dispatcher.utter_message(response="utter_ticket_record_failed")
        return
    logger.info("report joined the ticket of the same incident",
                extra={"ticket_id": ticket_id, "conversation_id": tracker.sender_id})
    dispatcher.utter_message(response="utter_report_added_to_ticket",
                             number=same_incident.shown_number(record))
    await _react_to_report(tracker, started)  # in a group, ✅ on this report too


def _own_recent_id(tracker: Tracker) -> Optional[str]:
    recent = get_ledger().recent_for(tracker.sender_id, 1)
    return recent[0].id if recent else None


def _add_report(ticket_id: str, report_id: str, comment: str, paths: List[str],
                correlation_id: str) -> TicketRecord:
    """Blocking: the ledger and RQ. With Zoho, a comment and the files go to its ticket
    (once each, by id); without it the ledger's description keeps the report."""
    ledger = get_ledger()
    record = ledger.get(ticket_id)
    if record is None:
        raise KeyError(f"no ticket {ticket_id}")
    attachments = ledger.add_attachments(ticket_id, paths) if paths else []
    if load_zoho() is None:
        ledger.add_report(ticket_id, report_id, comment)
        return ledger.get(ticket_id)
    connection = _queue_connection()
    enqueue_addition(connection, ticket_id, zoho_config(), comment_text=comment,
                     addition_id=f"{ticket_id}:report:{report_id}",
                     correlation_id=correlation_id)
    for index, path in enumerate(attachments):
        if path in paths:
            enqueue_addition(connection, ticket_id, zoho_config(), attachment_path=path,
                             addition_id=f"{ticket_id}:attachment:{index}",
                             correlation_id=correlation_id)
    return record


async def _react_to_report(tracker: Tracker, started: float) -> None:
    """In a group, the reaction of config/channels.yml `groups.ticket_reaction` on the report
    that started the ticket: the group sees it has a ticket without another message."""
    if (tracker.get_latest_input_channel() or "") != "waha":
        return
    emoji = channel_config().ticket_reaction
    message_id = report_message_id(tracker, started)
    if not emoji or not message_id:
        return
    try:
        await asyncio.to_thread(send_reaction, tracker.sender_id, message_id, emoji,
                                _queue_connection())
    except Exception:  # a reaction is a courtesy: never worth the ticket's answer
        logger.exception("reaction on the report not queued")


async def _note_in_chatwoot(conversation_id: str, ticket_id: str, correlation_id: str) -> None:
    """The ticket summary as a private note (labels, attributes) for agents in Chatwoot."""
    try:
        await asyncio.to_thread(chatwoot.note_ticket, conversation_id, ticket_id,
                                correlation_id)
    except Exception:  # Chatwoot's copy must never cost the user their ticket
        logger.exception("ticket note not queued for Chatwoot", extra={"ticket_id": ticket_id})
