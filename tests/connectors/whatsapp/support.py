"""Shared parts of the WhatsApp channel unit tests: the environment the channels read, a
channel config with tiny timings, gateway settings that point at the fakes, payload
builders that follow docs/whatsapp-wire-formats.md (WAHA A1-A2, Meta B3), signed webhook
requests, and the `Rig` (a Delivery with both senders and both outputs) the output and
sender tests share.

Async code runs with `asyncio.run`; every Redis or aiohttp client is created inside the
coroutine that uses it (their connections belong to that loop) and closed before it ends.
"""
import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import redis.asyncio as aioredis
from sanic.compat import Header
from sanic.request import Request

from connectors.meta import MetaSender
from connectors.waha import WahaSender
from connectors.whatsapp.output import Delivery, WhatsAppOutput, current_turn
from helpdesk import redis_keys
from helpdesk.config import ChannelConfig, load_channel_config
from helpdesk.settings import MetaSettings, WahaSettings
from helpdesk.whatsapp import MetaClient, Route, WahaClient, save_route
from tests.fakes.gateways import FakeMeta, FakeWaha

PROJECT = Path(__file__).resolve().parents[3]
CHANNELS_YML = PROJECT / "config" / "channels.yml"

BOT_NUMBER = "5491100000000"
BOT_LID = "77820596330581@lid"
USER = "5491122334455"
OTHER = "5491199887766"
GROUP = "120363419669512474@g.us"
WAHA_KEY = "waha-key"
META_TOKEN = "meta-token"
META_PHONE_ID = "106540352242922"
WAHA_HMAC_KEY = "waha-hmac-secret"
WAHA_CHAT = f"{USER}@c.us"

GATEWAY_ENV = ("WAHA_BASE_URL", "WAHA_API_KEY", "WAHA_SESSION", "WAHA_WEBHOOK_HMAC_KEY",
               "META_ACCESS_TOKEN", "META_APP_SECRET", "META_VERIFY_TOKEN",
               "META_PHONE_NUMBER_ID", "META_GRAPH_URL", "META_API_VERSION",
               "HELPDESK_CONFIG_DIR")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def reset_channel_state() -> None:
    """Forget the process singletons the channels build once (Shared, caches)."""
    import connectors.whatsapp.webhook as webhook
    from helpdesk.config import catalog
    from helpdesk.config import channel_config

    webhook._shared = None
    channel_config.cache_clear()
    catalog.cache_clear()


def fresh(channel_class: Any, settings: Any) -> Any:
    """A channel (WahaInput / MetaInput) on a new Shared: build it inside the coroutine that
    uses it, since its Redis connections belong to that loop."""
    reset_channel_state()
    return channel_class(settings)


async def close_channel(channel: Any) -> None:
    if getattr(channel, "client", None) is not None:
        await channel.client.close()
    await channel.shared.redis.close()


@pytest.fixture
def channel_env(monkeypatch: pytest.MonkeyPatch, redis_client: Any, redis_url: str
                ) -> Iterator[str]:
    """The test Redis as REDIS_URL, no gateway configured, fresh channel singletons."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    for name in GATEWAY_ENV:
        monkeypatch.delenv(name, raising=False)
    reset_channel_state()
    yield redis_url
    reset_channel_state()


@pytest.fixture
def fake_waha() -> Iterator[FakeWaha]:
    with FakeWaha(api_key=WAHA_KEY) as server:
        yield server


@pytest.fixture
def fake_meta() -> Iterator[FakeMeta]:
    with FakeMeta(token=META_TOKEN, phone_number_id=META_PHONE_ID) as server:
        yield server


def tiny_config(**changes: Any) -> ChannelConfig:
    """The project's channels.yml with timings small enough for unit tests."""
    base = load_channel_config(CHANNELS_YML)
    values: Dict[str, Any] = dict(
        send_attempts=2, send_retry_delay_ms=10, send_timeout_seconds=3,
        outbox_backoff_seconds=(0.05, 0.1), read_receipts=False, typing=False,
    )
    values.update(changes)
    return dataclasses.replace(base, **values)


def waha_settings(url: str = "http://127.0.0.1:9", hmac_key: Optional[str] = None
                  ) -> WahaSettings:
    return WahaSettings(base_url=url, api_key=WAHA_KEY, session="default", hmac_key=hmac_key)


def meta_settings(url: str = "http://127.0.0.1:9", app_secret: Optional[str] = None
                  ) -> MetaSettings:
    return MetaSettings(access_token=META_TOKEN, app_secret=app_secret,
                        verify_token="verify-me", phone_number_id=META_PHONE_ID,
                        graph_url=url, api_version="v21.0")


def redis_for(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url)


async def wait_until(predicate: Callable[[], Any], timeout: float = 30,
                     interval: float = 0.01) -> None:
    """Poll an async or plain predicate without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() >= deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


# --- WAHA payloads (A1, A2) ---------------------------------------------------------------

def waha_event(payload: Optional[Dict[str, Any]], *, event: str = "message",
               session: str = "default", me: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:26]}", "timestamp": int(time.time() * 1000),
        "event": event, "session": session,
        "me": me if me is not None else {"id": f"{BOT_NUMBER}@c.us", "pushName": "Soporte",
                                         "lid": BOT_LID,
                                         "jid": f"{BOT_NUMBER}:20@s.whatsapp.net"},
        "payload": payload, "engine": "NOWEB", "environment": {"tier": "CORE"},
    }


def waha_payload(sender: str = USER, body: Optional[str] = "hola", *,
                 group: Optional[str] = None, participant: Optional[str] = None,
                 message_id: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    """A WAMessage. `sender` is a number or a jid; with `group` the sender is the participant."""
    jid = sender if "@" in sender else f"{sender}@c.us"
    chat = group or jid
    mid = message_id or f"false_{chat}_{uuid.uuid4().hex[:20].upper()}"
    payload: Dict[str, Any] = {
        "id": mid, "timestamp": int(time.time()), "from": chat, "fromMe": False, "source": "app",
        "to": f"{BOT_NUMBER}@c.us", "body": body,
        "participant": (participant or jid) if group else None,
        "hasMedia": False, "media": None, "ack": 1, "ackName": "SERVER", "location": None,
        "vCards": None, "replyTo": None, "_data": {"notifyName": "Ana Pérez"},
    }
    payload.update(extra)
    return payload


# --- Meta payloads (B3) -------------------------------------------------------------------

def meta_message(kind: str, content: Any = None, *, sender: Optional[str] = USER,
                 message_id: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    message: Dict[str, Any] = {"id": message_id or f"wamid.{uuid.uuid4().hex[:24]}",
                               "timestamp": str(int(time.time())), "type": kind}
    if sender is not None:
        message["from"] = sender
    if content is not None:
        message[kind] = content
    message.update(extra)
    return message


def meta_text(body: str, **kwargs: Any) -> Dict[str, Any]:
    return meta_message("text", {"body": body}, **kwargs)


def meta_value(messages: Optional[List[Any]] = None, *, statuses: Optional[List[Any]] = None,
               errors: Optional[List[Any]] = None, phone_number_id: str = META_PHONE_ID,
               contacts: Optional[List[Any]] = None) -> Dict[str, Any]:
    value: Dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
    }
    if contacts is None:
        contacts = [{"profile": {"name": "Sheena Nelson"}, "wa_id": m["from"]}
                    for m in messages or [] if isinstance(m, dict) and m.get("from")]
    value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    return value


def meta_delivery(*values: Dict[str, Any], field: str = "messages") -> Dict[str, Any]:
    """One entry with one change per value."""
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398",
                       "changes": [{"value": value, "field": field} for value in values]}]}


# --- signed webhook requests (A3) ---------------------------------------------------------

def webhook_request(headers: Dict[str, str], body: bytes) -> Request:
    """A POST to the WAHA webhook as Sanic hands it to the channel."""
    request = Request(b"/webhooks/waha/webhook", Header(headers), "1.1", "POST", None, None)
    request.body = body
    return request


def waha_signed(body: bytes, key: str = WAHA_HMAC_KEY, algorithm: Optional[str] = "sha512"
                ) -> Dict[str, str]:
    """The headers WAHA sends with a body signed with this key (A3)."""
    headers = {"Content-Type": "application/json",
               "X-Webhook-Hmac": hmac.new(key.encode(), body, hashlib.sha512).hexdigest()}
    if algorithm is not None:
        headers["X-Webhook-Hmac-Algorithm"] = algorithm
    return headers


# --- outbound: a Delivery with both senders, both outputs ---------------------------------

class Rig:
    """A Delivery with both senders, both outputs and an async Redis, in the running loop."""

    def __init__(self, redis_url: str, waha: Any = None, meta: Any = None,
                 ask_in_direct: bool = False, **config: Any) -> None:
        self.redis_url = redis_url
        self.waha_url = waha.url if waha else "http://127.0.0.1:9"
        self.meta_url = meta.url if meta else "http://127.0.0.1:9"
        self.ask_in_direct = ask_in_direct
        self.config = tiny_config(**config)

    async def __aenter__(self) -> "Rig":
        self.redis = redis_for(self.redis_url)
        self.delivery = Delivery(self.redis, self.config)
        self.waha_client = WahaClient(waha_settings(self.waha_url), 3)
        self.meta_client = MetaClient(meta_settings(self.meta_url), 3)
        self.delivery.register("waha", WahaSender(self.waha_client))
        self.delivery.register("whatsapp", MetaSender(self.meta_client))
        self.outputs = {name: WhatsAppOutput(name, self.delivery, self.redis,
                                             ask_in_direct=self.ask_in_direct)
                        for name in ("waha", "whatsapp")}
        await save_route(self.redis, USER, Route(channel="waha", chat_id=WAHA_CHAT))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.delivery.stop()
        await finish_drainer(self.delivery)
        await self.waha_client.close()
        await self.meta_client.close()
        await self.redis.close()

    async def route(self, conversation: str, route: Route) -> None:
        await save_route(self.redis, conversation, route)

    async def queued(self, channel: str, chat: str) -> List[Dict[str, Any]]:
        return [json.loads(raw) for raw in
                await self.redis.lrange(redis_keys.outbox(channel, chat), 0, -1)]

    async def empty(self) -> bool:
        """No chat has anything waiting (the due set is empty once every list is)."""
        return await self.redis.zcard(redis_keys.outbox_due()) == 0

    async def counter(self, field: str) -> int:
        return int(await self.redis.hget(redis_keys.counters(), field) or 0)


async def finish_drainer(delivery: Delivery) -> None:
    """End the drainer task for sure (stop() can be ignored by it: see
    test_output.py's test_stop_ends_the_drainer_even_when_a_message_was_just_queued)."""
    task = delivery._task
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)


@contextlib.contextmanager
def replying_to(conversation: str):
    """Inside a user turn of this conversation: messages to it are replies, not proactive."""
    token = current_turn.set(conversation)
    try:
        yield
    finally:
        current_turn.reset(token)


def buttons_for(*titles: str) -> List[Dict[str, str]]:
    """Rasa buttons with these titles."""
    return [{"title": title, "payload": f"/elegir{{\"opcion\": {n}}}"}
            for n, title in enumerate(titles, start=1)]


def send_buttons(redis_url, fake_waha, fake_meta, channel: str, buttons):
    """Offer these buttons to USER on one channel; the offered buttons as stored."""
    async def scenario():
        async with Rig(redis_url, waha=fake_waha, meta=fake_meta) as rig:
            chat = WAHA_CHAT if channel == "waha" else USER
            await rig.route(USER, Route(channel=channel, chat_id=chat))
            with replying_to(USER):
                await rig.outputs[channel].send_text_with_buttons(USER, "¿Qué desea hacer?",
                                                                  buttons)
            return json.loads(await rig.redis.get(redis_keys.offered_buttons(USER)))

    return run(scenario())


# --- oversized bodies against a real server (the webhook and ingress tests) ---------------

MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def post_chunked(port: int, path: str, total: int, chunk: int = MB, timeout: float = 60
                 ) -> Dict[str, Any]:
    """POST `total` bytes with Transfer-Encoding: chunked, generated as they are sent (the test
    never holds them), stopping as soon as the server answers. The status, the bytes sent
    before the answer and the seconds it took."""
    import select
    import socket

    started = time.monotonic()
    piece = b"x" * chunk
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     "\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        try:
            while sent < total and time.monotonic() - started < timeout:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(f"{chunk:x}\r\n".encode() + piece + b"\r\n")
                sent += chunk
            if sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after answering
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            pass
    return {"status": _status_of(answer), "sent": sent, "seconds": time.monotonic() - started,
            "answer": answer}


def post_declared(port: int, path: str, length: int, timeout: float = 10) -> Dict[str, Any]:
    """Headers declaring a `length`-byte body and no body at all: a server that answers
    before reading the body answers at once; one that buffers it waits until the timeout."""
    import socket

    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {length}\r\n\r\n".encode() + b'{"event": ')
        try:
            answer = sock.recv(65536)
        except socket.timeout:
            pass
    return {"status": _status_of(answer), "seconds": time.monotonic() - started}


def oversized_bodies_are_refused_before_buffering(port: int, pid: int, path: str,
                                                  valid: Callable[[], Any],
                                                  marker: bytes = b"body too large"
                                                  ) -> Dict[str, Any]:
    """The 120 MB checks shared by the webhook tests on each server: a chunked 120 MB body
    and a large Content-Length get 413 quickly, the server's memory does not grow by the
    body, and the next valid webhook (`valid()`, returning its status) still works."""
    assert valid() == 200  # warm: the first request allocates what every request needs
    before = rss_mb(pid)
    chunked = post_chunked(port, path, 120 * MB)
    declared = post_declared(port, path, 64 * MB)  # under Sanic's own 100 MB limit
    after = rss_mb(pid)
    measured = {"chunked": {k: v for k, v in chunked.items() if k != "answer"},
                "declared": declared, "rss_before_mb": round(before, 1),
                "rss_after_mb": round(after, 1)}
    assert chunked["status"] == 413, measured
    assert chunked["sent"] <= 8 * MB and chunked["seconds"] < 10, measured
    assert marker in chunked["answer"], measured  # the channel's answer, not Sanic's
    assert declared["status"] == 413 and declared["seconds"] < 5, measured
    assert after - before < 30, measured  # not the ~100 MB Sanic would have buffered
    assert valid() == 200
    return measured


def inbound_entries(redis_client: Any, partitions: Optional[int] = None) -> List[Any]:
    """Every entry of the inbound log (all its partitions), oldest first (sync client)."""
    from helpdesk.whatsapp import inbound

    count = partitions or load_channel_config(CHANNELS_YML).inbound_partitions
    entries = [entry for p in [inbound.LEGACY, *range(count)]
               for entry in redis_client.xrange(inbound.stream(p))]
    return sorted(entries, key=lambda entry: json.loads(entry[1][b"m"])["received_at"])


def inbound_length(redis_client: Any, partitions: Optional[int] = None) -> int:
    from helpdesk.whatsapp import inbound

    count = partitions or load_channel_config(CHANNELS_YML).inbound_partitions
    return sum(redis_client.xlen(inbound.stream(p)) for p in [inbound.LEGACY, *range(count)])
