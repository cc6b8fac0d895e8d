"""The Chatwoot mirror end to end: `mirror_message` / `note_ticket` / `open_handoff` in this
process, a real RQ worker (`python -m workers.worker --burst`) on the session's real Redis,
the fake Chatwoot on loopback with injected failures."""
import time

import pytest
from rq import Queue

from helpdesk.chatwoot import mirror as chatwoot_mirror
from helpdesk.chatwoot import ChatwootOutbox
from helpdesk.config import chatwoot_config
from helpdesk.whatsapp import Route
from helpdesk.tickets import Ledger
from helpdesk.tickets import build_ticket, ticket_id_for
from tests.actions.helpers import paths_outside_media
from tests.fakes.chatwoot import FakeChatwoot
from tests.workers.chatwoot_support import config_dir, run_worker, save_route, start_worker, use_env

CONVERSATION = "5491122334455"
PHONE = "+5491122334455"


@pytest.fixture
def fake():
    with FakeChatwoot() as server:
        yield server


@pytest.fixture
def env(fake, redis_url, redis_client, tmp_path, monkeypatch, database_url):
    values = {**fake.env(), "REDIS_URL": redis_url, "HELPDESK_CONFIG_DIR": str(config_dir(tmp_path)),
              "DATABASE_URL": database_url}
    save_route(redis_client, CONVERSATION, Route(channel="waha", chat_id=f"{CONVERSATION}@c.us",
                                                 name="Ana Pérez", phone=CONVERSATION))
    return use_env(monkeypatch, values)


def expected(count, start=0):
    return [("incoming" if i % 2 == 0 else "outgoing", f"mensaje {i}") for i in range(start, start + count)]


def mirror(count, start=0, conversation=CONVERSATION):
    for kind, text in expected(count, start):
        assert chatwoot_mirror.mirror_message(conversation, kind, text, correlation_id=f"corr-{text}")


def outbox_left(redis_client, conversation=CONVERSATION):
    return ChatwootOutbox(redis_client, chatwoot_config()).pending(conversation)


@pytest.mark.parametrize("count", [10, 30], ids=["10-messages", "30-messages-more-than-a-jobs-retries"])
def test_messages_in_order_when_chatwoot_fails_every_other_call(fake, env, redis_client, count):
    fake.fail(500, times=None, every=2, method="POST", path=r"/messages$")
    mirror(count)

    run_worker(env)

    conversation = fake.conversation_of(PHONE)
    assert fake.contents(conversation["id"]) == expected(count)
    posts = fake.calls_to("POST", r"/messages$")
    assert [c.status for c in posts] == [500, 200] * count  # every message failed once, then landed
    assert outbox_left(redis_client) == []
    # one contact (identifier = the conversation id), one conversation in the bot's queue
    assert len(fake.calls_to("POST", r"^/contacts$")) == 1
    assert len(fake.calls_to("POST", r"^/conversations$")) == 1
    assert conversation["status"] == "pending"
    assert fake.contacts[conversation["contact_id"]]["identifier"] == CONVERSATION
    assert fake.contacts[conversation["contact_id"]]["name"] == "Ana Pérez"


@pytest.mark.parametrize("keeps_source_id", [True, False], ids=["chatwoot-keeps-source-id", "older-chatwoot"])
@pytest.mark.parametrize("after_processing", [True, False], ids=["landed", "not-landed"])
def test_timeouts_never_post_a_message_twice(fake, env, redis_client, keeps_source_id, after_processing):
    """A POST that times out may or may not have landed: the retry looks before posting."""
    fake.keeps_source_id = keeps_source_id
    fake.hang(1.5, times=3, every=2, after_processing=after_processing, method="POST", path=r"/messages$")
    mirror(6)

    run_worker(env)

    conversation = fake.conversation_of(PHONE)
    assert fake.contents(conversation["id"]) == expected(6)
    assert outbox_left(redis_client) == []
    # each uncertain attempt was followed by a look at the conversation's messages
    assert len(fake.calls_to("GET", r"/messages$")) == 3


def test_two_workers_at_once_keep_the_order(fake, env, redis_client):
    fake.fail(503, times=None, every=3, method="POST", path=r"/messages$")
    mirror(20)

    workers = [start_worker(env), start_worker(env)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr[-3000:]

    conversation = fake.conversation_of(PHONE)
    assert fake.contents(conversation["id"]) == expected(20)
    assert outbox_left(redis_client) == []


def test_an_outage_longer_than_the_retries_loses_nothing(fake, redis_url, redis_client, tmp_path,
                                                         monkeypatch, database_url, capsys):
    directory = config_dir(tmp_path, {"delivery": {"retry_intervals": [0, 0], "job_timeout_seconds": 60,
                                                   "circuit_failure_threshold": 50}})
    env = use_env(monkeypatch, {**fake.env(), "REDIS_URL": redis_url, "DATABASE_URL": database_url,
                                "HELPDESK_CONFIG_DIR": str(directory)})
    save_route(redis_client, CONVERSATION, Route(channel="waha", chat_id=f"{CONVERSATION}@c.us",
                                                 phone=CONVERSATION))
    outage = fake.fail(503, times=None, method="POST", path=r"/messages$")
    mirror(3)

    run_worker(env)  # every job uses its retries against the outage

    assert fake.contents(fake.conversation_of(PHONE)["id"]) == []
    assert len(Queue("chatwoot", connection=redis_client).failed_job_registry) == 1
    from workers.chatwoot_jobs import main

    assert main(["waiting"]) == 0
    assert f"{CONVERSATION}: 3 waiting" in capsys.readouterr().out

    fake.rules.remove(outage)  # Chatwoot is back; the operator kicks the mirror
    assert main(["kick"]) == 0
    run_worker(env)

    assert fake.contents(fake.conversation_of(PHONE)["id"]) == expected(3)
    assert outbox_left(redis_client) == []


def test_a_job_that_made_progress_hands_over_to_a_later_fresh_job(fake, redis_url, redis_client, tmp_path,
                                                                  monkeypatch, database_url):
    directory = config_dir(tmp_path, {"delivery": {"retry_intervals": [1, 1], "job_timeout_seconds": 60,
                                                   "circuit_failure_threshold": 50}})
    env = use_env(monkeypatch, {**fake.env(), "REDIS_URL": redis_url, "DATABASE_URL": database_url,
                                "HELPDESK_CONFIG_DIR": str(directory)})
    save_route(redis_client, CONVERSATION, Route(channel="waha", chat_id=f"{CONVERSATION}@c.us",
                                                 phone=CONVERSATION))
    fake.fail(502, times=1, after=2, method="POST", path=r"/messages$")
    mirror(4)

    run_worker(env)  # two messages land, the third fails: a new job is scheduled in 1 s
    conversation = fake.conversation_of(PHONE)
    assert fake.contents(conversation["id"]) == expected(2)
    queue = Queue("chatwoot", connection=redis_client)
    assert len(queue.scheduled_job_registry) == 1 and len(queue.failed_job_registry) == 0

    time.sleep(1.2)
    run_worker(env)  # RQ's scheduler hands the due job to the worker

    assert fake.contents(conversation["id"]) == expected(4)
    assert outbox_left(redis_client) == []


def test_a_message_chatwoot_refuses_goes_to_dead_letters_and_the_rest_follows(fake, env, redis_client):
    fake.fail(422, times=1, method="POST", path=r"/messages$",
              body={"error": "Content is too long"})
    mirror(3)

    run_worker(env)

    conversation = fake.conversation_of(PHONE)
    assert fake.contents(conversation["id"]) == expected(3)[1:]
    dead = ChatwootOutbox(redis_client, chatwoot_config()).dead_letters()
    assert [(d["conversation_id"], d["entry"]["text"]) for d in dead] == [(CONVERSATION, "mensaje 0")]
    assert "422" in dead[0]["error"]


def test_existing_contact_is_found_by_exact_phone(fake, env):
    """Chatwoot's search matches substrings: a longer number that contains ours comes first."""
    fake.add_contact(name="Otro", phone="+54911223344556", identifier="otro")
    existing = fake.add_contact(name="Ana", phone=PHONE, identifier="agente-la-creo")
    mirror(1)

    run_worker(env)

    assert len(fake.calls_to("POST", r"^/contacts$")) == 0
    assert fake.conversation_of(PHONE)["contact_id"] == existing["id"]


def test_deleted_chatwoot_conversation_is_made_again(fake, env):
    mirror(1)
    run_worker(env)
    first = fake.conversation_of(PHONE)
    del fake.conversations[first["id"]]  # an admin deleted it in Chatwoot

    mirror(1, start=1)
    run_worker(env)

    second = fake.conversation_of(PHONE)
    assert second["id"] != first["id"]
    assert fake.contents(second["id"]) == [("outgoing", "mensaje 1")]


def test_attachments_are_uploaded_and_a_vanished_file_is_named(fake, env, tmp_path):
    media = tmp_path / "var" / "media" / "pa"  # where the channel stores files
    media.mkdir(parents=True)
    photo = media / "pantalla.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    chatwoot_mirror.mirror_message(CONVERSATION, "incoming", "la caja muestra esto",
                                   attachments=[{"path": str(photo), "mime_type": "image/png",
                                                 "filename": "pantalla.png", "sha256": "x", "size": 12}])
    chatwoot_mirror.mirror_message(CONVERSATION, "incoming", "",
                                   attachments=[{"path": str(media / "borrado.pdf"), "filename": "borrado.pdf"}])

    run_worker(env)

    conversation = fake.conversation_of(PHONE)
    messages = fake.messages[conversation["id"]]
    assert [m["content"] for m in messages] == ["la caja muestra esto", "[adjunto no disponible: borrado.pdf]"]
    assert [a["name"] for a in messages[0]["attachments"]] == ["pantalla.png"]
    upload = fake.calls_to("POST", r"/messages$")[0]
    assert upload.files == [("pantalla.png", b"\x89PNG\r\n\x1a\nfake", "image/png")]
    assert upload.form["message_type"] == "incoming"


def test_a_file_outside_the_media_directory_is_never_uploaded(fake, env, tmp_path):
    """Only files the channel stored go to Chatwoot: `.env`, /proc/self/environ, `../` or a
    symlink out of the media directory are dropped (logged), the message still goes."""
    hostile = paths_outside_media(tmp_path / "var")
    chatwoot_mirror.mirror_message(CONVERSATION, "incoming", "mirá esto",
                                   attachments=[{"path": path, "filename": "x.png"} for path in hostile])

    finished = run_worker(env)

    conversation = fake.conversation_of(PHONE)
    [message] = fake.messages[conversation["id"]]
    assert message["content"] == "mirá esto" and not message.get("attachments")
    assert all(not call.files for call in fake.calls_to("POST", r"/messages$"))
    assert finished.stderr.count('"msg": "attachment refused') == len(hostile)


# ticket note, labels and custom attributes -----------------------------------------------------
@pytest.fixture
def ticket(catalog, database_url):
    ledger = Ledger(database_url)
    record, _ = ledger.submit(build_ticket(
        catalog, ticket_id=ticket_id_for(CONVERSATION, time.time()), conversation_id=CONVERSATION,
        store="Tienda 42 (Avenida)", system="POS", description="la caja 2 no enciende, no podemos vender",
        stated_priority=None, priority_texts=["la caja 2 no enciende, no podemos vender"],
    ))
    yield ledger, record
    ledger.engine.dispose()


def test_ticket_note_merges_labels_and_attributes(fake, env, ticket):
    ledger, record = ticket
    mirror(1)
    run_worker(env)
    conversation = fake.conversation_of(PHONE)
    # what an agent set meanwhile must survive
    conversation["labels"] = ["cliente-vip"]
    conversation["custom_attributes"] = {"zona": "norte", "priority": "baja"}

    chatwoot_mirror.note_ticket(CONVERSATION, record.id)
    run_worker(env)

    assert conversation["labels"] == ["cliente-vip", "ticket", "urgente"]
    assert conversation["custom_attributes"] == {
        "zona": "norte", "ticket_number": record.reference, "store": "Tienda 42 (Avenida)",
        "system": "POS", "priority": "urgente",
    }
    notes = fake.contents(conversation["id"], private=True)
    assert len(notes) == 1
    kind, text = notes[0]
    assert kind == "outgoing"
    assert text.startswith(f"Ticket {record.reference} registrado (pendiente de envío a Zoho Desk).")
    assert f"Asunto: {record.subject}" in text
    assert "Prioridad: urgente" in text and "Tienda: Tienda 42 (Avenida)" in text

    # queued again at the same number: no second note; delivered to Zoho: a note with its number
    chatwoot_mirror.note_ticket(CONVERSATION, record.id)
    ledger.mark_delivered(record.id, "1892000000042034", "1042")
    chatwoot_mirror.note_ticket(CONVERSATION, record.id)
    run_worker(env)

    notes = fake.contents(conversation["id"], private=True)
    assert len(notes) == 2
    assert notes[1][1].startswith("Ticket 1042 registrado (creado en Zoho Desk).")
    assert conversation["custom_attributes"]["ticket_number"] == "1042"
    assert conversation["labels"] == ["cliente-vip", "ticket", "urgente"]


def test_note_of_a_ticket_missing_from_the_ledger_is_a_dead_letter(fake, env, redis_client):
    chatwoot_mirror.note_ticket(CONVERSATION, "00000000-0000-0000-0000-000000000000")
    mirror(1)

    run_worker(env)

    assert fake.contents(fake.conversation_of(PHONE)["id"]) == expected(1)
    dead = ChatwootOutbox(redis_client, chatwoot_config()).dead_letters()
    assert [d["entry"]["kind"] for d in dead] == ["ticket"]


def test_handoff_opens_the_conversation_with_label_and_note(fake, env):
    mirror(1)
    run_worker(env)
    conversation = fake.conversation_of(PHONE)
    conversation["labels"] = ["cliente-vip"]

    chatwoot_mirror.open_handoff(CONVERSATION, "Traspaso a una persona: el usuario lo pidió.")
    fake.fail(500, times=1, method="POST", path=r"/labels$")  # a retry must not clobber either
    run_worker(env)

    assert conversation["status"] == "open"
    assert conversation["labels"] == ["cliente-vip", "escalated"]
    assert fake.contents(conversation["id"], private=True) == [
        ("outgoing", "Traspaso a una persona: el usuario lo pidió.")]


@pytest.mark.parametrize("team_id, assigned", [(2, 2), (99, None)], ids=["team", "unknown-team"])
def test_handoff_assigns_the_configured_team(fake, redis_url, tmp_path, monkeypatch, database_url,
                                             redis_client, team_id, assigned):
    directory = config_dir(tmp_path, {"handoff": {"team_id": team_id}})
    env = use_env(monkeypatch, {**fake.env(), "REDIS_URL": redis_url, "DATABASE_URL": database_url,
                                "HELPDESK_CONFIG_DIR": str(directory)})
    save_route(redis_client, CONVERSATION, Route(channel="waha", chat_id=f"{CONVERSATION}@c.us",
                                                 phone=CONVERSATION))

    chatwoot_mirror.open_handoff(CONVERSATION, "Traspaso a una persona.")
    run_worker(env)

    conversation = fake.conversation_of(PHONE)
    assert conversation["team_id"] == assigned
    assert conversation["status"] == "open"
    assert fake.contents(conversation["id"], private=True) == [("outgoing", "Traspaso a una persona.")]


def test_without_chatwoot_nothing_is_recorded(monkeypatch, redis_url, redis_client):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("CHATWOOT_URL", raising=False)

    assert chatwoot_mirror.mirror_message(CONVERSATION, "incoming", "hola") is None
    assert chatwoot_mirror.note_ticket(CONVERSATION, "x") is None
    assert redis_client.keys("*") == []


def test_bad_direction_is_refused(env):
    with pytest.raises(ValueError):
        chatwoot_mirror.mirror_message(CONVERSATION, "sideways", "hola")


def test_an_entry_the_writer_cannot_handle_is_parked_and_the_rest_follows(fake, env, redis_client, capsys):
    """A head that raises something other than a Chatwoot failure (here a KeyError in
    MirrorWriter: a message entry without its direction) never blocks the conversation."""
    outbox = ChatwootOutbox(redis_client, chatwoot_config())
    mirror(1)
    bad = outbox.append(CONVERSATION, {"kind": "message", "text": "sin dirección"})
    mirror(2, start=1)

    finished = run_worker(env)

    assert fake.contents(fake.conversation_of(PHONE)["id"]) == expected(3)
    assert outbox_left(redis_client) == []
    [dead] = outbox.dead_letters()
    assert (dead["entry"]["id"], dead["parked"], dead["error"]) == (bad, True, "KeyError: 'direction'")
    assert finished.stderr.count("parked in the dead letters") == 1
    from workers.chatwoot_jobs import main

    assert main(["dead"]) == 0
    assert f"{CONVERSATION}: message {bad} parked: KeyError: 'direction'" in capsys.readouterr().out
    assert main(["replay", bad]) == 0
    assert [e["id"] for e in outbox_left(redis_client)] == [bad]
