"""The Chatwoot agent webhook over real HTTP: the connector's blueprint registered the way Rasa
registers channels (`rasa.core.channels.channel.register` under /webhooks/), in a Sanic server
process on a free port, with the session's real Redis. Payloads come from the fake Chatwoot,
which builds them from its own state the way Chatwoot does."""
import json
import os
import time

import pytest
from rq import Queue

from helpdesk import handoff, redis_keys
from helpdesk.chatwoot import ChatwootClient
from helpdesk.config import load_chatwoot_config
from helpdesk.chatwoot import ChatwootDirectory
from helpdesk.whatsapp import Route
from helpdesk.settings import ChatwootSettings
from connectors.chatwoot import ChatwootWebhook, Verdict, signature_valid
from tests.conftest import PROJECT
from tests.fakes.chatwoot import FakeChatwoot
from tests.workers.chatwoot_support import save_route, serve_webhook, stop

TOKEN = "webhook-token-123"
SECRET = "webhook-secret-456"
DIRECT = "5491122334455"
GROUP = "g120363000000000001-5491199887766"


@pytest.fixture(scope="module")
def fake():
    with FakeChatwoot() as server:
        yield server


def _serve(fake, redis_url, secret):
    env = {**os.environ, **fake.env(), "REDIS_URL": redis_url, "PYTHONPATH": str(PROJECT),
           "CHATWOOT_WEBHOOK_TOKEN": TOKEN, "LOG_LEVEL": "INFO"}
    if secret:
        env["CHATWOOT_WEBHOOK_SECRET"] = secret
    for name in ("HELPDESK_CONFIG_DIR", "WAHA_BASE_URL", "META_ACCESS_TOKEN"):
        env.pop(name, None)
    return serve_webhook(env)


@pytest.fixture(scope="module")
def server(fake, redis_url):
    process, url = _serve(fake, redis_url, None)
    yield url
    stop(process)


@pytest.fixture(scope="module")
def signed_server(fake, redis_url):
    process, url = _serve(fake, redis_url, SECRET)
    yield url
    stop(process)


@pytest.fixture
def world(fake, redis_client):
    """A direct and a group conversation, mirrored in Chatwoot, with their WhatsApp routes."""
    options = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")
    settings = ChatwootSettings(url=fake.url, api_token=fake.token, account_id=str(fake.account_id),
                                inbox_id=str(fake.inbox_id), webhook_token=TOKEN, webhook_secret=None)
    client = ChatwootClient(settings, options)
    directory = ChatwootDirectory(redis_client, options)
    save_route(redis_client, DIRECT, Route(channel="waha", chat_id=f"{DIRECT}@c.us", phone=DIRECT))
    save_route(redis_client, GROUP, Route(channel="waha", chat_id="120363000000000001@g.us",
                                          participant="5491199887766@c.us", phone="5491199887766"))
    ids = {conversation: directory.ensure(client, conversation) for conversation in (DIRECT, GROUP)}
    yield {"client": client, "directory": directory, "ids": ids}
    client.close()


def post(url, payload, token=TOKEN, **kwargs):
    return FakeChatwoot.deliver(payload, f"{url}?token={token}" if token is not None else url, **kwargs)


def relayed(redis_client, chat_id):
    """What the relay queued for WhatsApp (helpdesk.whatsapp.send's per-chat outbox)."""
    return [json.loads(raw) for raw in redis_client.lrange(redis_keys.outbox("waha", chat_id), 0, -1)]


# authentication and bad input ------------------------------------------------------------------
def test_missing_or_wrong_token_is_refused(server, fake, world, redis_client):
    message = fake.agent_writes(world["ids"][DIRECT], "Hola")
    for token in (None, "", "webhook-token-12", TOKEN + "x"):
        status, body = post(server, fake.message_webhook(message["id"]), token=token)
        assert (status, body) == (401, {"error": "missing or wrong token"})
    assert relayed(redis_client, f"{DIRECT}@c.us") == []


def test_signature_is_required_when_a_secret_is_set(signed_server, fake, world, redis_client):
    message = fake.agent_writes(world["ids"][DIRECT], "Hola")
    payload = fake.message_webhook(message["id"])

    assert post(signed_server, payload)[0] == 401  # unsigned
    assert post(signed_server, payload, secret="not-the-secret")[0] == 401
    assert post(signed_server, payload, secret=SECRET, timestamp=int(time.time()) - 3600)[0] == 401
    assert relayed(redis_client, f"{DIRECT}@c.us") == []

    assert post(signed_server, payload, secret=SECRET) == (200, {"result": "relayed"})
    assert [m["text"] for m in relayed(redis_client, f"{DIRECT}@c.us")] == ["Hola"]


def test_malformed_and_oversized_bodies(server):
    assert post(server, None, raw=b"{not json")[0] == 400
    assert post(server, None, raw=b"[1, 2]")[0] == 400
    assert post(server, None, raw=b"{" + b" " * 300_000 + b"}")[0] == 413
    assert post(server, {"event": "webwidget_triggered"}) == (200, {"result": "ignored: event 'webwidget_triggered'"})
    assert post(server, {"event": "message_created", "message_type": "outgoing"})[0] == 400


def test_webhook_refuses_everything_when_no_authentication_is_configured(fake, redis_client):
    options = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")
    open_settings = ChatwootSettings(url=fake.url, api_token="t", account_id="1", inbox_id="5",
                                     webhook_token=None, webhook_secret=None)
    webhook = ChatwootWebhook(open_settings, options, redis_client)
    assert webhook.check(b"{}", None, {}) == Verdict(503, "webhook authentication is not configured")
    assert ChatwootWebhook(None, options, redis_client).check(b"{}", TOKEN, {}).status == 503


def test_without_a_token_or_secret_the_channel_refuses_to_start(fake, monkeypatch, redis_client):
    """Chatwoot configured, its webhook open: the channel does not start (one line naming the
    variables) unless the development setting lets unauthenticated calls in."""
    from connectors.chatwoot import ChatwootInput
    from helpdesk.errors import ConfigError

    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    for name in ("CHATWOOT_WEBHOOK_TOKEN", "CHATWOOT_WEBHOOK_SECRET", "HELPDESK_INSECURE_WEBHOOKS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as refused:
        ChatwootInput.from_credentials(None)
    line = str(refused.value)
    assert "\n" not in line and "Chatwoot" in line and "CHATWOOT_WEBHOOK_TOKEN" in line
    assert "HELPDESK_INSECURE_WEBHOOKS=true" in line
    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    assert ChatwootInput.from_credentials(None) is not None
    options = load_chatwoot_config(PROJECT / "config" / "chatwoot.yml")
    open_settings = ChatwootSettings(url=fake.url, api_token="t", account_id="1", inbox_id="5",
                                     webhook_token=None, webhook_secret=None)
    assert ChatwootWebhook(open_settings, options, redis_client).check(b"{}", None, {}) is None


def test_a_120_mb_body_is_refused_before_it_is_buffered(fake, redis_url, redis_client):
    from urllib.parse import urlparse

    from tests.connectors.whatsapp.support import oversized_bodies_are_refused_before_buffering

    process, url = _serve(fake, redis_url, None)
    try:
        where = urlparse(url)
        measured = oversized_bodies_are_refused_before_buffering(
            where.port, process.pid, where.path,
            lambda: post(url, {"event": "webwidget_triggered"})[0], marker=b"body larger than")
        print("measured", measured)
    finally:
        stop(process)


def test_signature_algorithm():
    body = b'{"event":"message_created"}'
    now = 1_777_000_000
    import hashlib
    import hmac

    good = "sha256=" + hmac.new(b"s3cret", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature_valid("s3cret", body, good, str(now), 300, now=now + 10)
    assert not signature_valid("s3cret", body + b" ", good, str(now), 300, now=now)
    assert not signature_valid("s3cret", body, good, str(now), 300, now=now + 301)
    assert not signature_valid("s3cret", body, good, "yesterday", 300, now=now)
    assert not signature_valid("s3cret", body, None, str(now), 300, now=now)


# what is relayed -------------------------------------------------------------------------------
def test_agent_reply_is_relayed_once(server, fake, world, redis_client):
    message = fake.agent_writes(world["ids"][DIRECT], "Hola, soy Ana. Ya reviso la caja 2.")
    payload = fake.message_webhook(message["id"])

    assert post(server, payload) == (200, {"result": "relayed"})
    assert post(server, payload) == (200, {"result": "duplicate"})  # Chatwoot redelivered

    queued = relayed(redis_client, f"{DIRECT}@c.us")
    assert [(m["text"], m["conversation_id"], m["mentions"]) for m in queued] == [
        ("Hola, soy Ana. Ya reviso la caja 2.", DIRECT, [])]


def test_agent_reply_in_a_group_mentions_the_reporter(server, fake, world, redis_client):
    message = fake.agent_writes(world["ids"][GROUP], "Ya está resuelto.")

    assert post(server, fake.message_webhook(message["id"])) == (200, {"result": "relayed"})

    queued = relayed(redis_client, "120363000000000001@g.us")
    assert [(m["text"], m["mentions"]) for m in queued] == [
        ("@5491199887766 Ya está resuelto.", ["5491199887766@c.us"])]


def test_private_notes_incoming_and_our_own_messages_are_not_relayed(server, fake, world, redis_client):
    conversation = world["ids"][DIRECT]
    client, directory = world["client"], world["directory"]
    note = fake.agent_writes(conversation, "nota interna: llamar al técnico", private=True)
    incoming = client.create_message(conversation, "no funciona la caja", message_type="incoming",
                                     source_id="helpdesk:entry-1")
    # the bot's reply, mirrored with our marker
    bot = client.create_message(conversation, "¿En qué tienda ocurre?", source_id="helpdesk:entry-2")
    directory.confirm_message(DIRECT, bot, 3600)

    results = [post(server, fake.message_webhook(m["id"]))[1]["result"] for m in (note, incoming, bot)]

    assert results == ["ignored: private note", "ignored: not an outgoing message", "ignored: our own message"]
    assert relayed(redis_client, f"{DIRECT}@c.us") == []


def test_echo_from_an_older_chatwoot_is_recognised(server, fake, world, redis_client):
    """A Chatwoot that drops source_id: the id we recorded, then the token's user, tell it apart."""
    conversation = world["ids"][DIRECT]
    fake.keeps_source_id = False
    try:
        first = world["client"].create_message(conversation, "Gracias, registro el ticket.",
                                               source_id="helpdesk:entry-3")
        world["directory"].confirm_message(DIRECT, first, 3600)
        second = world["client"].create_message(conversation, "Su ticket es HD-7K3M9Q.",
                                                source_id="helpdesk:entry-4")
    finally:
        fake.keeps_source_id = True
    # the second echo arrived before we recorded its id: the sender is still our token's user
    assert post(server, fake.message_webhook(first["id"]))[1]["result"] == "ignored: our own message"
    assert post(server, fake.message_webhook(second["id"]))[1]["result"] == "ignored: written with our API token"
    assert relayed(redis_client, f"{DIRECT}@c.us") == []


def test_agent_bot_messages_and_unknown_conversations_are_not_relayed(server, fake, world, redis_client):
    message = fake.agent_writes(world["ids"][DIRECT], "Mensaje automático")
    payload = fake.message_webhook(message["id"])
    payload["sender"] = {"id": 1, "name": "Bot", "type": "agent_bot"}
    assert post(server, payload)[1]["result"] == "ignored: not written by a person"

    stray = fake.message_webhook(fake.agent_writes(world["ids"][DIRECT], "Hola")["id"])
    stray["conversation"]["id"] = 999
    assert post(server, stray)[1]["result"] == "ignored: unknown conversation"

    other_inbox = fake.message_webhook(fake.agent_writes(world["ids"][DIRECT], "Hola")["id"])
    other_inbox["inbox"]["id"] = 77
    assert post(server, other_inbox)[1]["result"] == "ignored: another inbox"
    assert relayed(redis_client, f"{DIRECT}@c.us") == []


# back to the bot -------------------------------------------------------------------------------
def resume_jobs(redis_client):
    queue = Queue("chatwoot", connection=redis_client)
    return [(job.func_name, job.args) for job in queue.get_jobs()]


def test_resolved_while_with_a_person_queues_the_hand_back(server, fake, world, redis_client):
    conversation = world["ids"][DIRECT]
    handoff.mark(redis_client, DIRECT, "asked", 3600)
    fake.agent_sets_status(conversation, "resolved")
    payload = fake.status_webhook(conversation)

    assert post(server, payload, delivery_id="d-1") == (200, {"result": "resuming"})
    assert post(server, payload, delivery_id="d-1") == (200, {"result": "duplicate"})

    assert resume_jobs(redis_client) == [("workers.chatwoot_jobs.resume_conversation", (DIRECT, "resolved"))]


def test_resolved_without_the_mark_still_queues_the_hand_back(server, fake, world, redis_client):
    """The mark expired or its handoff write was dead-lettered: the job asks Rasa whether the
    conversation is paused (tests/workers/chatwoot_jobs/test_resume.py) before resuming it."""
    conversation = world["ids"][DIRECT]
    fake.agent_sets_status(conversation, "resolved")

    assert post(server, fake.status_webhook(conversation))[1]["result"] == "resuming if paused"
    assert resume_jobs(redis_client) == [("workers.chatwoot_jobs.resume_conversation", (DIRECT, "resolved"))]


def test_status_changes_that_do_not_hand_back(server, fake, world, redis_client):
    conversation = world["ids"][DIRECT]
    handoff.mark(redis_client, DIRECT, "asked", 3600)
    fake.agent_sets_status(conversation, "open")
    assert post(server, fake.status_webhook(conversation, previous="pending"))[1]["result"] == "ignored: status 'open'"
    updated = fake.status_webhook(conversation, event="conversation_updated")
    updated["changed_attributes"] = [{"labels": {"previous_value": [], "current_value": ["vip"]}}]
    updated["status"] = "resolved"
    assert post(server, updated)[1]["result"] == "ignored: no status change"
    assert resume_jobs(redis_client) == []
