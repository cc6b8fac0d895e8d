"""Turn cost against history (`make bench-history`): the tracker stores side by side, one run.

For each store (Rasa's `InMemoryTrackerStore`, stock `rasa init`'s default; Rasa's
`RedisTrackerStore`, this project's store before; Rasa's `SQLTrackerStore` on SQLite; and
`helpdesk.trackers.EventLogTrackerStore`, the one kept, also with every read from Redis, as
when another Rasa server or a restart came between two turns) and each history (10, 1,000 and
10,000 past events, in one session and spread over 100 sessions), a conversation is filled
with that history, then timed for `--turns` turns as Rasa's processor does a turn: read the
tracker, add a turn's events (a user message, two actions, a slot, a reply, listening), save.
A 1 ms ticker runs on the same event loop meanwhile; its worst lateness is the longest the
store held the loop (the other conversations' turns and the consumer's heartbeat wait that
long). The project's domain (domain.yml) gives the slots. Redis is a throw-away redis-server.

    bench_history.py [--turns N] [--sizes 10,1000,10000]

Prints a table; results go to bench/results/history.json. The turn of the whole server (NLU,
policies, actions) adds the same work at every size on top of these numbers.
"""
import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from rasa.core.tracker_store import (  # noqa: E402
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
)
from rasa.shared.core.domain import Domain  # noqa: E402
from rasa.shared.core.events import (  # noqa: E402
    ActionExecuted,
    BotUttered,
    Event,
    SessionStarted,
    SlotSet,
    UserUttered,
)

from bench.stats import percentile, rnd  # noqa: E402
from helpdesk.launch import free_port, spawn_redis, wait_for_port  # noqa: E402
from helpdesk.trackers import EventLogTrackerStore  # noqa: E402

RESULTS = PROJECT / "bench" / "results" / "history.json"
TURN_EVENTS = 6


def turn_events(number: int, stamp: Callable[[], float]) -> List[Event]:
    return [UserUttered(f"hola {number}", {"name": "greet", "confidence": 0.99},
                        timestamp=stamp(), message_id=f"m{number}"),
            ActionExecuted("action_ticket_status", timestamp=stamp()),
            SlotSet("ticket_number", str(number), timestamp=stamp()),
            ActionExecuted("utter_greet", timestamp=stamp()),
            BotUttered(f"respuesta {number}", timestamp=stamp()),
            ActionExecuted("action_listen", timestamp=stamp())]


def session_events(stamp: Callable[[], float]) -> List[Event]:
    return [ActionExecuted("action_session_start", timestamp=stamp()),
            SessionStarted(timestamp=stamp()),
            ActionExecuted("action_listen", timestamp=stamp())]


def history(size: int, sessions: int, stamp: Callable[[], float]) -> List[Event]:
    """About `size` events in `sessions` sessions of turns."""
    events: List[Event] = []
    per_session = max(TURN_EVENTS, size // sessions)
    number = 0
    for _ in range(sessions):
        session = session_events(stamp)
        while len(session) + TURN_EVENTS <= per_session:
            session += turn_events(number, stamp)
            number += 1
        events += session
    return events


class Ticker:
    """A 1 ms sleep loop on the event loop; the worst lateness seen."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._running = True

    async def run(self) -> None:
        while self._running:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    def stop(self) -> None:
        self._running = False


async def measure(store: Any, sender: str, past: List[Event], turns: int,
                  cold: bool = False) -> Dict[str, Any]:
    """`cold`: the store forgets what its last save left before each read (as when another
    Rasa server handled the conversation's previous turn, or after a restart)."""
    clock = [past[-1].timestamp if past else time.time()]

    def stamp() -> float:
        clock[0] += 0.01
        return clock[0]

    seeded = store.init_tracker(sender)
    for event in past:
        seeded.update(event)
    await store.save(seeded)
    ticker = Ticker()
    task = asyncio.ensure_future(ticker.run())
    await asyncio.sleep(0.01)
    ticker.worst = 0.0
    times = []
    for number in range(turns):
        if cold:
            store._latest.clear()
        started = time.perf_counter()
        tracker = await store.retrieve(sender)
        for event in turn_events(100_000 + number, stamp):
            tracker.update(event)
        await store.save(tracker)
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.002)  # a gap between turns, as between messages
    ticker.stop()
    await task
    return {"p50_ms": rnd(percentile(times, 50)), "p95_ms": rnd(percentile(times, 95)),
            "loop_stall_ms": rnd(ticker.worst * 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--sizes", default="10,1000,10000")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    domain = Domain.load(str(PROJECT / "domain.yml"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-history-"))
    port, password = free_port(), secrets.token_urlsafe(16)
    (workdir / "redis").mkdir()
    redis = spawn_redis(port, workdir / "redis", password, stdout=subprocess.DEVNULL)
    try:
        if not wait_for_port(port, 10):
            print("redis-server did not start", file=sys.stderr)
            return 1
        address = dict(host="127.0.0.1", port=port, db=0, password=password)
        stores = {
            "rasa in-memory (stock rasa init)": lambda: InMemoryTrackerStore(domain),
            "rasa redis (before)": lambda: RedisTrackerStore(domain, **address, key_prefix="rasa"),
            "rasa sql (sqlite)": lambda: SQLTrackerStore(
                domain, dialect="sqlite", db=str(workdir / "trackers.sqlite3")),
            "ours (kept)": lambda: EventLogTrackerStore(domain=domain, **address),
            "ours, read from Redis every turn": lambda: EventLogTrackerStore(domain=domain, **address),
        }
        results: Dict[str, Any] = {}
        print(f"{'store':34} {'history':>16} {'p50 ms':>8} {'p95 ms':>8} {'stall ms':>9}")
        for name, make in stores.items():
            for sessions in (1, 100):
                for size in sizes:
                    if sessions > 1 and size < 100 * TURN_EVENTS:
                        continue
                    start = [1_600_000_000.0]

                    def stamp() -> float:
                        start[0] += 0.01
                        return start[0]

                    past = history(size, sessions if size >= 100 * TURN_EVENTS else 1, stamp)
                    store = make()
                    sender = f"{name}-{sessions}-{size}".replace(" ", "_")
                    outcome = asyncio.run(measure(store, sender, past, args.turns,
                                                  cold=name.startswith("ours, read")))
                    label = f"{len(past)} ev / {sessions} sess"
                    results.setdefault(name, {})[label] = outcome
                    print(f"{name:34} {label:>16} {outcome['p50_ms']:>8} {outcome['p95_ms']:>8} "
                          f"{outcome['loop_stall_ms']:>9}", flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"turns": args.turns, "results": results}, indent=2))
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
