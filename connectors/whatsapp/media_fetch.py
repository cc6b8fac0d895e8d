"""WAHA media fetched when the message is accepted, not when its turn starts.

WAHA deletes a message's file about 180 s after the message. A turn that starts later (a
backlog behind the conversation's lane, the Rasa servers restarting) would find it gone, so
the webhook records a fetch job as it accepts the message (`MediaFetches.enqueue`: one Redis
call that writes the job to a stream and a "pending" record of the message), and a
`MediaFetcher` in every process serving the webhook (the ingress and each Rasa server) reads
the stream through one consumer group, downloads, checks and stores the file
(`fetch_and_store`: the same limits and host checks as the turn's own fetch) and records the
result under the message, the stored media or the error, for the dedupe window. A fetch read
by a process that died is taken over by another after `media.fetch_claim_seconds`
(XAUTOCLAIM). At most `media.fetch_concurrency` downloads run at once per process.

The turn (connectors/whatsapp/turn.py) reads the record (`MediaFetches.result`): the stored
media, or the error, is used as is; while the fetch is pending it waits for it, up to
`media.fetch_wait_seconds`; with no record (a message accepted before this existed, Meta,
whose media ids stay valid for days) or a fetch still pending after the wait, it fetches
the file itself as before.
"""
import asyncio
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Optional, Set, Tuple

from helpdesk import metrics, redis_keys, whatsapp
from helpdesk.config import ChannelConfig
from helpdesk.whatsapp import InboundMessage, MediaError

logger = logging.getLogger(__name__)

GROUP = "fetchers"
PENDING = "pending"
STORED = "stored"
FAILED = "error"

Fetch = Callable[[InboundMessage], Awaitable[Tuple[bytes, Optional[str]]]]

# KEYS: result record, fetch stream; ARGV: ttl seconds, pending record, message json.
# A message that already has a record (a replayed entry, say) is not fetched again.
_ENQUEUE = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
return 1
"""


def prefetchable(message: InboundMessage) -> bool:
    """A media message whose gateway gave a file URL to fetch."""
    media = message.media
    return message.kind == "media" and media is not None and bool(media.url) and not media.error


async def fetch_and_store(fetch: Fetch, message: InboundMessage, config: ChannelConfig
                          ) -> Dict[str, Any]:
    """Download one message's file (within `media.timeout_seconds`), check its type from its
    bytes and store it; the stored media's dict. Raises MediaError or asyncio.TimeoutError."""
    media = message.media
    if media.error or (not media.url and not media.media_id):
        raise MediaError(f"the gateway has no file: {media.error or 'no url'}")
    data, content_type = await asyncio.wait_for(fetch(message),
                                                timeout=config.media_timeout_seconds)
    # the type is what the bytes are, not what the sender (or the server) says; in a
    # thread, as a 16 MB text file takes a tenth of a second to check
    mime = await asyncio.to_thread(whatsapp.identify, data, media.mime_type or content_type,
                                   config.media_allowed)
    kind = whatsapp.kind_for(mime, media.kind)
    stored = await asyncio.to_thread(whatsapp.store, data, mime, kind, media.filename)
    logger.info("media stored", extra={"kind": kind, "mime_type": mime, "bytes": stored.size,
                                       "sha256": stored.sha256[:12]})
    return stored.to_dict()


def error_record(error: BaseException) -> Dict[str, Any]:
    """What is recorded of a failed fetch: never a media URL (it can carry a signature)."""
    if isinstance(error, MediaError):
        return {"state": FAILED, "error": str(error)[:200], "status": error.status,
                "too_large": error.too_large, "refused": error.refused}
    if isinstance(error, asyncio.TimeoutError):
        return {"state": FAILED, "error": "media download timed out", "status": None,
                "too_large": False, "refused": False}
    return {"state": FAILED, "error": f"unexpected error: {type(error).__name__}",
            "status": None, "too_large": False, "refused": False}


def stored_file_present(record: Dict[str, Any]) -> bool:
    """Whether a stored record's file is here (a process on another host stored it there)."""
    path = (record.get("media") or {}).get("path")
    return bool(path) and whatsapp.in_media_dir(path) and Path(path).is_file()


class MediaFetches:
    """The fetch queue and its records (async Redis client)."""

    def __init__(self, client: Any, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = max(1, int(ttl_seconds))
        self._enqueue = client.register_script(_ENQUEUE)

    async def enqueue(self, message: InboundMessage) -> bool:
        """Record a fetch job for this (recorded) message, in one Redis call; False when it has
        a record already. Does not wait for the download."""
        added = await self._enqueue(
            keys=[redis_keys.media_fetched(message.channel, message.message_id),
                  redis_keys.media_fetches()],
            args=[self.ttl, json.dumps({"state": PENDING, "at": time.time()}),
                  message.to_json()])
        return bool(added)

    async def record(self, message: InboundMessage) -> Optional[Dict[str, Any]]:
        raw = await self.client.get(redis_keys.media_fetched(message.channel, message.message_id))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def result(self, message: InboundMessage, wait_seconds: float,
                     interval: float = 0.1) -> Optional[Dict[str, Any]]:
        """The message's fetch record, waiting up to `wait_seconds` while it is pending: None
        when there is none; a pending one when the wait ran out."""
        deadline = time.monotonic() + wait_seconds
        record = await self.record(message)
        while record is not None and record.get("state") == PENDING \
                and time.monotonic() < deadline:
            await asyncio.sleep(interval)
            record = await self.record(message)
        return record

    async def save(self, message: InboundMessage, record: Dict[str, Any], entry_id: str) -> None:
        """Record a fetch's outcome and finish its job, in one transaction."""
        stream = redis_keys.media_fetches()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(redis_keys.media_fetched(message.channel, message.message_id),
                     json.dumps(record, ensure_ascii=False), ex=self.ttl)
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            # media_downloads_total{outcome}: counted with the record, so once per fetch
            pipe.hincrby(redis_keys.counters(), metrics.media_field(
                metrics.STORED if record.get("state") == STORED else metrics.NOT_STORED,
                message.channel), 1)
            await pipe.execute()

    async def drop(self, entry_id: str) -> None:
        stream = redis_keys.media_fetches()
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()

    async def ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(redis_keys.media_fetches(), GROUP, id="0",
                                            mkstream=True)
        except Exception as error:  # BUSYGROUP: it exists already
            if "BUSYGROUP" not in str(error):
                raise


class MediaFetcher:
    """Reads the fetch queue and runs the downloads, at most `media.fetch_concurrency` at
    once; first what a dead process left (idle past `media.fetch_claim_seconds`), then new
    jobs. `fetchers` maps a channel name to its gateway's download."""

    def __init__(self, fetches: MediaFetches, config: ChannelConfig,
                 fetchers: Dict[str, Fetch], block_ms: int = 1000) -> None:
        self.fetches = fetches
        self.client = fetches.client
        self.config = config
        self.fetchers = fetchers
        self.block_ms = block_ms
        self._stopping = False
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: Optional[asyncio.Task] = None
        self._running: Set[asyncio.Task] = set()
        self._handling: Set[str] = set()  # entry ids this process is fetching

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop reading; downloads under way finish (a job cut short is taken over later)."""
        if self._task is not None:
            # the loop ends by itself after its read (at most `block_ms`): a task cancelled
            # inside redis-py's blocking read can wait for good (redis 4.6), so it is cancelled
            # only when it did not end, and not waited for long then
            self._stopping = True
            task, self._task = self._task, None
            await asyncio.wait({task}, timeout=self.block_ms / 1000 + 2)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=2)
            self._stopping = False
        if self._running:
            await asyncio.wait(set(self._running), timeout=self.config.media_timeout_seconds)

    async def _loop(self) -> None:
        ready = False
        while not self._stopping:
            try:
                if not ready:
                    await self.fetches.ensure_group()
                    ready = True
                free = self.config.media_fetch_concurrency - len(self._running)
                if free <= 0:
                    await asyncio.wait(set(self._running), timeout=self.block_ms / 1000,
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                for entry_id, fields in await self._next(free):
                    self._spawn(entry_id, fields)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if "NOGROUP" in str(error):  # the stream was deleted (a flushed Redis)
                    ready = False
                logger.warning("media fetch queue unavailable: %s", type(error).__name__)
                await asyncio.sleep(1)

    async def _next(self, count: int) -> Any:
        stream = redis_keys.media_fetches()
        claimed = await self.client.xautoclaim(
            stream, GROUP, self.name, int(self.config.media_fetch_claim_seconds * 1000),
            start_id="0-0", count=count)
        # its own slow downloads come back too once idle long enough: not started twice
        entries = [(i, f) for i, f in (claimed[1] if claimed else [])
                   if f and _text(i) not in self._handling]
        if entries:
            logger.info("media fetches taken over from a stopped process",
                        extra={"count": len(entries)})
            return entries
        read = await self.client.xreadgroup(GROUP, self.name, {stream: ">"}, count=count,
                                            block=self.block_ms)
        return [entry for _stream, found in read or [] for entry in found]

    def _spawn(self, entry_id: Any, fields: Dict[Any, Any]) -> None:
        entry = _text(entry_id)
        self._handling.add(entry)
        task = asyncio.ensure_future(self._handle(entry, fields))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _task: self._handling.discard(entry))

    async def _handle(self, entry_id: str, fields: Dict[Any, Any]) -> None:
        raw = fields.get(b"m") or fields.get("m")
        try:
            message = InboundMessage.from_json(raw)
        except Exception:
            logger.error("unreadable media fetch job dropped", extra={"entry": entry_id})
            await self.fetches.drop(entry_id)
            return
        fetch = self.fetchers.get(message.channel)
        if fetch is None:  # a channel this process does not serve: another one fetches it
            logger.warning("media fetch for a channel not served here",
                           extra={"channel": message.channel})
            return
        done = await self.fetches.record(message)
        if done is not None and done.get("state") != PENDING:  # fetched before a takeover
            await self.fetches.drop(entry_id)
            return
        try:
            record: Dict[str, Any] = {"state": STORED,
                                      "media": await fetch_and_store(fetch, message, self.config)}
        except Exception as error:
            record = error_record(error)
            logger.warning("media not fetched", extra={
                "error": record["error"], "status": record["status"],
                "refused": record["refused"], "message_id": message.message_id})
        record["at"] = time.time()
        try:
            await self.fetches.save(message, record, entry_id)
        except Exception:
            # left pending: taken over and fetched again (the file is stored by content)
            logger.exception("media fetch result not recorded")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
