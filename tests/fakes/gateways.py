"""Fake WhatsApp gateways on loopback: WAHA and Meta's Graph API, as documented in
docs/whatsapp-wire-formats.md. They record what they receive, serve media files, and fail
on demand (down, 5xx, Meta error codes; for a while with `failure`, or for one WAHA chat
with `failing_chats`), so the connectors are tested over real HTTP.
`FakeObjectStore` is a file host with no key of its own (WAHA's S3 storage gives presigned
links to one), or any other server a forged media URL might point at; every fake can answer
a path with a redirect (`redirects`), as a proxy or a hostile server would.
"""
import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 with recorded requests and injectable failures."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: List[Dict[str, Any]] = []
        self.redirects: Dict[str, Tuple[int, str]] = {}  # path: (3xx status, Location)
        self.lock = threading.Lock()
        self.fail_next: List[Tuple[int, Any]] = []  # (status, body) for the next calls
        self.down = False  # every send answers 503
        self.failure: Optional[Tuple[int, Any]] = None  # every send answers this until cleared
        self.delay_seconds = 0.0
        self.files: Dict[str, Tuple[bytes, str]] = {}
        self.arrived = threading.Condition(self.lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _respond(self, status: int, body: Any, content_type: str = "application/json"
                         ) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _redirected(self, body: Any) -> bool:
                found = server.redirects.get(urlparse(self.path).path)
                if found is None:
                    return False
                entry = server.record(self, body)
                entry["redirected"] = True
                self.send_response(found[0])
                self.send_header("Location", found[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def do_GET(self) -> None:
                if self._redirected(None):
                    return
                status, body, content_type = server.handle_get(self)
                self._respond(status, body, content_type)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                if self._redirected(body):
                    return
                status, answer = server.handle_post(self, body)
                self._respond(status, answer)

            do_PUT = do_POST  # WAHA's PUT /api/reaction; the path tells them apart

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        # a short poll interval: stopping the server takes 0.05 s instead of 0.5 s
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # recording -----------------------------------------------------------------------
    def record(self, handler: BaseHTTPRequestHandler, body: Any) -> Dict[str, Any]:
        entry = {"path": urlparse(handler.path).path, "query": parse_qs(urlparse(handler.path).query),
                 "headers": dict(handler.headers), "body": body, "at": time.time()}
        with self.arrived:
            self.requests.append(entry)
            self.arrived.notify_all()
        return entry

    def calls(self, path: str) -> List[Dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait_for(self, predicate: Callable[[List[Dict[str, Any]]], bool],
                 timeout: float = 20) -> List[Dict[str, Any]]:
        """Wait until the recorded requests satisfy the predicate; fail the test otherwise."""
        deadline = time.time() + timeout
        with self.arrived:
            while not predicate(self.requests):
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out; recorded: {[(r['path'], r['body']) for r in self.requests]}"
                    )
                self.arrived.wait(remaining)
            return list(self.requests)

    async def wait_for_async(self, predicate: Callable[[List[Dict[str, Any]]], bool],
                             timeout: float = 20, interval: float = 0.01
                             ) -> List[Dict[str, Any]]:
        """`wait_for` for a test that runs the client in an event loop: it polls with
        asyncio.sleep, so the loop (and the code under test) keeps running meanwhile."""
        deadline = time.time() + timeout
        while True:
            with self.lock:
                seen = list(self.requests)
            if predicate(seen):
                return seen
            if time.time() >= deadline:
                recorded = [(r["path"], r["body"]) for r in seen]
                raise AssertionError(f"timed out; recorded: {recorded}")
            await asyncio.sleep(interval)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.redirects.clear()
            self.fail_next.clear()
            self.down = False
            self.failure = None
            self.delay_seconds = 0.0

    def injected_failure(self) -> Optional[Tuple[int, Any]]:
        with self.lock:
            if self.down:
                return 503, {"statusCode": 503, "message": "Service Unavailable"}
            if self.failure is not None:
                return self.failure
            if self.fail_next:
                return self.fail_next.pop(0)
        return None

    def handle_get(self, handler: BaseHTTPRequestHandler) -> Tuple[int, Any, str]:
        raise NotImplementedError

    def handle_post(self, handler: BaseHTTPRequestHandler, body: Any) -> Tuple[int, Any]:
        raise NotImplementedError


class FakeWaha(FakeServer):
    """WAHA's API: sendText/sendImage/sendFile/sendSeen/typing answer 201; files served at
    /api/files/<name> with X-Api-Key; lids resolved from `self.lids`. A file added with
    `serve_file(..., lifetime=s)` is deleted s seconds later, as WAHA deletes a message's file
    (after 180 s by default); `file_delay_seconds` stalls each file download that long, a file
    in `stalled_files` is served after that many seconds. A chat in `failing_chats` gets that
    (status, body) for every send to it (`waha_error` builds WAHA's error bodies). A send to a
    chat in `slow_chats` is taken (recorded: the user has the message) at once and answered
    that many seconds later, as a WAHA slow to confirm."""

    def __init__(self, api_key: str = "waha-key", host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key
        self.lids: Dict[str, str] = {}
        self.sent_count = 0
        self.file_expiry: Dict[str, float] = {}  # path: when WAHA deletes it (time.time())
        self.file_delay_seconds = 0.0
        self.failing_chats: Dict[str, Tuple[int, Any]] = {}
        self.stalled_files: Dict[str, float] = {}  # file path: seconds its download hangs
        self.slow_chats: Dict[str, float] = {}  # chat id: seconds a send to it is answered late

    def serve_file(self, path: str, data: bytes, mime: str,
                   lifetime: Optional[float] = None) -> str:
        """Serve a file at `path` (deleted `lifetime` seconds from now); its URL."""
        with self.lock:
            self.files[path] = (data, mime)
            if lifetime is not None:
                self.file_expiry[path] = time.time() + lifetime
            else:
                self.file_expiry.pop(path, None)
        return f"{self.url}{path}"

    def clear(self) -> None:
        super().clear()
        with self.lock:
            self.file_delay_seconds = 0.0
            self.failing_chats.clear()
            self.stalled_files.clear()
            self.slow_chats.clear()

    def _file(self, path: str) -> Optional[Tuple[bytes, str]]:
        with self.lock:
            expiry = self.file_expiry.get(path)
            if expiry is not None and time.time() >= expiry:
                self.files.pop(path, None)  # deleted, as WAHA does
                self.file_expiry.pop(path, None)
            return self.files.get(path)

    def texts(self, chat_id: Optional[str] = None) -> List[str]:
        return [r["body"]["text"] for r in self.calls("/api/sendText")
                if not r.get("failed") and (chat_id is None or r["body"]["chatId"] == chat_id)]

    def reactions(self) -> List[Tuple[str, str]]:
        """(messageId, reaction) of every reaction put (PUT /api/reaction)."""
        return [(r["body"]["messageId"], r["body"]["reaction"])
                for r in self.calls("/api/reaction") if not r.get("failed")]

    def handle_get(self, handler: BaseHTTPRequestHandler) -> Tuple[int, Any, str]:
        path = urlparse(handler.path).path
        self.record(handler, None)
        if handler.headers.get("X-Api-Key") != self.api_key:
            return 401, {"message": "Unauthorized", "statusCode": 401}, "application/json"
        if path.startswith("/api/files/"):
            if self.file_delay_seconds:
                time.sleep(self.file_delay_seconds)
            stall = self.stalled_files.get(path)
            if stall:
                time.sleep(stall)  # a download that hangs (a stalled WAHA or disk)
            found = self._file(path)
            if not found:
                return 404, {"statusCode": 404, "message": "Not Found"}, "application/json"
            return 200, found[0], found[1]
        if "/lids/" in path:
            lid = path.rsplit("/", 1)[-1]
            return 200, {"lid": lid, "pn": self.lids.get(lid)}, "application/json"
        return 404, {"statusCode": 404, "message": "Not Found"}, "application/json"

    def handle_post(self, handler: BaseHTTPRequestHandler, body: Any) -> Tuple[int, Any]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if handler.headers.get("X-Api-Key") != self.api_key:
            self.record(handler, body)
            return 401, {"message": "Unauthorized", "statusCode": 401}
        chat = (body or {}).get("chatId", "")
        with self.lock:
            failure = self.failing_chats.get(chat)
        failure = failure or self.injected_failure()
        entry = self.record(handler, body)
        if failure:
            entry["failed"] = True
            return failure
        if urlparse(handler.path).path == "/api/reaction":
            return 200, {}  # WAHA answers a reaction with an empty object
        with self.lock:
            self.sent_count += 1
            number = self.sent_count
            slow = self.slow_chats.get(chat)
        if slow:
            time.sleep(slow)
        return 201, {"id": {"fromMe": True, "remote": chat, "id": f"3EB0{number:016X}",
                            "_serialized": f"true_{chat}_3EB0{number:016X}"}}


class FakeMeta(FakeServer):
    """Graph API: POST /<version>/<phone id>/messages, media lookup and download.

    A media lookup answers with a download URL on `download_url` (this server unless set:
    Meta's is lookaside.fbsbx.com, another host than the Graph API's), where a FakeMeta with
    the same files serves `/download/<id>` to the Bearer token."""

    def __init__(self, token: str = "meta-token", phone_number_id: str = "106540352242922",
                 host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.token = token
        self.phone_number_id = phone_number_id
        self.sent_count = 0
        self.download_url: Optional[str] = None

    def clear(self) -> None:
        super().clear()
        self.download_url = None

    def messages(self) -> List[Dict[str, Any]]:
        return [r["body"] for r in self.requests
                if r["path"].endswith("/messages") and r["body"] and "status" not in r["body"]
                and not r.get("failed")]

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        return handler.headers.get("Authorization") == f"Bearer {self.token}"

    def handle_get(self, handler: BaseHTTPRequestHandler) -> Tuple[int, Any, str]:
        parsed = urlparse(handler.path)
        self.record(handler, None)
        if not self._authorised(handler):
            return 401, _graph_error(190, "Error validating access token"), "application/json"
        if parsed.path.startswith("/download/"):
            found = self.files.get(parsed.path)
            if not found:
                return 404, b"", "text/plain"
            return 200, found[0], found[1]
        media_id = parsed.path.rsplit("/", 1)[-1]
        found = self.files.get(f"/download/{media_id}")
        if not found:
            return 400, _graph_error(100, "Unsupported get request"), "application/json"
        base = self.download_url or self.url
        return 200, {"messaging_product": "whatsapp", "url": f"{base}/download/{media_id}",
                     "mime_type": found[1], "sha256": "x", "file_size": str(len(found[0])),
                     "id": media_id}, "application/json"

    def handle_post(self, handler: BaseHTTPRequestHandler, body: Any) -> Tuple[int, Any]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if not self._authorised(handler):
            self.record(handler, body)
            return 401, _graph_error(190, "Error validating access token")
        failure = self.injected_failure()
        entry = self.record(handler, body)
        if failure:
            entry["failed"] = True
            return failure
        if body and body.get("status") == "read":
            return 200, {"success": True}
        with self.lock:
            self.sent_count += 1
            number = self.sent_count
        to = (body or {}).get("to")
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                     "messages": [{"id": f"wamid.SENT{number:06d}"}]}


class FakeObjectStore(FakeServer):
    """A file host that asks for no key: an S3 bucket's presigned GET (the signature is in the
    query, `X-Amz-Signature`, and S3 needs nothing else), or any server a URL points at.
    It serves `files` by path to anyone and records every request with its headers."""

    def handle_get(self, handler: BaseHTTPRequestHandler) -> Tuple[int, Any, str]:
        self.record(handler, None)
        found = self.files.get(urlparse(handler.path).path)
        if not found:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml"
        return 200, found[0], found[1]

    def handle_post(self, handler: BaseHTTPRequestHandler, body: Any) -> Tuple[int, Any]:
        self.record(handler, body)
        return 200, {"received": True}


def _graph_error(code: int, message: str) -> Dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbCdEf123"}}


def graph_error(code: int, message: str = "error") -> Dict[str, Any]:
    return _graph_error(code, message)


def waha_error(status: int, message: str) -> Tuple[int, Dict[str, Any]]:
    """WAHA's answer to a refused call (NestJS' error body): e.g. 422 while the session is
    not WORKING, 500 for a send WhatsApp failed."""
    reasons = {400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity",
               500: "Internal Server Error"}
    return status, {"statusCode": status, "message": message,
                    "error": reasons.get(status, "Error")}

