"""A fake of Rasa 3.6's HTTP API on loopback: the two endpoints workers use to speak to a
conversation, with Rasa's behaviour where it matters.

- `POST /conversations/{id}/tracker/events` with a list of events (`pause`,
  `resume`, ...): appended to the tracker; answers the tracker state.
- `GET /conversations/{id}/tracker`: the tracker state (`paused`, and the events unless
  `include_events=NONE`).
- `POST /conversations/{id}/trigger_intent?output_channel=…` with
  `{"name", "entities"}`: 404 when the intent is not in the domain; otherwise the intent is
  logged and, unless the conversation is paused (Rasa predicts nothing then), the response the
  domain gives that intent is "sent" on the output channel (recorded in `sent`).
- `Authorization: Bearer <JWT>` checked like the Rasa server connectors/server.py starts
  (tests/fakes/rasa_auth.py: HS256 with `token` as the secret; 401/403 with Rasa's error
  body; a `?token=` query string opens nothing).

`fail(status, times)` answers an error instead; every call is recorded in `calls`.
"""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlparse

from tests.fakes import rasa_auth


class FakeRasa:
    def __init__(self, *, token: Optional[str] = None, responses: Optional[Dict[str, str]] = None) -> None:
        self.token = token
        self.responses = dict(responses or {})  # intent -> text of its response
        self.events: Dict[str, List[Dict[str, Any]]] = {}
        self.sent: List[Tuple[str, str, str]] = []  # (conversation, output channel, text)
        self.calls: List[Dict[str, Any]] = []
        self.failures: List[int] = []
        self.lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    def paused(self, conversation_id: str) -> bool:
        state = False
        for event in self.events.get(conversation_id, []):
            if event.get("event") == "pause":
                state = True
            elif event.get("event") in ("resume", "restart"):
                state = False
        return state

    def fail(self, status: int = 503, times: int = 1) -> None:
        with self.lock:
            self.failures += [status] * times

    def start(self) -> "FakeRasa":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms ACK wait

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._answer(*fake._handle(self.path, None, self.headers, method="GET"))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                self._answer(*fake._handle(self.path, raw, self.headers))

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-rasa", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeRasa":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server
        return self._server.server_address[1]

    @staticmethod
    def _error(status: int, reason: str, message: str) -> Tuple[int, Dict[str, Any]]:
        return status, {"version": "3.6.21", "status": "failure", "message": message,
                        "reason": reason, "details": {}, "help": None, "code": status}

    def _tracker(self, conversation_id: str, include_events: bool = True) -> Dict[str, Any]:
        return {"sender_id": conversation_id, "paused": self.paused(conversation_id),
                "events": list(self.events.get(conversation_id, [])) if include_events else None,
                "slots": {}, "latest_message": {}, "latest_action_name": None}

    def _handle(self, raw_path: str, raw: Optional[bytes], headers: Any = None,
                method: str = "POST") -> Tuple[int, Any]:
        parsed = urlparse(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self.lock:
            self.calls.append({"method": method, "path": parsed.path, "query": query, "json": body,
                               "authorization": (headers or {}).get("Authorization")})
            if self.failures:
                status = self.failures.pop(0)
                return self._error(status, "ServerError", "injected failure")
            endpoints = "tracker" if method == "GET" else "tracker/events|trigger_intent"
            match = re.match(rf"^/conversations/([^/]+)/({endpoints})$", parsed.path)
            refused = rasa_auth.refusal(headers or {}, self.token,
                                        unquote(match.group(1)) if match else None)
            if refused:
                return refused
            if not match:
                return self._error(404, "NotFound", "not found")
            conversation_id, endpoint = unquote(match.group(1)), match.group(2)
            events = self.events.setdefault(conversation_id, [])
            if endpoint == "tracker":
                return 200, self._tracker(conversation_id, query.get("include_events") != "NONE")
            if endpoint == "tracker/events":
                if isinstance(body, dict):
                    body = [body]
                if not isinstance(body, list) or not all(isinstance(e, dict) and e.get("event") for e in body):
                    return self._error(400, "BadRequest", "Couldn't parse the events")
                events.extend(body)
                return 200, self._tracker(conversation_id, query.get("include_events") != "NONE")
            if not isinstance(body, dict) or not body.get("name"):
                return self._error(400, "BadRequest", "Name of the intent not provided in request body.")
            intent = body["name"]
            if intent not in self.responses:
                return self._error(404, "NotFound", f"The intent {intent} does not exist in the domain.")
            events.append({"event": "user", "text": f"/{intent}", "parse_data": {"intent": {"name": intent}}})
            if not self.paused(conversation_id):
                events.append({"event": "bot", "text": self.responses[intent]})
                self.sent.append((conversation_id, query.get("output_channel", ""), self.responses[intent]))
            return 200, {"tracker": self._tracker(conversation_id)}
