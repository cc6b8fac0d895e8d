"""The webhook's answers (connectors/whatsapp/webhook.py), through the WAHA channel with the
test Redis behind it: a wrong or missing signature refused before anything is recorded, a
signed message recorded once in the inbound log (a repeat is a duplicate), malformed JSON,
a body that is not an object and an oversized body refused, skipped events answered 200."""
import json
from typing import Any, Dict

from connectors.waha import WahaInput
from helpdesk.whatsapp import inbound
from tests.connectors.whatsapp.support import (  # noqa: F401 - fixtures
    USER,
    WAHA_HMAC_KEY,
    channel_env,
    fresh,
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


def test_webhook_records_a_signed_message_and_refuses_the_rest(channel_env, redis_client):
    event = waha_event(waha_payload(USER, "hola"))
    body = json.dumps(event).encode()
    wrong = dict(waha_signed(body), **{"X-Webhook-Hmac": "0" * 128})
    assert _receive(body, wrong)[0] == 401
    assert _receive(body, {"Content-Type": "application/json"})[0] == 401
    assert redis_client.xlen(inbound.STREAM) == 0  # nothing was recorded
    status, answer = _receive(body, waha_signed(body))
    assert status == 200 and answer["accepted"] == 1
    status, answer = _receive(body, waha_signed(body))
    assert status == 200 and answer["duplicate"] == 1
    entries = redis_client.xrange(inbound.STREAM)
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
    assert redis_client.xlen(inbound.STREAM) == 0


def _pair(event: Dict[str, Any]):
    body = json.dumps(event).encode()
    return body, waha_signed(body)
