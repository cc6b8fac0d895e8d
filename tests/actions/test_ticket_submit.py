"""Submitting the confirmed ticket to the ledger (a real SQLite file per test) and clearing a
cancelled one (actions/ticket_submit.py)."""
import dataclasses
import json
import sqlite3

import pytest
from rasa.shared.core.events import ActiveLoop, UserUttered

import actions.common
import actions.ticket_submit
from actions.ticket_submit import ActionResetTicket, ActionSubmitTicket
from helpdesk.metrics import RESPONSE_TIME
from helpdesk.tickets import PENDING_DELIVERY, Ledger
from helpdesk.tickets import ticket_id_for
from helpdesk import redis_keys
from helpdesk.config import channel_config
from helpdesk.settings import load_settings
from helpdesk.whatsapp import Route
from tests.actions.helpers import (
    FORM,
    FRESH_TICKET_SLOTS,
    SENDER,
    TICKET_SLOTS,
    Conversation,
    form_turn,
    message,
    paths_outside_media,
    rendered,
    responses,
    run,
    slot_events,
)

INCIDENT = "se cayó el POS en la tienda 42, no podemos vender, avisar a Luis y a @5491100000001"
METADATA = {"sender_name": "Ana Pérez", "sender_phone": "5491100002222"}
INCIDENT_ENTITIES = [("store", "tienda 42"), ("system", "POS"), ("person", "Luis"), ("person", "@5491100000001")]
PRINTER = "la impresora fiscal de la tienda 42 no imprime tickets"
PRINTER_ENTITIES = [("store", "tienda 42"), ("system", "impresora fiscal")]
BALANCE = "se rompió la balanza de la tienda 12, no pesa bien"
BALANCE_ENTITIES = [("system", "balanza"), ("store", "tienda 12")]


def confirmed(conversation: Conversation, text: str = INCIDENT, entities=INCIDENT_ENTITIES) -> Conversation:
    """An incident reported, read back and confirmed; the form has just finished."""
    slots = {kind: value for kind, value in entities if kind in ("store", "system")}
    persons = [value for kind, value in entities if kind == "person"]
    if persons:
        slots["person"] = persons
    conversation.user(text, "report_incident", entities, **slots)
    form_turn(conversation)
    conversation.form_asks("confirm_ticket", "Voy a crear este ticket: ...")
    conversation.user("sí", "affirm")
    events, _ = form_turn(conversation)
    assert slot_events(events)["confirm_ticket"] is True
    conversation.deactivate_form()
    return conversation


def form_started_at(conversation: Conversation) -> float:
    starts = [e.timestamp for e in conversation.events if isinstance(e, ActiveLoop) and e.name == FORM]
    return starts[-1]


@pytest.fixture
def ana() -> Conversation:
    return Conversation(metadata=METADATA)


def test_submit_records_one_pending_ticket_with_every_field(ana, bot_ledger, domain):
    confirmed(ana)
    tracker = ana.tracker()

    events, dispatcher = run(ActionSubmitTicket(), tracker, domain)

    records = bot_ledger.recent_for(SENDER, 10)
    assert len(records) == 1
    record = records[0]
    assert record.id == ticket_id_for(SENDER, form_started_at(ana))
    assert record.reference.startswith("HD-") and len(record.reference) == 9
    assert record.state == PENDING_DELIVERY
    assert record.conversation_id == SENDER
    assert record.store == "Tienda 42 (Avenida)"
    assert record.system == "POS"
    assert record.description == INCIDENT
    assert record.subject == f"POS / caja en Tienda 42 (Avenida): {INCIDENT}"
    assert len(record.subject) <= 120
    assert record.priority == "urgent"
    assert record.classification == "Problem"
    assert record.department == "it"
    assert record.reporter_name == "Ana Pérez"
    assert record.reporter_phone == "5491100002222"
    assert record.channel == "rest"
    assert record.affected_person == "Luis"
    assert record.mentioned_users == ["@5491100000001"]
    assert record.correlation_id == tracker.latest_message["metadata"]["correlation_id"]
    assert record.attempts == 0
    assert record.zoho_ticket_id is None

    sent = message(dispatcher, "utter_ticket_recorded")
    assert sent["reference"] == record.reference
    assert rendered(sent)["text"].startswith(
        f"He registrado el ticket {record.reference} con prioridad urgente."
    )
    assert slot_events(events) == FRESH_TICKET_SLOTS


def test_attachments_outside_the_media_directory_are_dropped_and_the_ticket_goes_through(
        ana, bot_ledger, domain, caplog):
    """A forged `attachments` slot naming `.env`, /proc/self/environ, `../` tricks or a symlink
    out of the media directory: the ticket is recorded with the channel's own file only, and
    the skip is logged with the ticket id (never the path)."""
    media = load_settings().var_dir / "media"
    good = str(media / "cd" / "cdef.jpg")
    hostile = paths_outside_media(load_settings().var_dir)
    confirmed(ana)
    ana.slot("attachments", [*hostile, good, 42])

    events, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    [record] = bot_ledger.recent_for(SENDER, 10)
    assert record.attachments == [good]
    assert message(dispatcher, "utter_ticket_recorded")["reference"] == record.reference
    [refusal] = [r for r in caplog.records if r.getMessage().startswith("attachment refused")]
    assert refusal.ticket_id == record.id and refusal.refused == len(hostile) + 1
    assert all(path not in str(refusal.__dict__) for path in hostile)


def test_reporter_phone_falls_back_to_the_sender_id_and_channel_to_metadata(bot_ledger, domain):
    conversation = Conversation(sender_id="5491133334444", metadata={"channel": "whatsapp"})
    confirmed(conversation, PRINTER, PRINTER_ENTITIES)

    run(ActionSubmitTicket(), conversation.tracker(), domain)

    record = bot_ledger.recent_for("5491133334444", 1)[0]
    assert record.reporter_name is None
    assert record.reporter_phone == "5491133334444"
    assert record.channel == "whatsapp"
    assert record.priority == "normal"


def test_stated_and_corrected_priority_wins(ana, bot_ledger, domain):
    ana.user(INCIDENT, "report_incident", [("store", "tienda 42"), ("system", "POS")],
             store="tienda 42", system="POS")
    form_turn(ana)
    ana.form_asks("confirm_ticket")
    ana.user("no", "deny")
    form_turn(ana)
    ana.form_asks("correct_field")
    ana.user("la prioridad", "inform")
    form_turn(ana)
    ana.form_asks("confirm_ticket")
    ana.user("sí", "affirm")
    form_turn(ana)
    ana.deactivate_form()

    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert bot_ledger.recent_for(SENDER, 1)[0].priority == "normal"
    assert message(dispatcher, "utter_ticket_recorded")["priority"] == "normal"


def test_the_same_submit_twice_is_one_ticket(ana, bot_ledger, domain):
    confirmed(ana)
    tracker_state = ana.tracker()

    _, first = run(ActionSubmitTicket(), tracker_state, domain)
    # Rasa redelivers the same call (a retried message, a timeout on its side)
    _, second = run(ActionSubmitTicket(), ana.tracker(), domain)

    records = bot_ledger.recent_for(SENDER, 10)
    assert len(records) == 1
    assert message(first, "utter_ticket_recorded")["reference"] == records[0].reference
    assert message(second, "utter_ticket_recorded")["reference"] == records[0].reference


def test_a_new_form_is_a_new_ticket(ana, bot_ledger, domain):
    confirmed(ana)
    events, first = run(ActionSubmitTicket(), ana.tracker(), domain)
    ana.action("action_submit_ticket").apply(events).action("action_listen")

    confirmed(ana, PRINTER, PRINTER_ENTITIES)
    _, second = run(ActionSubmitTicket(), ana.tracker(), domain)

    records = bot_ledger.recent_for(SENDER, 10)
    assert len(records) == 2
    references = {message(first, "utter_ticket_recorded")["reference"],
                  message(second, "utter_ticket_recorded")["reference"]}
    assert references == {r.reference for r in records}
    newest = records[0]
    assert newest.description == PRINTER
    assert newest.system == "impresora fiscal"
    assert newest.priority == "normal"
    assert newest.affected_person is None and newest.mentioned_users == []


@pytest.mark.parametrize("confirm", [None, False])
def test_submit_without_confirmation_records_nothing(ana, bot_ledger, domain, confirm):
    ana.user(INCIDENT, "report_incident", [("store", "tienda 42"), ("system", "POS")],
             store="tienda 42", system="POS")
    form_turn(ana)
    ana.form_asks("confirm_ticket")
    ana.slot("confirm_ticket", confirm)

    events, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert bot_ledger.recent_for(SENDER, 10) == []
    assert dispatcher.messages == []
    assert slot_events(events)["store"] is None


def test_submit_without_any_form_records_nothing(ana, bot_ledger, domain):
    ana.user("sí", "affirm").slot("confirm_ticket", True)

    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert bot_ledger.recent_for(SENDER, 10) == []
    assert dispatcher.messages == []


# after a failed write the form reads the ticket back again: nothing is submitted unconfirmed
RETRY_EVENTS = [
    {"event": "slot", "timestamp": None, "name": "confirm_ticket", "value": None},
    {"event": "followup", "timestamp": None, "name": "ticket_form"},
]


def test_failed_write_then_retry_records_one_ticket(ana, monkeypatch, tmp_path, domain, database_url):
    # the ledger's directory cannot be created: a plain file stands where it should be
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{blocker}/ledger.sqlite3")
    confirmed(ana)
    tracker = ana.tracker()

    events, dispatcher = run(ActionSubmitTicket(), tracker, domain)

    assert responses(dispatcher) == ["utter_ticket_record_failed"]
    assert events == RETRY_EVENTS
    assert blocker.is_file()

    # the database comes back and Rasa retries the same call: one ticket
    monkeypatch.setenv("DATABASE_URL", database_url)
    _, retried = run(ActionSubmitTicket(), ana.tracker(), domain)
    records = Ledger(database_url).recent_for(SENDER, 10)
    assert len(records) == 1
    assert message(retried, "utter_ticket_recorded")["reference"] == records[0].reference


def test_ledger_that_cannot_be_opened_gives_the_failure_message(ana, ledger_down, domain):
    confirmed(ana)

    events, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert responses(dispatcher) == ["utter_ticket_record_failed"]
    assert rendered(dispatcher.messages[0])["text"].startswith("No he podido registrar el ticket")
    assert events == RETRY_EVENTS


def test_ledger_file_that_is_not_a_database_gives_the_failure_message(ana, monkeypatch, tmp_path, domain):
    broken = tmp_path / "ledger.sqlite3"
    broken.write_bytes(b"this is not an SQLite database " * 200)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{broken}")
    confirmed(ana)

    events, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert responses(dispatcher) == ["utter_ticket_record_failed"]
    assert events == RETRY_EVENTS


def test_ledger_write_failing_after_it_opened_gives_the_failure_message(ana, bot_ledger, database_url, domain):
    # the table disappears under the open ledger (a broken migration, a wiped database)
    confirmed(ana)
    actions.common.get_ledger()  # the action server opened its ledger long ago
    path = database_url[len("sqlite:///"):]
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE tickets")

    events, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert responses(dispatcher) == ["utter_ticket_record_failed"]
    assert events == RETRY_EVENTS


# cancel ---------------------------------------------------------------------------------
def test_reset_clears_every_ticket_slot(ana, domain):
    ana.user(INCIDENT, "report_incident", [("store", "tienda 42"), ("system", "POS"), ("person", "Luis")],
             store="tienda 42", system="POS", person=["Luis"], priority="urgent")
    form_turn(ana)
    ana.form_asks("confirm_ticket")
    ana.user("no", "deny")
    form_turn(ana)
    ana.form_asks("correct_field")
    ana.slot("store_attempts", 1.0)
    ana.user("cancelar", "cancel")
    before = ana.tracker().slots
    assert before["store"] and before["system"] and before["description"] and before["person"]
    assert before["correcting"] is True

    events, dispatcher = run(ActionResetTicket(), ana.tracker(), domain)

    assert dispatcher.messages == []
    after = ana.apply(events).tracker().slots
    # every slot of the domain but ticket_number belongs to the ticket; each is back to its start
    ticket_slots = {name for name in domain["slots"] if name != "ticket_number"}
    assert set(TICKET_SLOTS) == ticket_slots
    assert set(slot_events(events)) == ticket_slots
    for name in ticket_slots:
        initial = domain["slots"][name].get("initial_value")
        assert after[name] == initial, name


# with Zoho Desk (fake Zoho on loopback, real Redis, a real RQ worker in the background) ---
import time  # noqa: E402

from rq import Worker  # noqa: E402

from helpdesk.tickets import DELIVERED  # noqa: E402
from helpdesk.zoho import delivery_job_id, job_status  # noqa: E402
from tests.workers.zoho_support import DEPARTMENT_IDS, background_workers, wait_until, world  # noqa: E402,F401


def worker_ready(world, background_workers):
    background_workers()
    wait_until(lambda: Worker.all(connection=world.redis), 15, what="the worker registered")


def test_with_zoho_the_turn_answers_with_the_zoho_number(ana, bot_ledger, domain, world, background_workers):
    worker_ready(world, background_workers)
    confirmed(ana)

    events, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    record = bot_ledger.recent_for(SENDER, 1)[0]
    assert record.state == DELIVERED
    [ticket] = world.zoho.tickets_with_ref(record.id)
    assert responses(dispatcher) == ["utter_ticket_created"]
    sent = message(dispatcher, "utter_ticket_created")
    assert sent["ticket_number"] == record.zoho_ticket_number == ticket["ticketNumber"]
    assert sent["priority"] == "urgente" and sent["reference"] == record.reference
    assert ticket["priority"] == "High" and ticket["cf"] == {"cf_helpdesk_ref": record.id}
    assert record.announce == "turn"
    assert slot_events(events)["confirm_ticket"] is None
    time.sleep(1.0)
    assert world.rasa.triggered() == []  # told once, in the turn
    # response_time_seconds: the incident's first message to its ticket, once per ticket
    run(ActionSubmitTicket(), ana.tracker(), domain)
    [count] = [s.value for s in RESPONSE_TIME.read(world.redis).samples
               if s.name == "response_time_seconds_count"]
    [total] = [s.value for s in RESPONSE_TIME.read(world.redis).samples
               if s.name == "response_time_seconds_sum"]
    first_message = next(e.timestamp for e in ana.events if getattr(e, "text", None) == INCIDENT)
    assert count == 1
    assert total == pytest.approx(record.created_at - first_message, abs=0.01)


def test_with_zoho_down_the_turn_says_so_and_the_number_follows(ana, bot_ledger, domain, world,
                                                                 background_workers):
    world.reconfigure(submit={"wait_seconds": 1.5}, delivery={"retry_intervals": [1]},
                      circuit={"recovery_seconds": 1})
    world.zoho.fail(None, status=503)
    worker_ready(world, background_workers)
    confirmed(ana)

    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    record = bot_ledger.recent_for(SENDER, 1)[0]
    sent = message(dispatcher, "utter_zoho_unavailable")
    assert sent["reference"] == record.reference
    assert record.state == "pending_delivery" and record.announce == "worker"
    world.zoho.clear_failures()  # Zoho is back
    [told] = wait_until(lambda: world.rasa.triggered("EXTERNAL_ticket_delivered"), 30, what="the number")
    delivered = bot_ledger.get(record.id)
    assert told.conversation_id == SENDER
    # with the announcement's key, by which the action says it once (workers/announcements.py)
    assert told.entities == {"ticket_number": delivered.zoho_ticket_number, "priority": "urgente",
                             "reference": record.reference,
                             "announcement": f"announce-delivered-{record.id}"}
    assert len(world.zoho.tickets) == 1


def test_a_department_without_zoho_id_is_told_the_truth_and_the_number_follows(ana, bot_ledger, domain, world,
                                                                              background_workers):
    import yaml

    world.reconfigure(delivery={"unconfigured_retry_seconds": 1})
    path = world.config_dir / "departments.yml"
    shipped = yaml.safe_load(path.read_text(encoding="utf-8"))
    shipped["departments"]["it"]["zoho_id"] = ""  # as shipped
    path.write_text(yaml.safe_dump(shipped, allow_unicode=True), encoding="utf-8")
    worker_ready(world, background_workers)
    confirmed(ana)

    started = time.monotonic()
    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)

    assert time.monotonic() - started < 2  # no wait for a number that cannot come
    record = bot_ledger.recent_for(SENDER, 1)[0]
    assert record.department == "it"
    assert responses(dispatcher) == ["utter_ticket_waiting_setup"]
    assert message(dispatcher, "utter_ticket_waiting_setup")["reference"] == record.reference
    text = rendered(message(dispatcher, "utter_ticket_waiting_setup"))["text"]
    assert record.reference in text and "Zoho no está disponible" not in text
    assert "aún no está conectada" in text and "equipo de soporte ya está avisado" in text
    assert record.state == PENDING_DELIVERY and record.announce == "worker"
    [notice] = wait_until(lambda: bot_ledger.human_notices(), 15, what="the support team told")
    assert notice["kind"] == "department_unconfigured"
    assert world.zoho.calls("POST", "/tickets") == []

    shipped["departments"]["it"]["zoho_id"] = DEPARTMENT_IDS["it"]  # the operator fills it in
    path.write_text(yaml.safe_dump(shipped, allow_unicode=True), encoding="utf-8")
    [told] = wait_until(lambda: world.rasa.triggered("EXTERNAL_ticket_delivered"), 30, what="the number")
    assert told.entities["reference"] == record.reference
    assert bot_ledger.get(record.id).state == DELIVERED and len(world.zoho.tickets) == 1


def test_with_no_worker_running_the_ticket_waits_in_the_queue(ana, bot_ledger, domain, world):
    world.reconfigure(submit={"wait_seconds": 0.5})
    confirmed(ana)
    started = time.monotonic()
    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)
    assert 0.4 < time.monotonic() - started < 3
    record = bot_ledger.recent_for(SENDER, 1)[0]
    assert responses(dispatcher) == ["utter_zoho_unavailable"]
    assert job_status(world.redis, delivery_job_id(record.id)) == "queued"
    assert record.announce == "worker"


def test_with_redis_unreachable_the_ticket_is_kept_for_the_reconciler(ana, bot_ledger, domain, world, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    confirmed(ana)
    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)
    record = bot_ledger.recent_for(SENDER, 1)[0]
    assert message(dispatcher, "utter_zoho_unavailable")["reference"] == record.reference
    assert record.state == "pending_delivery" and record.announce == "worker"


def test_the_same_submit_after_delivery_answers_the_same_number(ana, bot_ledger, domain, world, background_workers):
    worker_ready(world, background_workers)
    confirmed(ana)
    _, first = run(ActionSubmitTicket(), ana.tracker(), domain)
    _, second = run(ActionSubmitTicket(), ana.tracker(), domain)
    assert (message(first, "utter_ticket_created")["ticket_number"]
            == message(second, "utter_ticket_created")["ticket_number"])
    assert len(world.zoho.tickets) == 1
    assert len(world.zoho.calls("POST", "/tickets")) == 1


def test_without_zoho_the_reference_is_the_answer_and_a_worker_may_tell_the_number_later(ana, bot_ledger, domain):
    confirmed(ana)
    _, dispatcher = run(ActionSubmitTicket(), ana.tracker(), domain)
    record = bot_ledger.recent_for(SENDER, 1)[0]
    assert responses(dispatcher) == ["utter_ticket_recorded"]
    assert record.announce == "worker"


# --- groups: the report gets the ticket reaction -------------------------------------------

GROUP_CHAT = "120363419669512474@g.us"
GROUP_CONVERSATION = "g120363419669512474-5491100002222"


def _queued(redis_client, chat: str):
    return [json.loads(raw) for raw in redis_client.lrange(redis_keys.outbox("waha", chat), 0, -1)]


def test_a_ticket_from_a_group_report_puts_the_reaction_on_the_report_once(
        bot_ledger, domain, optout_redis):
    redis_client = optout_redis
    redis_client.hset(redis_keys.route(GROUP_CONVERSATION), mapping=Route(
        channel="waha", chat_id=GROUP_CHAT, participant="5491100002222@c.us").to_hash())
    group = Conversation(sender_id=GROUP_CONVERSATION, input_channel="waha", metadata=METADATA)
    confirmed(group)
    report = next(e for e in group.events if isinstance(e, UserUttered))

    run(ActionSubmitTicket(), group.tracker(), domain)
    run(ActionSubmitTicket(), group.tracker(), domain)  # the same submit again: one ticket

    (reaction,) = _queued(redis_client, GROUP_CHAT)
    assert reaction["kind"] == "reaction" and reaction["emoji"] == "✅"
    assert reaction["message_id"] == report.message_id  # the report, not the "sí"
    assert reaction["conversation_id"] == GROUP_CONVERSATION


def test_no_reaction_in_a_direct_chat_or_when_the_setting_is_empty(
        ana, bot_ledger, domain, optout_redis, monkeypatch):
    redis_client = optout_redis
    direct = Conversation(input_channel="waha", metadata=METADATA)
    redis_client.hset(redis_keys.route(direct.sender_id), mapping=Route(
        channel="waha", chat_id=f"{direct.sender_id}@c.us").to_hash())
    confirmed(direct)
    run(ActionSubmitTicket(), direct.tracker(), domain)
    assert _queued(redis_client, f"{direct.sender_id}@c.us") == []

    redis_client.hset(redis_keys.route(GROUP_CONVERSATION), mapping=Route(
        channel="waha", chat_id=GROUP_CHAT, participant="5491100002222@c.us").to_hash())
    monkeypatch.setattr(actions.ticket_submit, "channel_config", lambda: dataclasses.replace(
        channel_config(), ticket_reaction=""))
    group = Conversation(sender_id=GROUP_CONVERSATION, input_channel="waha", metadata=METADATA)
    confirmed(group)
    run(ActionSubmitTicket(), group.tracker(), domain)
    assert _queued(redis_client, GROUP_CHAT) == []
