"""Whole-server turn latency against history (`make bench-history`, after bench_history.py):
our Rasa server (NLU, policies, action server, our tracker store) beside stock `rasa init`
(its default in-memory store), same machine, same run.

For each server and each history (10, 1,000 and 10,000 past events, in one session and spread
over 100 sessions) a conversation is given that history through the HTTP API
(`POST /conversations/<id>/tracker/events`, in batches), made of the events of a real turn of
that server repeated (so Rasa reads what it wrote), all stamped within the last minutes so
that no session expires. Then `--turns` turns are sent through the REST channel one after the
other and timed. Meanwhile a probe asks the server's `/` every 10 ms: its worst wait is the
longest the server's event loop was held (by NLU and policies at every size; anything more at
a larger size is the history).

    bench_history_server.py [--turns N] [--sizes 10,1000,10000] [--keep]

Prints a table; results go to bench/results/history_server.json.
"""
import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import aiohttp
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the project: bench.harness, helpdesk

from bench import harness, stats  # noqa: E402

OUTPUT = BENCH / "results" / "history_server.json"
LAYOUTS = (("one session", 1), ("100 sessions", 100))
BATCH = 1000
PROBE_EVERY_S = 0.01


def _headers(bot: harness.Bot) -> Dict[str, str]:
    return harness.api_headers() if bot.name == "ours" else {}


async def say(session: aiohttp.ClientSession, bot: harness.Bot, sender: str, text: str) -> float:
    started = time.perf_counter()
    async with session.post(bot.webhook, json={"sender": sender, "message": text},
                            headers=bot.rest_headers) as answer:
        body = await answer.json(content_type=None)
        if answer.status != 200 or not body:
            raise RuntimeError(f"{bot.name}: turn failed: HTTP {answer.status} {body!r:.200}")
    return (time.perf_counter() - started) * 1000


async def events_of(session: aiohttp.ClientSession, bot: harness.Bot,
                    sender: str) -> List[Dict[str, Any]]:
    async with session.get(f"{bot.url}/conversations/{sender}/tracker",
                           headers=_headers(bot)) as answer:
        return (await answer.json())["events"]


async def learn_turn(session: aiohttp.ClientSession, bot: harness.Bot, text: str
                     ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """A real turn of this server: the session start's events and one turn's events."""
    sender = f"learn-{uuid.uuid4().hex[:8]}"
    await say(session, bot, sender, text)
    events = await events_of(session, bot, sender)
    user = next(i for i, e in enumerate(events) if e["event"] == "user")
    return events[:user], events[user:]


def history(size: int, sessions: int, start: List[Dict[str, Any]],
            turn: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """About `size` events (whole turns, at most `size`): `sessions` sessions of repeated
    turns, stamped one ms apart and ending now."""
    per_session = max(1, (size // sessions - len(start)) // len(turn))
    template: List[Dict[str, Any]] = []
    for _ in range(sessions):
        template += start + turn * per_session
    while len(template) + len(turn) <= size:
        template += turn  # the rest in the last session
    now = time.time()
    events = []
    for index, original in enumerate(template):
        event = dict(original, timestamp=now - (len(template) - index) * 0.001)
        if event["event"] == "user":
            event["message_id"] = uuid.uuid4().hex
        events.append(event)
    return events


async def seed(session: aiohttp.ClientSession, bot: harness.Bot, sender: str,
               events: List[Dict[str, Any]]) -> float:
    started = time.perf_counter()
    for offset in range(0, len(events), BATCH):
        async with session.post(f"{bot.url}/conversations/{sender}/tracker/events",
                                json=events[offset:offset + BATCH], headers=_headers(bot)) as answer:
            if answer.status != 200:
                raise RuntimeError(f"{bot.name}: seeding failed: HTTP {answer.status} "
                                   f"{(await answer.text())[:300]}")
    return time.perf_counter() - started


async def probe(session: aiohttp.ClientSession, bot: harness.Bot, waits: List[float],
                stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{bot.url}/") as answer:
            await answer.read()
        waits.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(PROBE_EVERY_S)


async def measure_bot(bot: harness.Bot, text: str, sizes: List[int], turns: int
                      ) -> Dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=600)
    results: Dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            aiohttp.ClientSession(timeout=timeout) as probing:
        for _ in range(5):  # warm-up
            await say(session, bot, f"warm-{uuid.uuid4().hex[:8]}", text)
        start, turn = await learn_turn(session, bot, text)
        for layout, sessions in LAYOUTS:
            for size in sizes:
                if sessions > 1 and size < 1000:
                    continue  # 10 events cannot be 100 sessions
                sender = f"hist-{size}-{sessions}-{uuid.uuid4().hex[:8]}"
                seeded_in = await seed(session, bot, sender, history(size, sessions, start, turn))
                stored = len(await events_of(session, bot, sender))
                waits: List[float] = []
                stop = asyncio.Event()
                prober = asyncio.create_task(probe(probing, bot, waits, stop))
                latencies = [await say(session, bot, sender, text) for _ in range(turns)]
                stop.set()
                await prober
                key = f"{size} / {layout}"
                results[key] = {
                    "events": size, "sessions": sessions, "stored_events": stored,
                    "seeded_s": round(seeded_in, 1), "turns": turns,
                    "p50_ms": stats.rnd(stats.percentile(latencies, 50)),
                    "p95_ms": stats.rnd(stats.percentile(latencies, 95)),
                    "probe_max_ms": stats.rnd(max(waits)) if waits else None,
                    "probe_p99_ms": stats.rnd(stats.percentile(waits, 99)) if waits else None,
                }
                print(f"   {bot.name:8s} {key:22s} p50 {results[key]['p50_ms']:>8} ms  p95 "
                      f"{results[key]['p95_ms']:>8} ms  loop held ≤ {results[key]['probe_max_ms']} ms"
                      f"  (seeded {stored} events in {seeded_in:.1f} s)", flush=True)
    return results


async def measure(args: argparse.Namespace, cleanup: harness.Cleanup) -> Dict[str, Any]:
    base_dir = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-rasa-init-")))
    ours_dir = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-history-server-")))
    print(f"== starting {' and '.join(args.bots)}", flush=True)
    bots = []
    # ours loads its model while stock rasa init trains
    ours = harness.start_ours(ours_dir, cleanup, []) if "ours" in args.bots else None
    if "baseline" in args.bots:
        await asyncio.to_thread(harness.train_baseline, base_dir, cleanup, 900)
        baseline = harness.start_baseline(base_dir, cleanup)
    if ours is not None:
        await asyncio.to_thread(harness.wait_ours, ours)
        bots.append((ours, "hola"))
    if "baseline" in args.bots:
        await asyncio.to_thread(harness.wait_baseline, baseline)
        bots.append((baseline, "hi"))
    results: Dict[str, Any] = {}
    # one at a time: the other server idles meanwhile, so the two share no core
    for bot, text in bots:
        print(f"== {bot.name}: {args.turns} turns after each history", flush=True)
        results[bot.name] = await measure_bot(bot, text, args.sizes, args.turns)
        if bot.name == "ours":
            results["ours"]["log_errors"] = harness.log_errors(bot.log)
    return results


def _window_events() -> Any:
    store = yaml.safe_load((harness.PROJECT / "endpoints.yml").read_text())["tracker_store"]
    return store.get("window_events")


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=30, help="timed turns per history")
    parser.add_argument("--sizes", default="10,1000,10000", help="past events")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--bots", default="ours,baseline",
                        help="which servers: ours, baseline (stock rasa init) or both")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    args.sizes = [int(x) for x in str(args.sizes).split(",") if x]
    args.bots = [x for x in str(args.bots).split(",") if x in ("ours", "baseline")]
    if not args.bots:
        parser.error("--bots: ours, baseline or both")
    return args


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    started = time.time()
    results = harness.run_benchmark("bench_history_server", measure, args)
    if results is None:
        return 2
    print("\n== summary: p50 / p95 turn, worst loop hold (ms); ratio to the 10-event case")
    for name in results:
        rows = {k: v for k, v in results[name].items() if k != "log_errors"}
        first = next(iter(rows.values()))
        for key, row in rows.items():
            ratio = row["p50_ms"] / first["p50_ms"] if first["p50_ms"] else None
            print(f"  {name:8s} {key:22s} {row['p50_ms']:>8} / {row['p95_ms']:>8} / "
                  f"{row['probe_max_ms']:>7}   p50 ×{ratio:.2f}")
    document = {
        "benchmark": "bench/bench_history_server.py",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"turns": args.turns, "sizes": args.sizes, "bots": args.bots,
                     "window_events": _window_events()},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    print(f"  written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
