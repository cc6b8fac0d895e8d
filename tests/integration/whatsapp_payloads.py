"""WAHA and Meta webhook deliveries as the gateways send them (docs/whatsapp-wire-formats.md),
signed the way they sign them, for the integration tests and the benchmark."""
import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

import requests

BOT_NUMBER = "5491100000000"
BOT_LID = "77820596330581@lid"


def new_id() -> str:
    return uuid.uuid4().hex[:20].upper()


def waha_message(sender: str, body: str = "", *, group: Optional[str] = None,
                 message_id: Optional[str] = None, media: Optional[Dict[str, Any]] = None,
                 event: str = "message", from_me: bool = False, **extra: Any) -> Dict[str, Any]:
    """A WAHA `message` event. `sender` is a number; with `group` it is the participant."""
    chat = f"{group}@g.us" if group else f"{sender}@c.us"
    mid = message_id or f"false_{chat}_{new_id()}" + (f"_{sender}@c.us" if group else "")
    payload: Dict[str, Any] = {
        "id": mid, "timestamp": int(time.time()), "from": chat, "fromMe": from_me,
        "source": "app", "to": f"{BOT_NUMBER}@c.us", "body": body,
        "participant": f"{sender}@c.us" if group else None,
        "hasMedia": media is not None, "media": media, "ack": 1, "ackName": "SERVER",
        "location": None, "vCards": [], "replyTo": None,
        "_data": {"notifyName": "Ana Pérez"},
    }
    payload.update(extra)
    return {
        "id": f"evt_{uuid.uuid4().hex[:26]}", "timestamp": int(time.time() * 1000),
        "event": event, "session": "default",
        "me": {"id": f"{BOT_NUMBER}@c.us", "pushName": "Soporte", "lid": BOT_LID},
        "payload": payload, "engine": "NOWEB", "environment": {"tier": "CORE"},
    }


def waha_signature(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def post_waha(base_url: str, event: Any, key: Optional[str], *, signature: Optional[str] = None,
              raw: Optional[bytes] = None, session: Optional[requests.Session] = None
              ) -> requests.Response:
    body = raw if raw is not None else json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Webhook-Hmac"] = signature
    elif key:
        headers["X-Webhook-Hmac"] = waha_signature(key, body)
        headers["X-Webhook-Hmac-Algorithm"] = "sha512"
    return (session or requests).post(f"{base_url}/webhooks/waha/webhook", data=body,
                                      headers=headers, timeout=10)


def meta_text(sender: str, body: str, message_id: Optional[str] = None) -> Dict[str, Any]:
    return {"from": sender, "id": message_id or f"wamid.{new_id()}",
            "timestamp": str(int(time.time())), "type": "text", "text": {"body": body}}


def meta_delivery(messages: List[Dict[str, Any]], statuses: Optional[List[Dict[str, Any]]] = None,
                  phone_number_id: str = "106540352242922") -> Dict[str, Any]:
    value: Dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": m.get("from")}
                     for m in messages if m.get("from")],
        "messages": messages,
    }
    if statuses:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}


def meta_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_meta(base_url: str, delivery: Any, secret: Optional[str], *,
              signature: Optional[str] = None, raw: Optional[bytes] = None) -> requests.Response:
    # Meta escapes non-ASCII as \\uXXXX; the signature is over exactly these bytes
    body = raw if raw is not None else json.dumps(delivery).encode()
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret:
        headers["X-Hub-Signature-256"] = meta_signature(secret, body)
    return requests.post(f"{base_url}/webhooks/whatsapp/webhook", data=body, headers=headers,
                         timeout=10)


def texts_to(requests_seen: List[Dict[str, Any]], chat_id: str) -> List[str]:
    return [r["body"]["text"] for r in requests_seen
            if r["path"] == "/api/sendText" and not r.get("failed")
            and r["body"].get("chatId") == chat_id]
