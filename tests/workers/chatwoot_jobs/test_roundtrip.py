"""The handoff round trip with every real part this half owns: the handoff action, a real RQ
worker, the agent webhook served the way Rasa serves channels, the fake Chatwoot (state and
webhooks), the fake Rasa HTTP API (pause/resume semantics), the real Redis and the real queue
of helpdesk.whatsapp.send (what reaches the user's WhatsApp chat)."""
import json

import pytest

import actions.common
from actions.handoff import ActionRequestHuman
from helpdesk import handoff, redis_keys
from helpdesk.chatwoot import mirror as chatwoot_mirror
from helpdesk.whatsapp import Route
from tests.actions.helpers import Conversation, run
from tests.conftest import PROJECT
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.rasa_http import FakeRasa
from tests.workers.chatwoot_support import config_dir, run_worker, save_route, serve_webhook, stop, use_env

USER = "5491122334455"
PHONE = "+5491122334455"
CHAT = f"{USER}@c.us"
WEBHOOK_TOKEN = "webhook-token-rt"
RASA_TOKEN = "rasa-token-rt"
BACK = "El asistente vuelve a atenderle. ¿En qué más puedo ayudarle?"


@pytest.fixture
def stack(redis_url, redis_client, tmp_path, monkeypatch, database_url):
    with FakeChatwoot() as chatwoot, FakeRasa(token=RASA_TOKEN,
                                               responses={"EXTERNAL_handoff_resumed": BACK}) as rasa:
        env = use_env(monkeypatch, {
            **chatwoot.env(), "REDIS_URL": redis_url, "DATABASE_URL": database_url,
            "HELPDESK_CONFIG_DIR": str(config_dir(tmp_path)), "CHATWOOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "RASA_PORT": str(rasa.port), "RASA_AUTH_TOKEN": RASA_TOKEN,
        })
        monkeypatch.delenv("SUPPORT_ESCALATION_CHAT", raising=False)
        save_route(redis_client, USER, Route(channel="waha", chat_id=CHAT, name="Ana Pérez", phone=USER))
        actions.common.get_ledger.cache_clear()
        process, url = serve_webhook({**env, "PYTHONPATH": str(PROJECT)})
        try:
            yield chatwoot, rasa, env, url
        finally:
            stop(process)
            if actions.common.get_ledger.cache_info().currsize:
                actions.common.get_ledger().engine.dispose()
            actions.common.get_ledger.cache_clear()


def whatsapp_queue(redis_client):
    return [json.loads(raw)["text"] for raw in redis_client.lrange(redis_keys.outbox("waha", CHAT), 0, -1)]


def test_pause_agent_reply_private_note_resolve_resume(stack, redis_client):
    chatwoot, rasa, env, webhook = stack
    # the conversation so far, mirrored by the WhatsApp channel as it happened
    conversation = Conversation(metadata={"sender_name": "Ana Pérez", "sender_phone": USER})
    conversation.user("la caja 2 no enciende", "report_incident").bot("¿En qué tienda ocurre?")
    conversation.user("quiero hablar con una persona", "request_human")
    for direction, text in (("incoming", "la caja 2 no enciende"), ("outgoing", "¿En qué tienda ocurre?"),
                            ("incoming", "quiero hablar con una persona")):
        chatwoot_mirror.mirror_message(USER, direction, text)

    # the action server runs the handoff; Rasa applies its events (the pause)
    events, dispatcher = run(ActionRequestHuman(), conversation.tracker())
    assert [m["response"] for m in dispatcher.messages] == ["utter_handoff_started"]
    rasa.events[USER] = [e for e in events if e["event"] == "pause"]
    assert rasa.paused(USER)
    chatwoot_mirror.mirror_message(USER, "outgoing", "Le paso con una persona del equipo de soporte.")
    chatwoot.fail(502, times=2, method="POST", path=r"/messages$")  # Chatwoot hiccups meanwhile
    run_worker(env)

    cw = chatwoot.conversation_of(PHONE)
    assert cw["status"] == "open" and cw["labels"] == ["escalated"]
    assert chatwoot.contents(cw["id"], private=False) == [
        ("incoming", "la caja 2 no enciende"), ("outgoing", "¿En qué tienda ocurre?"),
        ("incoming", "quiero hablar con una persona"),
        ("outgoing", "Le paso con una persona del equipo de soporte.")]
    [(_, note)] = chatwoot.contents(cw["id"], private=True)
    assert "Usuario: Ana Pérez (5491122334455)" in note and "- la caja 2 no enciende" in note

    # the agent writes a private note and a reply; Chatwoot posts both, and the echoes of ours
    private = chatwoot.agent_writes(cw["id"], "interno: revisar fuente de la caja", private=True)
    reply = chatwoot.agent_writes(cw["id"], "Hola Ana, soy Ana de soporte. ¿Ya probó otro enchufe?")
    url = f"{webhook}?token={WEBHOOK_TOKEN}"
    results = {m["content"]: FakeChatwoot.deliver(chatwoot.message_webhook(m["id"]), url)[1]["result"]
               for m in chatwoot.messages[cw["id"]]}
    assert results == {
        "la caja 2 no enciende": "ignored: not an outgoing message",
        "¿En qué tienda ocurre?": "ignored: our own message",
        "quiero hablar con una persona": "ignored: not an outgoing message",
        "Le paso con una persona del equipo de soporte.": "ignored: our own message",
        note: "ignored: private note",
        private["content"]: "ignored: private note",
        reply["content"]: "relayed",
    }
    assert whatsapp_queue(redis_client) == ["Hola Ana, soy Ana de soporte. ¿Ya probó otro enchufe?"]

    # while paused, the user's answer still reaches Chatwoot (the channel mirrors it)
    chatwoot_mirror.mirror_message(USER, "incoming", "sí, ya probé y nada")
    run_worker(env)
    assert chatwoot.contents(cw["id"])[-1] == ("incoming", "sí, ya probé y nada")

    # the agent resolves: the bot resumes and says so on the user's channel
    chatwoot.agent_sets_status(cw["id"], "resolved")
    status, body = FakeChatwoot.deliver(chatwoot.status_webhook(cw["id"]), url)
    assert (status, body) == (200, {"result": "resuming"})
    run_worker(env)

    assert not rasa.paused(USER)
    assert rasa.sent == [(USER, "waha", BACK)]
    assert not handoff.is_marked(redis_client, USER)
    assert cw["status"] == "pending"
