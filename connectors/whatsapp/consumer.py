"""The consumer of the inbound log, inside the Rasa server process.

Reads the stream through a consumer group, runs one lane per conversation (a conversation's
messages one at a time, in order; different conversations at once, up to a limit), and
acknowledges an entry only when its turn is done. Entries of a dead Rasa server (no
heartbeat) are taken over at once; entries idle too long anywhere are taken over too, and
the channel checks the tracker so a turn that already ran is not run twice.
"""
import asyncio
import logging
import os
import socket
import time
from collections import deque
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple

from helpdesk import redis_keys, whatsapp
from helpdesk.config import ChannelConfig
from helpdesk.whatsapp import InboundMessage

logger = logging.getLogger(__name__)

Handler = Callable[[List[InboundMessage], bool], Awaitable[None]]
Entry = Tuple[str, InboundMessage, bool]  # entry id, message, recovered

HEARTBEAT_SECONDS = 5
HEARTBEAT_TTL = 15
RECLAIM_EVERY_SECONDS = 5
MAX_IN_FLIGHT = 2000


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class InboundConsumer:
    def __init__(self, client: Any, handler: Handler, config: ChannelConfig,
                 name: Optional[str] = None) -> None:
        self.client = client
        self.handler = handler
        self.config = config
        self.name = name or consumer_name()
        self._lanes: Dict[str, Deque[Entry]] = {}
        self._lane_tasks: Dict[str, asyncio.Task] = {}
        self._in_flight: Set[str] = set()
        self._turns = asyncio.Semaphore(config.max_concurrent_turns)
        self._tasks: List[asyncio.Task] = []
        self._stopping = False

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="inbound-read"),
            asyncio.create_task(self._heartbeat_loop(), name="inbound-heartbeat"),
        ]

    async def stop(self, grace_seconds: float = 10) -> None:
        """Stop reading; let running turns finish; what is left stays pending for later."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        lanes = list(self._lane_tasks.values())
        if lanes:
            done, pending = await asyncio.wait(lanes, timeout=grace_seconds)
            for task in pending:
                task.cancel()
        try:
            await self.client.delete(redis_keys.consumer_alive(self.name))
        except Exception:
            logger.info("could not clear the consumer heartbeat")

    # reading -------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        await self._wait_for_redis()
        await whatsapp.ensure_group(self.client)
        await self._beat()
        last_reclaim = 0.0
        while not self._stopping:
            try:
                if time.monotonic() - last_reclaim > RECLAIM_EVERY_SECONDS:
                    last_reclaim = time.monotonic()
                    await self._reclaim()
                if len(self._in_flight) >= MAX_IN_FLIGHT:
                    await asyncio.sleep(0.05)
                    continue
                answer = await self.client.xreadgroup(
                    whatsapp.GROUP, self.name, {whatsapp.STREAM: ">"}, count=64, block=1000
                )
                for _stream, entries in answer or []:
                    for entry_id, fields in entries:
                        self._dispatch(_text(entry_id), fields, recovered=False)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if "NOGROUP" in str(error):
                    await whatsapp.ensure_group(self.client)
                    continue
                logger.exception("reading the inbound log failed; retrying")
                await asyncio.sleep(1)

    async def _wait_for_redis(self) -> None:
        while True:
            try:
                await self.client.ping()
                return
            except Exception:
                logger.warning("Redis unreachable; the inbound consumer waits")
                await asyncio.sleep(1)

    async def _heartbeat_loop(self) -> None:
        # beat well within the idle time after which entries may be taken over
        interval = min(HEARTBEAT_SECONDS, max(0.05, self.config.reclaim_idle_seconds / 3))
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                await self._beat()
            except Exception:
                logger.warning("consumer heartbeat failed")

    async def _beat(self) -> None:
        await self.client.set(redis_keys.consumer_alive(self.name), "1", ex=HEARTBEAT_TTL)
        if self._in_flight:
            # entries waiting here for their turn are not idle: claiming them to ourselves
            # resets their idle time, so another live server's XAUTOCLAIM leaves them alone
            await self.client.xclaim(whatsapp.STREAM, whatsapp.GROUP, self.name, min_idle_time=0,
                                     message_ids=list(self._in_flight), justid=True)

    async def _reclaim(self) -> None:
        """Take over entries of consumers that died, and entries idle far too long."""
        consumers = await self.client.xinfo_consumers(whatsapp.STREAM, whatsapp.GROUP)
        for consumer in consumers:
            other = _text(consumer["name"])
            if other == self.name or await self.client.exists(redis_keys.consumer_alive(other)):
                continue
            if consumer["pending"] == 0:
                await self.client.xgroup_delconsumer(whatsapp.STREAM, whatsapp.GROUP, other)
                continue
            pending = await self.client.xpending_range(
                whatsapp.STREAM, whatsapp.GROUP, min="-", max="+", count=500, consumername=other
            )
            ids = [item["message_id"] for item in pending]
            if ids:
                claimed = await self.client.xclaim(
                    whatsapp.STREAM, whatsapp.GROUP, self.name, min_idle_time=0, message_ids=ids
                )
                logger.warning("took over entries of a stopped Rasa server",
                               extra={"consumer": other, "entries": len(claimed)})
                for entry_id, fields in claimed:
                    if fields:
                        self._dispatch(_text(entry_id), fields, recovered=True)
        idle_ms = int(self.config.reclaim_idle_seconds * 1000)
        _next, claimed, *_ = await self.client.xautoclaim(
            whatsapp.STREAM, whatsapp.GROUP, self.name, min_idle_time=idle_ms, count=100
        )
        for entry_id, fields in claimed:
            entry_id = _text(entry_id)
            if fields and entry_id not in self._in_flight:
                logger.warning("took over an entry idle too long", extra={"entry": entry_id})
                self._dispatch(entry_id, fields, recovered=True)

    # lanes ---------------------------------------------------------------------------
    def _dispatch(self, entry_id: str, fields: Dict[Any, Any], recovered: bool) -> None:
        if entry_id in self._in_flight:
            return
        raw = fields.get(b"m") or fields.get("m")
        try:
            message = InboundMessage.from_json(raw)
        except Exception:
            logger.error("unreadable inbound entry dropped", extra={"entry": entry_id})
            asyncio.create_task(whatsapp.finish(self.client, [entry_id]))
            return
        self._dispatch_message(entry_id, message, recovered)

    async def _run_lane(self, conversation_id: str, lane: Deque[Entry]) -> None:
        try:
            while lane:
                batch = [lane.popleft()]
                if self._debounces(batch[0][1]):
                    await asyncio.sleep(self.config.debounce_ms / 1000)
                    while lane and self._debounces(lane[0][1]):
                        batch.append(lane.popleft())
                await self._run_turn(batch)
        finally:
            # nothing can be queued between the last check and here: no await in between
            self._lanes.pop(conversation_id, None)
            self._lane_tasks.pop(conversation_id, None)

    def _dispatch_message(self, entry_id: str, message: InboundMessage, recovered: bool) -> None:
        """Queue a message on its conversation's lane, starting the lane when idle."""
        self._in_flight.add(entry_id)
        lane = self._lanes.get(message.conversation_id)
        if lane is None:
            lane = self._lanes[message.conversation_id] = deque()
            self._lane_tasks[message.conversation_id] = asyncio.create_task(
                self._run_lane(message.conversation_id, lane)
            )
        lane.append((entry_id, message, recovered))

    def _debounces(self, message: InboundMessage) -> bool:
        return (
            self.config.debounce_ms > 0
            and message.kind == "text"
            and not message.payload
            and not message.opt_word
            and len(message.text) <= self.config.debounce_max_chars
        )

    async def _run_turn(self, batch: List[Entry]) -> None:
        entry_ids = [entry_id for entry_id, _m, _r in batch]
        messages = [message for _e, message, _r in batch]
        recovered = any(r for _e, _m, r in batch)
        async with self._turns:
            try:
                await self.handler(messages, recovered)
            except asyncio.CancelledError:
                # shutting down: leave the entries pending for whoever runs next
                for entry_id in entry_ids:
                    self._in_flight.discard(entry_id)
                raise
            except Exception:
                # a turn that fails is logged with its ids, not retried forever
                logger.exception("turn failed", extra={
                    "conversation_id": messages[0].conversation_id,
                    "message_ids": [m.message_id for m in messages],
                })
        try:
            await whatsapp.finish(self.client, entry_ids)
        except Exception:
            logger.exception("could not acknowledge entries; they will be checked again")
        finally:
            for entry_id in entry_ids:
                self._in_flight.discard(entry_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
