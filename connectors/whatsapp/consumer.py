"""The consumer of the inbound log, inside the Rasa server process.

The log is split into partitions, a conversation always in the same one. Each Rasa server
holds leases on a fair share of them (`helpdesk.whatsapp.Leases`: the partitions divided by the
servers running) and reads only those, so with any number of servers a conversation is read by
one server at a time. Inside a server one lane per conversation runs its messages one at a
time, in order, different conversations at once up to a limit; an entry is acknowledged only
when its turn is done.

A partition changes hands in two ways, and neither lets a conversation run in two places or out
of order:
- a server gives a partition up (another server started, so its share shrank) by no longer
  reading it and releasing the lease only when its turns of it are done;
- a server that dies stops renewing its leases; when one expires another server takes the
  partition and first runs the entries the dead one left pending, oldest first, before reading
  anything newer. The channel checks the tracker, so a turn that already ran is not run twice.
Before each turn the server checks that it still holds the lease; a lease lost (a server
stalled longer than the lease) drops what it had queued of that partition to the new holder.

A turn that fails or overruns its deadline is tried again after growing waits, the
conversation's later messages behind it; one that still fails, or whose turn was started
`max_starts` times without finishing (it takes the server down), is parked: moved to the
parked log for a person (`python -m workers.dead_letters inbound`), and the lane goes on. A turn
that could not run because the action server is out of reach (`TurnDeferred`) is not a failure:
it is run again every `outage_retry_seconds` until the action server answers.
"""
import asyncio
import logging
import os
import socket
import time
from collections import deque
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple

from helpdesk import metrics, whatsapp
from helpdesk.config import ChannelConfig
from helpdesk.whatsapp import InboundMessage

logger = logging.getLogger(__name__)

Handler = Callable[[List[InboundMessage], bool], Awaitable[None]]
# told of a message parked (message, reason, parked id): the user and the support team
ParkedHandler = Callable[[InboundMessage, str, str], Awaitable[None]]
Entry = Tuple[int, str, InboundMessage, bool]  # partition, entry id, message, recovered

HEARTBEAT_SECONDS = 5  # at most: a third of the lease when that is shorter
BALANCE_SECONDS = 1  # at most: a fifth of the lease when that is shorter
READ_BLOCK_MS = 500
CLAIM_BATCH = 200
MAX_IN_FLIGHT = 2000
# the `process` label of this server's turn latency: by host, not by pid, so a restart does
# not start a new series in Redis
TURN_PROCESS = metrics.process_name("rasa")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class InboundConsumer:
    def __init__(self, client: Any, handler: Handler, config: ChannelConfig,
                 name: Optional[str] = None, on_parked: Optional[ParkedHandler] = None) -> None:
        self.client = client
        self.handler = handler
        self.on_parked = on_parked
        self.config = config
        self.name = name or consumer_name()
        self.partitions = config.inbound_partitions
        self.leases = whatsapp.Leases(client, self.name, config.lease_seconds)
        self._streams = {whatsapp.stream(p): p for p in [whatsapp.LEGACY, *range(self.partitions)]}
        self._held: Set[int] = set()  # partitions whose lease this server holds
        self._reading: Set[int] = set()  # of those, the ones read (the rest are being given up)
        self._servers = 1
        self._legacy_done = False
        self._last_idle_claim = time.monotonic()
        self._lanes: Dict[str, Deque[Entry]] = {}
        self._lane_tasks: Dict[str, asyncio.Task] = {}
        self._in_flight: Set[Tuple[int, str]] = set()
        self._turns = asyncio.Semaphore(config.max_concurrent_turns)
        self._tasks: List[asyncio.Task] = []
        self._stopping = False
        self._heartbeat_every = min(HEARTBEAT_SECONDS, config.lease_seconds / 3)
        self._balance_every = min(BALANCE_SECONDS, config.lease_seconds / 5)

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="inbound-read"),
            asyncio.create_task(self._heartbeat_loop(), name="inbound-heartbeat"),
        ]

    async def stop(self, grace_seconds: float = 10) -> None:
        """Stop reading; let running turns finish; what is left stays pending and goes, with
        the released leases, to the servers still running (or to the next one started)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        lanes = list(self._lane_tasks.values())
        if lanes:
            done, pending = await asyncio.wait(lanes, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        try:
            for partition in sorted(self._held):
                await self.leases.release(partition)
            await self.leases.leave()
        except Exception:
            logger.info("could not release the inbound leases; they expire by themselves")
        self._held.clear()
        self._reading.clear()

    @property
    def held(self) -> Set[int]:
        """The partitions this server reads now (for tests and the operator's view)."""
        return set(self._reading)

    # reading -------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        await self._wait_for_redis()
        last_balance = 0.0
        while not self._stopping:
            reading: List[int] = []
            try:
                # shares change only here, between reads: a partition given up is never in a
                # read under way when its lease is released
                if time.monotonic() - last_balance >= self._balance_every:
                    last_balance = time.monotonic()
                    await self._balance()
                reading = sorted(self._reading)
                if not reading or len(self._in_flight) >= MAX_IN_FLIGHT:
                    await asyncio.sleep(0.05 if reading else self._balance_every)
                    continue
                answer = await self.client.xreadgroup(
                    whatsapp.GROUP, self.name, {whatsapp.stream(p): ">" for p in reading},
                    count=64, block=READ_BLOCK_MS,
                )
                for stream_name, entries in answer or []:
                    partition = self._streams[_text(stream_name)]
                    if partition not in self._reading:
                        continue  # lost while reading: its new holder takes these over
                    for entry_id, fields in entries:
                        self._dispatch(partition, _text(entry_id), fields, recovered=False)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if "NOGROUP" in str(error):
                    for partition in reading:
                        await whatsapp.ensure_group(self.client, partition)
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
        while not self._stopping:
            await asyncio.sleep(self._heartbeat_every)
            try:
                self._servers = await self.leases.beat()
                for partition in await self.leases.renew(sorted(self._held)):
                    self._lose(partition)
            except Exception:
                logger.warning("inbound heartbeat failed")

    # partitions ----------------------------------------------------------------------
    async def _balance(self) -> None:
        """Hold this server's share of the partitions: give up extras, take free ones."""
        self._servers = await self.leases.beat()
        if not self._legacy_done and not await self._drain_legacy():
            return  # the old single stream first: it holds the oldest messages
        share = -(-self.partitions // max(1, self._servers))
        while len(self._reading) > share:
            partition = max(self._reading)
            self._reading.discard(partition)
            logger.info("giving an inbound partition up to another server",
                        extra={"partition": partition, "servers": self._servers})
        for partition in sorted(self._held - self._reading):
            if not self._busy(partition):
                await self.leases.release(partition)
                self._held.discard(partition)
        for partition in self._free_order():
            if len(self._reading) >= share:
                break
            if partition not in self._held and await self.leases.acquire(partition):
                self._held.add(partition)
                await self._take_over(partition, min_idle_ms=0)
                self._reading.add(partition)
        # entries of ours left pending (an acknowledgement that failed) or read by a server
        # that had lost the lease are claimed back once idle for a lease
        if time.monotonic() - self._last_idle_claim >= self.config.lease_seconds:
            self._last_idle_claim = time.monotonic()
            for partition in sorted(self._reading):
                await self._take_over(partition, min_idle_ms=self.leases.lease_ms)

    def _free_order(self) -> List[int]:
        """Partitions to try, starting at one of this server's own, so that servers starting
        together do not all queue for the same ones."""
        start = whatsapp.partition_of(self.name, self.partitions)
        return [(start + step) % self.partitions for step in range(self.partitions)]

    async def _drain_legacy(self) -> bool:
        """True once the pre-partition stream is gone. Until then only its holder reads it
        and nobody reads partitions (an old message must not be overtaken by a newer one)."""
        legacy = whatsapp.LEGACY
        if legacy not in self._held:
            if not await self.client.exists(whatsapp.stream(legacy)):
                self._legacy_done = True
                return True
            if not await self.leases.acquire(legacy):
                return False
            self._held.add(legacy)
            logger.warning("reading the inbound stream of the previous version until it is "
                           "empty")
            await self._take_over(legacy, min_idle_ms=0)
            self._reading.add(legacy)
            return False
        if self._busy(legacy) or await self.client.xlen(whatsapp.stream(legacy)):
            return False
        await self.client.delete(whatsapp.stream(legacy))
        self._reading.discard(legacy)
        self._held.discard(legacy)
        await self.leases.release(legacy)
        self._legacy_done = True
        return True

    async def _take_over(self, partition: int, min_idle_ms: int) -> None:
        """Run the partition's pending entries (another reader's or ours) idle this long,
        oldest first; at a change of hands (0) that is everything the last reader left."""
        name = whatsapp.stream(partition)
        await whatsapp.ensure_group(self.client, partition)
        start, taken = "0-0", 0
        while True:
            next_id, claimed, *_ = await self.client.xautoclaim(
                name, whatsapp.GROUP, self.name, min_idle_time=min_idle_ms, start_id=start,
                count=CLAIM_BATCH,
            )
            for entry_id, fields in claimed:
                entry_id = _text(entry_id)
                if fields and (partition, entry_id) not in self._in_flight:
                    taken += 1
                    self._dispatch(partition, entry_id, fields, recovered=True)
            start = _text(next_id)
            if start == "0-0":
                break
        if taken:
            logger.warning("took over inbound entries left unfinished",
                           extra={"partition": partition, "entries": taken})
        if min_idle_ms == 0:
            await self._forget_readers(partition)

    async def _forget_readers(self, partition: int) -> None:
        """Remove stopped servers with nothing pending from the partition's group."""
        name = whatsapp.stream(partition)
        running = set(await self.leases.running())
        for reader in await self.client.xinfo_consumers(name, whatsapp.GROUP):
            other = _text(reader["name"])
            if reader["pending"] == 0 and other != self.name and other not in running:
                await self.client.xgroup_delconsumer(name, whatsapp.GROUP, other)

    def _lose(self, partition: int) -> None:
        """The lease is gone (this server stalled past it): what was queued here of the
        partition is left to its new holder, which takes it over in order."""
        if partition not in self._held:
            return
        logger.warning("lost the lease of an inbound partition", extra={"partition": partition})
        self._held.discard(partition)
        self._reading.discard(partition)
        for lane in self._lanes.values():
            if any(entry[0] == partition for entry in lane):
                kept = [entry for entry in lane if entry[0] != partition]
                for entry in lane:
                    if entry[0] == partition:
                        self._forget(entry)
                lane.clear()
                lane.extend(kept)

    # lanes ---------------------------------------------------------------------------
    def _dispatch(self, partition: int, entry_id: str, fields: Dict[Any, Any],
                  recovered: bool) -> None:
        if (partition, entry_id) in self._in_flight:
            return
        raw = fields.get(b"m") or fields.get("m")
        try:
            message = InboundMessage.from_json(raw)
        except Exception:
            logger.error("unreadable inbound entry parked", extra={"entry": entry_id})
            asyncio.create_task(whatsapp.park(self.client, partition, entry_id, raw,
                                              "unreadable entry"))
            return
        if (fields.get(b"r") or fields.get("r")) in (b"1", "1"):
            message.rate_limited = True  # over the rate limit: recorded, not answered
        self._in_flight.add((partition, entry_id))
        lane = self._lanes.get(message.conversation_id)
        if lane is None:
            lane = self._lanes[message.conversation_id] = deque()
            self._lane_tasks[message.conversation_id] = asyncio.create_task(
                self._run_lane(message.conversation_id, lane)
            )
        lane.append((partition, entry_id, message, recovered))

    def _forget(self, entry: Entry) -> None:
        self._in_flight.discard((entry[0], entry[1]))

    def _busy(self, partition: int) -> bool:
        """Entries of the partition are queued or running here."""
        return any(p == partition for p, _entry_id in self._in_flight)

    async def _run_lane(self, conversation_id: str, lane: Deque[Entry]) -> None:
        try:
            while lane:
                batch = [lane.popleft()]
                if self._debounces(batch[0][2]):
                    await asyncio.sleep(self.config.debounce_ms / 1000)
                    while lane and lane[0][0] == batch[0][0] and self._debounces(lane[0][2]):
                        batch.append(lane.popleft())
                await self._run_turn(batch)
        finally:
            # nothing can be queued between the last check and here: no await in between
            self._lanes.pop(conversation_id, None)
            self._lane_tasks.pop(conversation_id, None)

    def _debounces(self, message: InboundMessage) -> bool:
        return (
            self.config.debounce_ms > 0
            and message.kind == "text"
            and not message.payload
            and not message.opt_word
            and len(message.text) <= self.config.debounce_max_chars
        )

    async def _still_held(self, partition: int) -> bool:
        """Ask Redis, not our own view: a stalled server's view may be stale. A failed
        check is retried (the lane waits) rather than skipping to a later message."""
        while True:
            try:
                return await self.leases.holds(partition)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("could not check the inbound lease; retrying")
                await asyncio.sleep(0.5)

    async def _run_turn(self, batch: List[Entry]) -> None:
        partition = batch[0][0]  # a lane's batch is of one partition
        entry_ids = [entry_id for _p, entry_id, _m, _r in batch]
        messages = [message for _p, _e, message, _r in batch]
        recovered = any(r for _p, _e, _m, r in batch)
        try:
            reason = await self._attempts(partition, entry_ids, messages, recovered)
        except _LeaseLost:
            for entry in batch:
                self._forget(entry)
            self._lose(partition)
            return
        except asyncio.CancelledError:
            # shutting down: leave the entries pending for whoever runs next
            for entry in batch:
                self._forget(entry)
            raise
        try:
            if reason is None:
                await whatsapp.finish(self.client, partition, entry_ids)
            else:
                await self._park(partition, batch, reason)
        except Exception:
            logger.exception("could not acknowledge entries; they will be checked again")
        finally:
            for entry in batch:
                self._forget(entry)

    async def _attempts(self, partition: int, entry_ids: List[str],
                        messages: List[InboundMessage], recovered: bool) -> Optional[str]:
        """Run the turn, again after each wait of `retry_seconds` while it fails or overruns
        its deadline (the lane waits: nothing later overtakes it). None when it ran, else why
        it is given up. A turn that waits for a part to come back (`TurnDeferred`: the action
        server out of reach) is run again every `outage_retry_seconds` for as long as that
        lasts, without counting as a failure."""
        waits = self.config.turn_retry_seconds
        timeout = self.config.turn_timeout_seconds
        error = ""
        attempt, started = 0, False
        while True:
            try:
                async with self._turns:
                    if not await self._still_held(partition):
                        raise _LeaseLost()
                    if not started:
                        started = True
                        starts = await self._retrying(lambda: whatsapp.count_start(
                            self.client, partition, entry_ids))
                        if starts > self.config.max_starts:
                            return (f"its turn was started {starts - 1} times and never "
                                    "finished: the Rasa server stopped during it each time")
                    began = time.monotonic()
                    await asyncio.wait_for(self.handler(messages, recovered), timeout)
                    took = time.monotonic() - began
                # turn_seconds{process}: the turn that ran (a failed one is not a turn)
                await metrics.TURN_SECONDS.observe_async(self.client, took, process=TURN_PROCESS)
                return None
            except _LeaseLost:
                raise
            except TurnDeferred as deferred:
                logger.warning("turn waits and runs again", extra={
                    **self._about(messages, attempt), "reason": deferred.reason,
                    "retry_seconds": self.config.outage_retry_seconds})
                await asyncio.sleep(self.config.outage_retry_seconds)
                recovered = True
                continue
            except asyncio.TimeoutError:
                error = f"the turn ran longer than {timeout:g} s"
                logger.error("turn timed out", extra=self._about(messages, attempt))
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                error = f"{type(failure).__name__}: {failure}"[:300]
                logger.exception("turn failed", extra=self._about(messages, attempt))
            if attempt >= len(waits):
                return f"{len(waits) + 1} attempts failed; the last: {error}"
            await asyncio.sleep(waits[attempt])
            attempt += 1
            recovered = True  # it may have run in part: the tracker and replies are checked

    @staticmethod
    def _about(messages: List[InboundMessage], attempt: int) -> Dict[str, Any]:
        return {"conversation_id": messages[0].conversation_id, "attempt": attempt + 1,
                "message_ids": [m.message_id for m in messages]}

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A Redis call the lane cannot go on without: retried until Redis answers."""
        while True:
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Redis call failed; retrying")
                await asyncio.sleep(0.5)

    async def _park(self, partition: int, batch: List[Entry], reason: str) -> None:
        for _p, entry_id, message, _r in batch:
            parked_id = await whatsapp.park(self.client, partition, entry_id,
                                            message.to_json(), reason)
            logger.error("inbound message parked", extra={
                "conversation_id": message.conversation_id, "message_id": message.message_id,
                "parked_id": parked_id, "reason": reason})
            if self.on_parked is not None:
                try:
                    await self.on_parked(message, reason, parked_id)
                except Exception:
                    logger.exception("nobody told of a parked message")


class TurnDeferred(Exception):
    """Raised by a turn that could not run because a part it needs is out of reach (the
    action server): nothing of it was kept, and it is run again later, however long the
    outage lasts, without counting as a failed attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _LeaseLost(Exception):
    """The partition is another server's now: the turn is left to it."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
