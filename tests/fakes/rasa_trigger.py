"""A fake of Rasa's HTTP API endpoint `POST /conversations/{id}/trigger_intent` on 127.0.0.1.

It checks `Authorization: Bearer <JWT>` the way the Rasa server connectors/server.py starts
does (tests/fakes/rasa_auth.py: HS256 signed with `token`; 401/403 JSON otherwise, and a
`?token=` query string opens nothing), refuses intents the domain does not know (400, like
Rasa), records every call, and can answer 503 for the next N calls. Rasa's real answer carries the tracker and the bot's
messages; this one carries the conversation id and the triggered intent.
"""
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set
from urllib.parse import parse_qs, unquote, urlparse

from helpdesk.launch import free_port
from tests.fakes import rasa_auth


@dataclass
class TriggeredIntent:
    conversation_id: str
    intent: str
    entities: Dict[str, Any]
    output_channel: Optional[str]
    token: Optional[str]  # a `?token=` query string, if one was sent (none should be)
    claims: Dict[str, Any] = field(default_factory=dict)  # of the Bearer JWT
    at: float = field(default_factory=time.time)


class FakeRasa:
    def __init__(self, token: Optional[str] = "rasa-test-token", intents: Optional[Set[str]] = None) -> None:
        self.port = free_port()
        self.token = token
        self.intents = intents
        self.calls: List[TriggeredIntent] = []
        self.failures = 0
        self.failure_status = 503
        self.lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> Dict[str, str]:
        values = {"RASA_PORT": str(self.port)}
        if self.token:
            values["RASA_AUTH_TOKEN"] = self.token
        return values

    def fail(self, times: int, status: int = 503) -> None:
        with self.lock:
            self.failures, self.failure_status = times, status

    def triggered(self, intent: Optional[str] = None) -> List[TriggeredIntent]:
        with self.lock:
            return [c for c in self.calls if intent is None or c.intent == intent]

    def start(self) -> "FakeRasa":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake.handle(self.path, body, self.headers)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-rasa", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, raw_path: str, body: bytes, headers: Any = None):
        parsed = urlparse(raw_path)
        parts = parsed.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if len(parts) != 3 or parts[0] != "conversations" or parts[2] != "trigger_intent":
            return 404, {"version": "3.6.21", "status": "failure", "message": "Not found", "code": 404}
        refused = rasa_auth.refusal(headers or {}, self.token or None, unquote(parts[1]))
        if refused:
            return refused
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                return self.failure_status, {"status": "failure", "message": "injected", "code": self.failure_status}
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"status": "failure", "reason": "BadRequest", "message": "Invalid JSON", "code": 400}
        intent = request.get("name")
        if not intent:
            return 400, {"status": "failure", "reason": "BadRequest",
                         "message": "Name of the intent not provided but required.", "code": 400}
        if self.intents is not None and intent not in self.intents:
            return 400, {"status": "failure", "reason": "BadRequest",
                         "message": f"The intent '{intent}' does not exist in the domain.", "code": 400}
        call = TriggeredIntent(unquote(parts[1]), intent, request.get("entities") or {},
                               query.get("output_channel"), query.get("token"),
                               rasa_auth.claims_of(headers or {}, self.token) if self.token else {})
        with self.lock:
            self.calls.append(call)
        return 200, {"tracker": {"sender_id": call.conversation_id, "latest_message": {"intent": {"name": intent}}},
                     "messages": []}
