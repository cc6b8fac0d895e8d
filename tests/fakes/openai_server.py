"""A fake OpenAI-compatible API on loopback, used through the real `openai` client.

It speaks the wire format of the endpoints the bot uses:
- `POST /v1/chat/completions` (text and `image_url` content parts, `response_format`),
  answering `chat.completion` objects with `choices`, `message.refusal` and `usage`;
- `POST /v1/embeddings` (deterministic word-hash vectors, `float` or `base64` encoding);
- `POST /v1/audio/transcriptions` (multipart: file, model, language, prompt,
  response_format json | text | verbose_json);
- `GET /v1/models`.
Errors use OpenAI's error body `{"error": {"message", "type", "param", "code"}}`.

Each endpoint answers from a queue of programmed `Reply`s, then from a handler function of
the request, then a default (embeddings: vectors; the others: a 400 saying nothing was
programmed, so a test never passes on an answer it did not ask for). Every request is
recorded. Failures are injected as replies: 429 (with Retry-After headers), 5xx, delays,
invalid JSON content, refusals, wrong shapes.

    with FakeOpenAI() as fake:
        fake.chat.push(Reply.rate_limited(), Reply.json({"subject": "Caja sin energía"}))
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")

The server runs aiohttp in its own thread and loop, so a slow answer delays only its own
request.
"""
import asyncio
import base64
import binascii
import collections
import hashlib
import itertools
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np
from aiohttp import web



def error_body(message: str, type_: str, code: Optional[str] = None,
               param: Optional[str] = None) -> Dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class Reply:
    """One programmed answer. For chat, `content` is the assistant message; for
    transcriptions, the text. `body` replaces the whole generated body (a dict is sent as
    JSON, text or bytes as they are)."""

    status: int = 200
    content: Optional[str] = None
    refusal: Optional[str] = None
    finish_reason: str = "stop"
    usage: Optional[Dict[str, Any]] = None
    delay: float = 0.0
    body: Any = None
    headers: Dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, data: Any, **kwargs: Any) -> "Reply":
        return cls(content=json.dumps(data, ensure_ascii=False), **kwargs)

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> "Reply":
        return cls(content=text, **kwargs)

    @classmethod
    def rate_limited(cls, retry_after: Optional[float] = None, *,
                     code: str = "rate_limit_exceeded", **kwargs: Any) -> "Reply":
        """429 as OpenAI sends it; `retry_after` in seconds goes into both retry headers."""
        headers = {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
                   "x-ratelimit-reset-requests": "20s"}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
            headers["retry-after-ms"] = f"{retry_after * 1000:g}"
        if code == "insufficient_quota":
            body = error_body("You exceeded your current quota; check your plan and billing.",
                              "insufficient_quota", "insufficient_quota")
        else:
            body = error_body("Rate limit reached for requests per min (RPM): Limit 3, Used 3, "
                              "Requested 1. Please try again in 20s.", "requests", code)
        return cls(status=429, body=body, headers=headers, **kwargs)

    @classmethod
    def server_error(cls, status: int = 500, **kwargs: Any) -> "Reply":
        if status == 503:
            body = error_body("The engine is currently overloaded, please try again later.",
                              "server_error", "overloaded")
        else:
            body = error_body("The server had an error while processing your request.",
                              "server_error")
        return cls(status=status, body=body, **kwargs)

    @classmethod
    def bad_request(cls, message: str, *, code: Optional[str] = None,
                    param: Optional[str] = None, status: int = 400) -> "Reply":
        return cls(status=status, body=error_body(message, "invalid_request_error", code, param))

    @classmethod
    def refused(cls, message: str = "Lo siento, no puedo ayudar con eso.", **kwargs: Any
                ) -> "Reply":
        return cls(content=None, refusal=message, **kwargs)

    @classmethod
    def invalid_json(cls, **kwargs: Any) -> "Reply":
        cut_short = '{"intent": "report_incident", "confidence": 0.9, "entities": ['
        return cls(content=cut_short, **kwargs)

    @classmethod
    def slow(cls, seconds: float, reply: Optional["Reply"] = None) -> "Reply":
        reply = reply or cls.json({})
        reply.delay = seconds
        return reply


@dataclass
class Recorded:
    """A request as the fake received it."""

    method: str
    path: str
    headers: Dict[str, str]
    json: Optional[Dict[str, Any]] = None
    form: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, Tuple[str, str, bytes]] = field(default_factory=dict)  # name, type, data
    images: List[Tuple[str, bytes]] = field(default_factory=list)  # mime, data of image parts
    at: float = 0.0

    @property
    def model(self) -> Optional[str]:
        return (self.json or {}).get("model") or self.form.get("model")

    def text(self) -> str:
        """Every text part of a chat request, joined (to assert on prompts)."""
        parts = []
        for message in (self.json or {}).get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p.get("text", "") for p in content if p.get("type") == "text"]
        return "\n".join(parts)


class Endpoint:
    """Programmed answers of one endpoint: a queue, then `handler(request)`, then a default."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.queue: Deque[Reply] = collections.deque()
        self.handler: Optional[Callable[[Recorded], Reply]] = None

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.queue.extend(replies)

    def next(self, request: Recorded) -> Optional[Reply]:
        with self._lock:
            if self.queue:
                return self.queue.popleft()
        return self.handler(request) if self.handler else None

    def clear(self) -> None:
        with self._lock:
            self.queue.clear()
            self.handler = None


_DATA_URL = re.compile(r"^data:([\w.+/-]+);base64,(.*)$", re.S)
_WORD = re.compile(r"\w+", re.U)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4) if text else 0


def hashed_vector(text: str, dimension: int) -> np.ndarray:
    """Deterministic, unnormalised: each word adds ±(1..2) at a hashed position, so texts
    sharing words are close. Never all zero."""
    vector = np.zeros(dimension, dtype=np.float32)
    vector[0] = 0.05
    for word in _WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "little") % dimension
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[index] += sign * (1.0 + digest[5] / 255.0)
    return vector


class FakeOpenAI:
    """The server; `base_url` ends in /v1 as OpenAI-compatible clients expect."""

    def __init__(self, *, api_key: Optional[str] = None, embedding_dimension: int = 16,
                 models: Tuple[str, ...] = ("gpt-4o-mini", "text-embedding-3-small",
                                            "whisper-1")) -> None:
        self.api_key = api_key
        self.embedding_dimension = embedding_dimension
        self.models = models
        self._lock = threading.Lock()
        self.chat = Endpoint(self._lock)
        self.embeddings = Endpoint(self._lock)
        self.transcriptions = Endpoint(self._lock)
        self.requests: List[Recorded] = []
        self._ids = itertools.count(1)
        self.port = 0  # known once started (bound to a free port by the OS)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> "FakeOpenAI":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        started = threading.Event()
        errors: List[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as error:  # report to the starting thread
                errors.append(error)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        started.wait(10)
        if errors:
            raise errors[0]

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None

    # --- what tests read ------------------------------------------------------------------

    def requests_to(self, suffix: str) -> List[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    @property
    def chat_requests(self) -> List[Recorded]:
        return self.requests_to("/chat/completions")

    def reset(self) -> None:
        for endpoint in (self.chat, self.embeddings, self.transcriptions):
            endpoint.clear()
        with self._lock:
            self.requests.clear()

    # --- handlers -------------------------------------------------------------------------

    def _record(self, request: web.Request, **kwargs: Any) -> Recorded:
        entry = Recorded(method=request.method, path=request.path,
                         headers=dict(request.headers), at=time.time(), **kwargs)
        with self._lock:
            self.requests.append(entry)
        return entry

    def _unauthorised(self, request: web.Request) -> Optional[web.Response]:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return web.json_response(error_body(
            "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"), status=401)

    async def _send(self, reply: Reply, body: Any) -> web.StreamResponse:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        body = reply.body if reply.body is not None else body
        if isinstance(body, (dict, list)):
            data = json.dumps(body, ensure_ascii=False).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        return web.Response(status=reply.status, body=data, headers=reply.headers,
                            content_type=reply.content_type)

    async def _json_body(self, request: web.Request) -> Tuple[Optional[Dict[str, Any]], Any]:
        try:
            body = await request.json()
        except ValueError:
            return None, error_body("We could not parse the JSON body of your request.",
                                    "invalid_request_error")
        if not isinstance(body, dict):
            return None, error_body("The body must be a JSON object.", "invalid_request_error")
        return body, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, problem = await self._json_body(request)
        entry = self._record(request, json=body)
        denied = self._unauthorised(request)
        if denied:
            return denied
        if problem:
            return web.json_response(problem, status=400)
        messages = body.get("messages")
        if not body.get("model") or not isinstance(messages, list) or not messages:
            return web.json_response(error_body(
                "'model' and a non-empty 'messages' array are required.",
                "invalid_request_error", param="messages"), status=400)
        image_tokens = 0
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                for part in content:
                    if part.get("type") != "image_url":
                        continue
                    url = (part.get("image_url") or {}).get("url", "")
                    match = _DATA_URL.match(url)
                    if not match and not url.startswith(("http://", "https://")):
                        return web.json_response(error_body(
                            "Invalid image URL.", "invalid_request_error",
                            "invalid_image_url", "messages"), status=400)
                    if match:
                        try:
                            entry.images.append((match.group(1),
                                                 base64.b64decode(match.group(2), validate=True)))
                        except binascii.Error:
                            return web.json_response(error_body(
                                "Invalid base64 image data.", "invalid_request_error",
                                "invalid_image_format", "messages"), status=400)
                    image_tokens += 85
        reply = self.chat.next(entry)
        if reply is None:
            return web.json_response(error_body(
                "fake server: no chat answer programmed for this request",
                "invalid_request_error"), status=400)
        content = reply.content
        usage = reply.usage or {
            "prompt_tokens": estimate_tokens(entry.text()) + image_tokens,
            "completion_tokens": estimate_tokens(content or reply.refusal or ""),
        }
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        answer = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": reply.refusal},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        return await self._send(reply, answer)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, problem = await self._json_body(request)
        entry = self._record(request, json=body)
        denied = self._unauthorised(request)
        if denied:
            return denied
        if problem:
            return web.json_response(problem, status=400)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not body.get("model") or not isinstance(texts, list) or not texts or \
                not all(isinstance(t, str) for t in texts):
            return web.json_response(error_body(
                "'model' and 'input' (a string or an array of strings) are required.",
                "invalid_request_error", param="input"), status=400)
        reply = self.embeddings.next(entry) or Reply()
        dimension = int(body.get("dimensions") or self.embedding_dimension)
        data = []
        for index, text in enumerate(texts):
            vector = hashed_vector(text, dimension)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                encoded = [float(v) for v in vector]
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(estimate_tokens(t) for t in texts)
        answer = {"object": "list", "data": data, "model": body["model"],
                  "usage": reply.usage or {"prompt_tokens": tokens, "total_tokens": tokens}}
        return await self._send(reply, answer)

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        form: Dict[str, str] = {}
        files: Dict[str, Tuple[str, str, bytes]] = {}
        if not request.content_type.startswith("multipart/form-data"):
            self._record(request)
            return web.json_response(error_body(
                "Expected multipart/form-data.", "invalid_request_error"), status=400)
        reader = await request.multipart()
        async for part in reader:
            if part.filename is not None:
                files[part.name] = (part.filename,
                                    part.headers.get("Content-Type", "application/octet-stream"),
                                    bytes(await part.read()))
            else:
                form[part.name] = await part.text()
        entry = self._record(request, form=form, files=files)
        denied = self._unauthorised(request)
        if denied:
            return denied
        if "file" not in files or not form.get("model"):
            return web.json_response(error_body(
                "'file' and 'model' are required.", "invalid_request_error",
                param="file"), status=400)
        reply = self.transcriptions.next(entry)
        if reply is None:
            return web.json_response(error_body(
                "fake server: no transcription programmed for this request",
                "invalid_request_error"), status=400)
        text = reply.content or ""
        response_format = form.get("response_format", "json")
        if reply.body is None and reply.status == 200 and response_format == "text":
            reply.content_type = "text/plain"
            return await self._send(reply, text)
        answer: Dict[str, Any] = {"text": text}
        if response_format == "verbose_json":
            answer = {"task": "transcribe", "language": form.get("language", "es"),
                      "duration": (reply.usage or {}).get("seconds", 1.0), "text": text}
        elif reply.usage is not None:
            answer["usage"] = reply.usage
        return await self._send(reply, answer)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        denied = self._unauthorised(request)
        if denied:
            return denied
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]})
