"""A fake Chatwoot on loopback that speaks the Application API and the webhooks as
/work/shared/docs/zoho-chatwoot-apis.md (part B) documents them.

State: one account, one API-channel inbox, contacts (with contact inboxes), conversations
(per-account display ids), messages, labels, custom attributes. Every request is recorded.
Behaviour that matters to clients is reproduced: `api_access_token` auth (401 bodies as
Chatwoot's), contact search as a substring match over name, email, phone and identifier (15 a
page), E.164 validation and uniqueness of phone/identifier (422), labels and custom
attributes replaced by each POST, integer `message_type` in REST answers and strings in
webhooks, `source_id` kept on messages (as newer Chatwoot does; `keeps_source_id=False` is an
older one), an incoming message reopening a resolved conversation.

Failure injection: `fail(...)` answers a status (5xx, 429, ...) to matching calls, a number of
times or every n-th call, optionally after letting some through; `hang(...)` holds the answer longer than the client waits, after or
before carrying the request out; `latency` delays every answer.

Webhooks: `message_webhook(id)` / `status_webhook(id)` build the payloads Chatwoot posts to
an API inbox's callback URL; `deliver(payload, url)` posts one (signed like Chatwoot 4.13+
when a secret is given) and returns the status and body.
"""
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

import requests

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
TYPE_NUMBERS = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}


@dataclass
class Call:
    method: str
    path: str  # below /api/v1/accounts/{id}
    query: Dict[str, str]
    headers: Dict[str, str]
    json: Any
    form: Dict[str, str] = field(default_factory=dict)
    files: List[Tuple[str, bytes, str]] = field(default_factory=list)  # (filename, data, type)
    status: Optional[int] = None  # what the fake answered (None: held past the client)


@dataclass
class Rule:
    status: int = 500
    times: Optional[int] = 1  # None: forever
    every: int = 1  # fail the 1st, (1+every)th, ... matching call
    after: int = 0  # let this many matching calls through first
    method: Optional[str] = None
    path: Optional[str] = None  # regex searched in the path
    hold_seconds: float = 0.0  # > 0: answer this late (a client timeout)
    after_processing: bool = False  # with hold: the request is carried out first
    body: Any = None
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or re.search(self.path, path) is not None
        )


class FakeChatwoot:
    def __init__(self, *, token: str = "cw-api-token", account_id: int = 1, inbox_id: int = 5,
                 keeps_source_id: bool = True) -> None:
        self.token = token
        self.account_id = account_id
        self.inbox_id = inbox_id
        self.keeps_source_id = keeps_source_id
        self.bot_user = {"id": 3, "name": "Helpdesk Bot", "email": "bot@acme.test", "type": "user"}
        self.agent = {"id": 7, "name": "Ana", "email": "ana@acme.test", "type": "user"}
        self.teams = {2: {"id": 2, "name": "soporte tiendas", "description": "", "allow_auto_assign": True,
                          "account_id": account_id, "is_member": False}}
        self.calls: List[Call] = []
        self.rules: List[Rule] = []
        self.hooks: List[Tuple[str, str, Any]] = []  # (method, path regex, callback) run once
        self.latency = 0.0
        self.lock = threading.RLock()
        self.contacts: Dict[int, Dict[str, Any]] = {}
        self.conversations: Dict[int, Dict[str, Any]] = {}
        self.messages: Dict[int, List[Dict[str, Any]]] = {}
        self._ids = {"contact": 100, "conversation": 0, "message": 4000, "contact_inbox": 70}
        self._server: Optional[ThreadingHTTPServer] = None

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeChatwoot":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms ACK wait

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = fake._dispatch(method, self.path, dict(self.headers.items()), raw)
                if status is None:
                    return  # held past the client's timeout: nobody is listening
                data = json.dumps(body).encode() if body is not None else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-chatwoot", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeChatwoot":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> Dict[str, str]:
        """The environment that points the project at this fake."""
        return {"CHATWOOT_URL": self.url, "CHATWOOT_API_TOKEN": self.token,
                "CHATWOOT_ACCOUNT_ID": str(self.account_id), "CHATWOOT_INBOX_ID": str(self.inbox_id)}

    # failure injection ------------------------------------------------------------------------
    def fail(self, status: int = 500, *, times: Optional[int] = 1, every: int = 1, after: int = 0,
             method: Optional[str] = None, path: Optional[str] = None, body: Any = None) -> Rule:
        rule = Rule(status=status, times=times, every=every, after=after, method=method, path=path,
                    body=body if body is not None else {"error": "Internal server error"})
        with self.lock:
            self.rules.append(rule)
        return rule

    def hang(self, seconds: float, *, times: Optional[int] = 1, every: int = 1,
             after_processing: bool = True, method: Optional[str] = None,
             path: Optional[str] = None) -> Rule:
        rule = Rule(status=200, times=times, every=every, method=method, path=path,
                    hold_seconds=seconds, after_processing=after_processing)
        with self.lock:
            self.rules.append(rule)
        return rule

    def before(self, method: str, path: str, callback: Any) -> None:
        """Run `callback()` once, just before the next matching request is carried out (what
        another actor did meanwhile: an agent, another worker)."""
        with self.lock:
            self.hooks.append((method, path, callback))

    def _run_hooks(self, method: str, path: str) -> None:
        with self.lock:
            due = [h for h in self.hooks if h[0] == method and re.search(h[1], path)]
            self.hooks = [h for h in self.hooks if h not in due]
        for _, _, callback in due:
            callback()

    def _rule_for(self, method: str, path: str) -> Optional[Rule]:
        with self.lock:
            for rule in self.rules:
                if not rule.matches(method, path) or (rule.times is not None and rule.fired >= rule.times):
                    continue
                rule.seen += 1
                if rule.seen > rule.after and (rule.seen - rule.after - 1) % rule.every == 0:
                    rule.fired += 1
                    return rule
        return None

    # HTTP -----------------------------------------------------------------------------------
    def _dispatch(self, method: str, raw_path: str, headers: Dict[str, str], raw: bytes
                  ) -> Tuple[Optional[int], Any]:
        if self.latency:
            time.sleep(self.latency)
        parsed = urlparse(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        lowered = {k.lower(): v for k, v in headers.items()}
        payload, form, files = _parse_body(lowered.get("content-type", ""), raw)
        prefix = f"/api/v1/accounts/{self.account_id}"
        match = re.match(r"^/api/v1/accounts/(\d+)(/.*)$", parsed.path)
        path = match.group(2) if match else parsed.path
        call = Call(method, path, query, lowered, payload, form, files)
        with self.lock:
            self.calls.append(call)
        if lowered.get("api_access_token") != self.token:
            call.status = 401
            return 401, {"error": "Invalid Access Token"}
        if not parsed.path.startswith(prefix + "/"):
            call.status = 401
            return 401, {"error": "You are not authorized to access this account"}
        rule = self._rule_for(method, path)
        if rule and rule.hold_seconds:
            if rule.after_processing:
                self._route(method, path, query, payload, form, files)
            time.sleep(rule.hold_seconds)
            return None, None
        if rule:
            call.status = rule.status
            return rule.status, rule.body
        self._run_hooks(method, path)
        status, body = self._route(method, path, query, payload, form, files)
        call.status = status
        return status, body

    def _route(self, method: str, path: str, query: Dict[str, str], payload: Any,
               form: Dict[str, str], files: List[Tuple[str, bytes, str]]) -> Tuple[int, Any]:
        with self.lock:
            if method == "GET" and path == "/contacts/search":
                return self._search(query)
            if method == "POST" and path == "/contacts":
                return self._create_contact(payload or {})
            if method == "POST" and path == "/conversations":
                return self._create_conversation(payload or {})
            found = re.match(r"^/conversations/(\d+)(?:/(\w+))?$", path)
            if not found:
                return 404, {"error": "Resource could not be found"}
            conversation = self.conversations.get(int(found.group(1)))
            if conversation is None:
                return 404, {"error": "Resource could not be found"}
            action = found.group(2)
            if method == "GET" and action is None:
                return 200, self._conversation_json(conversation)
            if method == "POST" and action == "toggle_status":
                return self._toggle(conversation, payload or {})
            if action == "labels":
                if method == "POST":
                    labels = (payload or {}).get("labels")
                    if not isinstance(labels, list):
                        return 422, {"error": "labels must be a list"}
                    conversation["labels"] = [str(label) for label in labels]
                return 200, {"payload": list(conversation["labels"])}
            if method == "POST" and action == "assignments":
                team = self.teams.get(int((payload or {}).get("team_id") or 0))
                if (payload or {}).get("assignee_id") is not None:
                    conversation["assignee_id"] = int(payload["assignee_id"])
                    return 200, dict(self.agent)
                if team is None:
                    return 200, None  # Chatwoot renders null for an id it does not find
                conversation["team_id"] = team["id"]
                return 200, dict(team)
            if method == "POST" and action == "custom_attributes":
                attributes = (payload or {}).get("custom_attributes")
                if not isinstance(attributes, dict):
                    return 422, {"error": "custom_attributes must be an object"}
                conversation["custom_attributes"] = dict(attributes)
                return 200, {"custom_attributes": dict(attributes)}
            if action == "messages":
                if method == "GET":
                    return 200, {"meta": {"labels": list(conversation["labels"]), "additional_attributes": {},
                                          "contact_id": conversation["contact_id"]},
                                 "payload": [self._message_rest(m) for m in self.messages[conversation["id"]][-20:]]}
                return self._create_message(conversation, payload if payload is not None else form, files)
            return 404, {"error": "Resource could not be found"}

    # contacts ---------------------------------------------------------------------------------
    def add_contact(self, *, name: str, phone: Optional[str] = None, identifier: Optional[str] = None,
                    email: Optional[str] = None, inbox: bool = False) -> Dict[str, Any]:
        """A contact that already exists in Chatwoot (made by an agent, another inbox)."""
        with self.lock:
            self._ids["contact"] += 1
            contact = {"id": self._ids["contact"], "name": name, "email": email, "phone_number": phone,
                       "identifier": identifier, "thumbnail": "", "availability_status": "offline",
                       "additional_attributes": {}, "custom_attributes": {}, "contact_inboxes": []}
            self.contacts[contact["id"]] = contact
            if inbox:
                self._contact_inbox(contact)
            return contact

    def _contact_inbox(self, contact: Dict[str, Any], source_id: Optional[str] = None) -> Dict[str, Any]:
        for existing in contact["contact_inboxes"]:
            if existing["inbox"]["id"] == self.inbox_id:
                return existing
        self._ids["contact_inbox"] += 1
        entry = {"id": self._ids["contact_inbox"], "source_id": source_id or str(uuid.uuid4()),
                 "inbox": {"id": self.inbox_id, "name": "WhatsApp Bot", "channel_type": "Channel::Api"}}
        contact["contact_inboxes"].append(entry)
        return entry

    def _search(self, query: Dict[str, str]) -> Tuple[int, Any]:
        q = (query.get("q") or "").strip().lower()
        if not q:
            return 422, {"error": "Specify search string with parameter q"}
        page = int(query.get("page") or 1)
        found = [
            c for c in self.contacts.values()
            if (c.get("email") or c.get("phone_number") or c.get("identifier"))
            and any(q in str(c.get(k) or "").lower() for k in ("name", "email", "phone_number", "identifier"))
        ]
        chunk = found[(page - 1) * 15: page * 15]
        return 200, {"meta": {"count": len(found), "current_page": page},
                     "payload": [self._contact_json(c) for c in chunk]}

    def _create_contact(self, payload: Dict[str, Any]) -> Tuple[int, Any]:
        phone, identifier = payload.get("phone_number"), payload.get("identifier")
        if phone and not _E164.match(phone):
            return 422, {"message": "Phone number should be in e164 format", "attributes": ["phone_number"]}
        for contact in self.contacts.values():
            if phone and contact.get("phone_number") == phone:
                return 422, {"message": "Phone number has already been taken", "attributes": ["phone_number"]}
            if identifier and contact.get("identifier") == identifier:
                return 422, {"message": "Identifier has already been taken", "attributes": ["identifier"]}
        contact = self.add_contact(name=payload.get("name") or "", phone=phone, identifier=identifier,
                                   email=payload.get("email"))
        contact["custom_attributes"] = payload.get("custom_attributes") or {}
        contact_inbox = None
        if payload.get("inbox_id") is not None:
            if int(payload["inbox_id"]) != self.inbox_id:
                return 422, {"error": "Inbox not found"}
            contact_inbox = self._contact_inbox(contact, payload.get("source_id"))
        return 200, {"payload": {"contact": self._contact_json(contact),
                                 "contact_inbox": {"inbox": contact_inbox["inbox"],
                                                   "source_id": contact_inbox["source_id"]} if contact_inbox else None}}

    @staticmethod
    def _contact_json(contact: Dict[str, Any]) -> Dict[str, Any]:
        return json.loads(json.dumps(contact))

    # conversations ----------------------------------------------------------------------------
    def _create_conversation(self, payload: Dict[str, Any]) -> Tuple[int, Any]:
        contact = None
        if payload.get("source_id"):
            for candidate in self.contacts.values():
                if any(ci["source_id"] == payload["source_id"] for ci in candidate["contact_inboxes"]):
                    contact = candidate
        if contact is None and payload.get("contact_id") is not None:
            contact = self.contacts.get(int(payload["contact_id"]))
        if contact is None:
            return 422, {"error": "Contact or source_id not found"}
        if payload.get("inbox_id") is not None and int(payload["inbox_id"]) != self.inbox_id:
            return 422, {"error": "Inbox not found"}
        self._contact_inbox(contact)
        status = payload.get("status") or "open"
        if status not in ("open", "resolved", "pending", "snoozed"):
            return 422, {"error": f"'{status}' is not a valid status"}
        self._ids["conversation"] += 1
        conversation = {"id": self._ids["conversation"], "contact_id": contact["id"], "status": status,
                        "labels": [], "custom_attributes": dict(payload.get("custom_attributes") or {}),
                        "additional_attributes": dict(payload.get("additional_attributes") or {}),
                        "team_id": None, "assignee_id": None, "created_at": int(time.time())}
        self.conversations[conversation["id"]] = conversation
        self.messages[conversation["id"]] = []
        return 200, self._conversation_json(conversation)

    def _conversation_json(self, conversation: Dict[str, Any]) -> Dict[str, Any]:
        contact = self.contacts[conversation["contact_id"]]
        return {"id": conversation["id"], "account_id": self.account_id, "inbox_id": self.inbox_id,
                "status": conversation["status"], "muted": False, "can_reply": True, "messages": [],
                "labels": list(conversation["labels"]),
                "custom_attributes": dict(conversation["custom_attributes"]),
                "additional_attributes": dict(conversation["additional_attributes"]),
                "unread_count": 0, "timestamp": int(time.time()), "contact_last_seen_at": 0,
                "agent_last_seen_at": 0,
                "meta": {"sender": {"id": contact["id"], "name": contact["name"],
                                    "phone_number": contact.get("phone_number")},
                         "channel": "Channel::Api"}}

    def _toggle(self, conversation: Dict[str, Any], payload: Dict[str, Any]) -> Tuple[int, Any]:
        status = payload.get("status")
        if status is None:
            status = "resolved" if conversation["status"] == "open" else "open"
        if status not in ("open", "resolved", "pending", "snoozed"):
            return 422, {"error": f"'{status}' is not a valid status"}
        conversation["status"] = status
        return 200, {"meta": {}, "payload": {"success": True, "conversation_id": conversation["id"],
                                             "current_status": status, "snoozed_until": None}}

    # messages ---------------------------------------------------------------------------------
    def _create_message(self, conversation: Dict[str, Any], payload: Dict[str, Any],
                        files: List[Tuple[str, bytes, str]]) -> Tuple[int, Any]:
        message_type = payload.get("message_type") or "outgoing"
        if message_type not in ("incoming", "outgoing"):
            return 422, {"error": f"'{message_type}' is not a valid message_type"}
        private = payload.get("private") in (True, "true", "1", 1)
        return 200, self._message_rest(self._add_message(
            conversation, payload.get("content") or "", message_type, private,
            sender=None if message_type == "incoming" else self.bot_user,
            source_id=payload.get("source_id") if self.keeps_source_id else None,
            attachments=[{"file_type": "image" if t.startswith("image/") else "file",
                          "data_url": f"{self.url}/rails/active_storage/{name}", "name": name,
                          "size": len(data), "content_type": t} for name, data, t in files]))

    def _add_message(self, conversation: Dict[str, Any], content: str, message_type: str, private: bool,
                     sender: Optional[Dict[str, Any]], source_id: Optional[str] = None,
                     attachments: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        self._ids["message"] += 1
        message = {"id": self._ids["message"], "content": content, "message_type": message_type,
                   "private": private, "source_id": source_id, "created_at": time.time(),
                   "conversation_id": conversation["id"], "sender": sender,
                   "attachments": attachments or []}
        self.messages[conversation["id"]].append(message)
        if message_type == "incoming" and conversation["status"] == "resolved":
            conversation["status"] = "open"
        return message

    def _message_rest(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """A message as the REST API answers it: integer type, unix seconds."""
        conversation = self.conversations[message["conversation_id"]]
        if message["message_type"] == "incoming":
            contact = self.contacts[conversation["contact_id"]]
            sender = {"id": contact["id"], "name": contact["name"], "type": "contact"}
        else:
            sender = {**message["sender"], "avatar_url": ""} if message["sender"] else None
        body = {"id": message["id"], "content": message["content"], "inbox_id": self.inbox_id,
                "conversation_id": message["conversation_id"],
                "message_type": TYPE_NUMBERS[message["message_type"]], "content_type": "text",
                "content_attributes": {}, "created_at": int(message["created_at"]),
                "private": message["private"], "source_id": message["source_id"], "sender": sender}
        if message["attachments"]:
            body["attachments"] = message["attachments"]
        return body

    # what agents do in the Chatwoot UI ----------------------------------------------------------
    def agent_writes(self, conversation_id: int, content: str, *, private: bool = False) -> Dict[str, Any]:
        with self.lock:
            return self._add_message(self.conversations[conversation_id], content, "outgoing", private,
                                     sender=self.agent)

    def agent_sets_status(self, conversation_id: int, status: str) -> None:
        with self.lock:
            self.conversations[conversation_id]["status"] = status

    # webhooks ---------------------------------------------------------------------------------
    def message_webhook(self, message_id: int, event: str = "message_created") -> Dict[str, Any]:
        """The body Chatwoot posts to the API inbox's callback URL for one message."""
        with self.lock:
            message = next(m for ms in self.messages.values() for m in ms if m["id"] == message_id)
            conversation = self.conversations[message["conversation_id"]]
            if message["message_type"] == "incoming":
                contact = self.contacts[conversation["contact_id"]]
                sender = {"id": contact["id"], "name": contact["name"], "avatar": "", "type": "contact"}
            else:
                sender = message["sender"]
            body = {"event": event, "id": message["id"], "content": message["content"],
                    "created_at": _iso(message["created_at"]), "message_type": message["message_type"],
                    "content_type": "text", "content_attributes": {}, "source_id": message["source_id"],
                    "private": message["private"], "sender": sender,
                    "inbox": {"id": self.inbox_id, "name": "WhatsApp Bot"},
                    "account": {"id": self.account_id, "name": "Acme"},
                    "conversation": self._webhook_conversation(conversation)}
            if message["attachments"]:
                body["attachments"] = [{"id": i + 1, "file_type": a["file_type"], "data_url": a["data_url"],
                                        "thumb_url": ""} for i, a in enumerate(message["attachments"])]
            return body

    def status_webhook(self, conversation_id: int, previous: str = "open",
                       event: str = "conversation_status_changed") -> Dict[str, Any]:
        with self.lock:
            conversation = self.conversations[conversation_id]
            body = {"event": event, **self._webhook_conversation(conversation)}
            body["changed_attributes"] = [{"status": {"previous_value": previous,
                                                      "current_value": conversation["status"]}}]
            return body

    def _webhook_conversation(self, conversation: Dict[str, Any]) -> Dict[str, Any]:
        contact = self.contacts[conversation["contact_id"]]
        contact_inbox = self._contact_inbox(contact)
        return {"id": conversation["id"], "inbox_id": self.inbox_id, "channel": "Channel::Api",
                "status": conversation["status"], "can_reply": True, "additional_attributes": {},
                "custom_attributes": dict(conversation["custom_attributes"]),
                "labels": list(conversation["labels"]),
                "contact_inbox": {"id": contact_inbox["id"], "contact_id": contact["id"],
                                  "inbox_id": self.inbox_id, "source_id": contact_inbox["source_id"],
                                  "hmac_verified": False},
                "meta": {"sender": {"id": contact["id"], "name": contact["name"],
                                    "phone_number": contact.get("phone_number"),
                                    "identifier": contact.get("identifier"), "type": "contact"},
                         "assignee": {"id": self.agent["id"], "name": self.agent["name"],
                                      "available_name": self.agent["name"], "type": "user"},
                         "team": None, "hmac_verified": False},
                "messages": [], "unread_count": 0, "priority": None, "snoozed_until": None,
                "timestamp": int(time.time()), "created_at": conversation["created_at"]}

    @staticmethod
    def deliver(payload: Any, url: str, *, secret: Optional[str] = None, delivery_id: Optional[str] = None,
                timestamp: Optional[int] = None, raw: Optional[bytes] = None) -> Tuple[int, Any]:
        """POST a webhook as Chatwoot does (JSON, 5 s timeout; signed when given a secret)."""
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "X-Chatwoot-Delivery": delivery_id or str(uuid.uuid4())}
        if secret is not None:
            sent_at = timestamp if timestamp is not None else int(time.time())
            digest = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest()
            headers["X-Chatwoot-Signature"] = f"sha256={digest}"
            headers["X-Chatwoot-Timestamp"] = str(sent_at)
        answer = requests.post(url, data=body, headers=headers, timeout=5)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text

    # reading the state ------------------------------------------------------------------------
    def conversation_of(self, phone: str) -> Dict[str, Any]:
        with self.lock:
            matches = [c for c in self.conversations.values()
                       if self.contacts[c["contact_id"]].get("phone_number") == phone]
            assert len(matches) == 1, f"{len(matches)} conversations for {phone}"
            return matches[0]

    def contents(self, conversation_id: int, *, private: Optional[bool] = None) -> List[Tuple[str, str]]:
        """(message_type, content) in Chatwoot's order."""
        with self.lock:
            return [(m["message_type"], m["content"]) for m in self.messages[conversation_id]
                    if private is None or m["private"] == private]

    def calls_to(self, method: str, pattern: str) -> List[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and re.search(pattern, c.path)]


def _parse_body(content_type: str, raw: bytes) -> Tuple[Any, Dict[str, str], List[Tuple[str, bytes, str]]]:
    if not raw:
        return None, {}, []
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        form, files = {}, []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if part.get_filename():
                files.append((part.get_filename(), data, part.get_content_type()))
            elif name:
                form[name] = data.decode("utf-8")
        return None, form, files
    try:
        return json.loads(raw), {}, []
    except ValueError:
        return raw.decode("utf-8", "replace"), {}, []


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
