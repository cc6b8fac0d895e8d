"""The webhook's answers (connectors/whatsapp/webhook.py), through the WAHA channel with the
test Redis behind it: a wrong or missing signature refused before anything is recorded, a
signed message recorded once in the inbound log (a repeat is a duplicate), malformed JSON,
a body that is not an object and an oversized body refused, skipped events answered 200;
the replay window on the provider's timestamp; unsigned deliveries only with the development
setting; oversized bodies refused before they are buffered, by a real server like the Rasa
server's (a subprocess, whose memory is read from /proc)."""
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Dict

from connectors.meta import MetaInput
from connectors.waha import WahaInput
from rq import Queue

from helpdesk import queues, redis_keys
from helpdesk.config import channel_config
from helpdesk.whatsapp import inbound
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    inbound_entries,
    inbound_length,
    USER,
    WAHA_HMAC_KEY,
    channel_env,
    close_channel,
    fresh,
    meta_delivery,
    meta_settings,
    meta_text,
    meta_value,
    run,
    waha_event,
    waha_payload,
    waha_settings,
    waha_signed,
    webhook_request,
)


def _receive(body: bytes, headers: Dict[str, str]):
    async def scenario():
        channel = fresh(WahaInput, waha_settings(hmac_key=WAHA_HMAC_KEY))
        try:
            answer = await channel.receive(webhook_request(headers, body))
            return answer.status, json.loads(answer.body)
        finally:
            await channel.shared.redis.close()

    return run(scenario())


META_SECRET = "meta-app-secret"


def test_webhook_records_a_signed_message_and_refuses_the_rest(channel_env, redis_client):
    event = waha_event(waha_payload(USER, "hola"))
    body = json.dumps(event).encode()
    wrong = dict(waha_signed(body), **{"X-Webhook-Hmac": "0" * 128})
    assert _receive(body, wrong)[0] == 401
    assert _receive(body, {"Content-Type": "application/json"})[0] == 401
    assert inbound_length(redis_client) == 0  # nothing was recorded
    status, answer = _receive(body, waha_signed(body))
    assert status == 200 and answer["accepted"] == 1
    status, answer = _receive(body, waha_signed(body))
    assert status == 200 and answer["duplicate"] == 1
    entries = inbound_entries(redis_client)
    assert len(entries) == 1
    recorded = inbound.InboundMessage.from_json(entries[0][1][b"m"])
    assert recorded.message_id == event["payload"]["id"] and recorded.text == "hola"
    assert recorded.correlation_id  # every accepted message carries one


def test_webhook_bad_bodies(channel_env, redis_client):
    broken = b'{"event": "message", '
    assert _receive(broken, waha_signed(broken))[0] == 400
    array = b"[1, 2]"
    assert _receive(array, waha_signed(array))[0] == 400
    big = json.dumps({"event": "message", "pad": "x" * 262144}).encode()
    assert _receive(big, waha_signed(big))[0] == 413
    status, answer = _receive(*_pair(waha_event({"status": "WORKING"}, event="session.status")))
    assert status == 200 and answer == {"status": "ok", "ignored": 1}
    assert inbound_length(redis_client) == 0


def test_waha_session_outages_are_recorded_and_told_once(channel_env, redis_client):
    """FAILED starts an outage (the support team told once), FAILED again is the same outage,
    WORKING ends it."""
    def notices():
        queue = Queue(queues.DEFAULT, connection=redis_client)
        return [job.args[0] for job in queue.get_jobs() if job.func_name == queues.NOTIFY_WHATSAPP]

    for status in ("FAILED", "FAILED", "SCAN_QR_CODE"):
        answer = _receive(*_pair(waha_event({"status": status}, event="session.status")))
        assert answer[0] == 200
    session = redis_keys.gateway_session("waha")
    assert redis_client.hget(session, "status") == b"SCAN_QR_CODE"
    assert notices() == ["session_down_waha"]
    _receive(*_pair(waha_event({"status": "WORKING"}, event="session.status")))
    assert redis_client.hget(session, "status") == b"WORKING"
    other = waha_event({"status": "FAILED"}, event="session.status")
    other["session"] = "another"  # not the bot's session: not ours to record
    _receive(*_pair(other))
    assert redis_client.hget(session, "status") == b"WORKING" and notices() == [
        "session_down_waha"]


def _pair(event: Dict[str, Any]):
    body = json.dumps(event).encode()
    return body, waha_signed(body)


# --- the replay window --------------------------------------------------------------------

def _receive_meta(delivery: Dict[str, Any]):
    async def scenario():
        channel = fresh(MetaInput, meta_settings(app_secret=META_SECRET))
        try:
            body = json.dumps(delivery).encode()
            signature = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
            answer = await channel.receive(webhook_request({"X-Hub-Signature-256": signature}, body))
            return answer.status, json.loads(answer.body)
        finally:
            await close_channel(channel)

    return run(scenario())


def test_a_replayed_old_body_is_answered_logged_and_never_recorded(channel_env, redis_client,
                                                                 caplog):
    """A signed body captured long ago and posted again once its dedupe key has expired:
    older than the dedupe window minus the margin, so not recorded (200: the gateway must not
    redeliver it), logged with the message id and its age."""
    config = channel_config()
    window = config.dedupe_ttl_seconds - config.replay_margin_seconds
    old = waha_payload(USER, "hola", timestamp=int(time.time()) - window - 60)
    with caplog.at_level(logging.WARNING):
        status, answer = _receive(*_pair(waha_event(old)))
    assert (status, answer) == (200, {"status": "ok", "ignored": 1})
    assert inbound_length(redis_client) == 0
    assert not redis_client.exists(redis_keys.inbound_seen("waha", old["id"]))
    logged = [r for r in caplog.records if "replay window" in r.getMessage()]
    assert len(logged) == 1 and logged[0].message_id == old["id"]
    assert logged[0].age_seconds >= window + 60
    # just inside the window it is a message like any other
    recent = waha_payload(USER, "hola", timestamp=int(time.time()) - window + 120)
    assert _receive(*_pair(waha_event(recent)))[1]["accepted"] == 1


def test_a_timestamp_far_in_the_future_is_refused_and_a_small_skew_is_not(channel_env,
                                                                        redis_client):
    skew = channel_config().max_clock_skew_seconds
    ahead = waha_payload(USER, "hola", timestamp=int(time.time()) + skew + 600)
    assert _receive(*_pair(waha_event(ahead)))[1] == {"status": "ok", "ignored": 1}
    slightly = waha_payload(USER, "hola", timestamp=int(time.time()) + 30)
    assert _receive(*_pair(waha_event(slightly)))[1]["accepted"] == 1
    assert inbound_length(redis_client) == 1


def test_a_stale_meta_message_does_not_lose_the_fresh_ones_of_its_batch(channel_env,
                                                                      redis_client):
    stale = meta_text("viejo", message_id="wamid.old")
    stale["timestamp"] = str(int(time.time()) - 30 * 24 * 3600)
    fresh_one = meta_text("nuevo", message_id="wamid.new")
    status, answer = _receive_meta(meta_delivery(meta_value([stale, fresh_one])))
    assert status == 200 and answer == {"status": "ok", "accepted": 1, "ignored": 1}
    recorded = [inbound.InboundMessage.from_json(e[1][b"m"]).message_id
                for e in inbound_entries(redis_client)]
    assert recorded == ["wamid.new"]


# --- secrets ------------------------------------------------------------------------------

def test_unsigned_webhooks_only_with_the_development_setting(channel_env, redis_client,
                                                             monkeypatch):
    async def scenario():
        channel = fresh(WahaInput, waha_settings(hmac_key=None))
        try:
            body = json.dumps(waha_event(waha_payload(USER, "hola"))).encode()
            answer = await channel.receive(webhook_request({}, body))
            return answer.status
        finally:
            await close_channel(channel)

    assert run(scenario()) == 401
    assert inbound_length(redis_client) == 0
    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    assert run(scenario()) == 200
    assert inbound_length(redis_client) == 1


# --- oversized bodies, against a server built as the Rasa server builds its app -----------

# the Rasa server's own app (rasa.core.run.configure_app, with the HTTP API as `make run`
# serves it), with the WAHA channel registered by Rasa; REQUEST_MAX_SIZE is Sanic's 100 MB
RASA_APP = """
import os
from rasa.core.run import configure_app
from connectors.waha import WahaInput
port = int(os.environ["TEST_PORT"])
app = configure_app([WahaInput.from_credentials(None)], enable_api=True,
                    auth_token=os.environ["TEST_API_TOKEN"], port=port)
app.run(host="127.0.0.1", port=port, workers=1, access_log=False, motd=False)
"""


def test_a_120_mb_body_is_refused_before_it_is_buffered(channel_env, redis_client, tmp_path):
    import os
    import subprocess
    import sys

    import requests

    from tests.conftest import PROJECT, free_port, wait_for_port
    from tests.connectors.whatsapp.support import oversized_bodies_are_refused_before_buffering

    port = free_port()
    env = {**os.environ, "TEST_PORT": str(port), "TEST_API_TOKEN": "api-token",
           "WAHA_BASE_URL": "http://127.0.0.1:9", "WAHA_API_KEY": "k",
           "WAHA_WEBHOOK_HMAC_KEY": WAHA_HMAC_KEY, "PYTHONPATH": str(PROJECT),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-c", RASA_APP], cwd=PROJECT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port(port, 120), (tmp_path / "server.log").read_text()[-3000:]
        url = f"http://127.0.0.1:{port}/webhooks/waha/webhook"

        def valid() -> int:
            body = json.dumps(waha_event(waha_payload(USER, "hola"))).encode()
            return requests.post(url, data=body, headers=waha_signed(body), timeout=30).status_code

        measured = oversized_bodies_are_refused_before_buffering(
            port, server.pid, "/webhooks/waha/webhook", valid)
        print("measured", measured)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


# --- identifiers --------------------------------------------------------------------------

def test_a_number_in_other_digits_is_the_same_user_for_opt_out_and_rate_limit(channel_env,
                                                                             redis_client):
    """'５４９…' (full-width) and '٥٤٩…' (Arabic-Indic) are '549…': the same conversation in the
    inbound log, the same rate-limit counter, and an opt-out by one is an opt-out of all."""
    full_width = USER.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    arabic = USER.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for sender in (USER, full_width, arabic):
        assert _receive(*_pair(waha_event(waha_payload(f"{sender}@c.us", "hola"))))[1][
            "accepted"] == 1
    recorded = [inbound.InboundMessage.from_json(e[1][b"m"])
                for e in inbound_entries(redis_client)]
    assert {(m.conversation_id, m.chat_id) for m in recorded} == {(USER, f"{USER}@c.us")}
    assert int(redis_client.get(redis_keys.rate_counter(USER))) == 3
    assert _receive(*_pair(waha_event(waha_payload(f"{arabic}@c.us", "BAJA"))))[1][
        "accepted"] == 1
    redis_client.sadd(redis_keys.opted_out_set(), USER)  # what the opt-out turn records
    assert _receive(*_pair(waha_event(waha_payload(f"{full_width}@c.us", "hola"))))[1] == {
        "status": "ok", "opted_out": 1, "ignored": 0}
