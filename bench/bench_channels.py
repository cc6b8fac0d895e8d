"""WhatsApp channel benchmark: the WAHA webhook against a fake WAHA, beside stock `rasa init`
on its REST channel, same machine, same run (`make bench-channels`).

What it measures:

1. webhook acknowledgement latency (POST /webhooks/waha/webhook → 200) at 1, 50 and 200
   concurrent conversations; each conversation sends two messages back to back (the second
   as soon as the first is acknowledged: people send bursts), waits for their replies, and
   goes on with the next two, until it has sent its rounds of the cycle;
2. webhook-in to reply-received latency with one conversation (closed loop: one message,
   wait for the reply at the fake WAHA, next message), the design's "non-LLM turn";
3. sustained messages per second at each level (first post to last reply), checked: every
   conversation must get exactly the replies its messages call for, in order (none lost,
   none twice, none reordered);
4. stock `rasa init` (REST channel, which answers in the HTTP response) at the same levels,
   and both Rasa servers' resident memory;
5. the same levels again with a second Rasa server of ours on the same Redis (the inbound
   partitions shared between the two), with the CPU time our processes spent per message.

The fake WAHA runs in this process (aiohttp.web on loopback, HTTP 201 like WAHA) and records
when each reply arrives. Our stack runs with the default config/channels.yml (read receipts
and typing indicators on: three extra gateway calls a turn). Everything started is stopped,
and every temporary directory removed, on exit.

    .venv/bin/python bench/bench_channels.py [--levels 1,50,200] [--rounds 2] [--quick]
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
from typing import Any, Dict, List

import aiohttp
import redis

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the project: bench.harness, helpdesk

from bench import harness, stats  # noqa: E402
from helpdesk.config import load_channel_config  # noqa: E402
from helpdesk.whatsapp import inbound  # noqa: E402
from bench.harness import (  # noqa: E402
    WAHA_API_KEY, WAHA_CYCLE, WAHA_HMAC_KEY, Expected, FakeWaha, event_for, learn, post,
)

OUTPUT = BENCH / "results" / "channels.json"
BUDGET_ACK_P99_MS = 25.0
BUDGET_TURN_P50_MS = 60.0
BUDGET_RATIO = 3.0


async def turn_latency(fake: FakeWaha, webhook: str, session: aiohttp.ClientSession,
                       expected: Expected, turns: int) -> List[float]:
    """Closed loop, one conversation at a time (a new one each cycle: no rate limit)."""
    latencies = []
    number = None
    for index in range(turns):
        if index % len(WAHA_CYCLE) == 0:
            number = f"549{uuid.uuid4().int % 10**10:010d}"
        chat = f"{number}@c.us"
        text = WAHA_CYCLE[index % len(WAHA_CYCLE)]
        before = len(fake.received[chat])
        wanted = before + len(expected.replies[text])
        started = time.perf_counter()
        await post(session, webhook, event_for(number, text))
        if not await fake.wait_replies(chat, wanted, 30):
            raise RuntimeError("a reply did not arrive in the latency phase")
        latencies.append((fake.received[chat][wanted - 1][0] - started) * 1000)
    return latencies


async def load(fake: FakeWaha, webhook: str, expected: Expected, conversations: int,
               rounds: int, timeout: float) -> Dict[str, Any]:
    """Each conversation, like a user: two messages back to back (the second as soon as the
    first is acknowledged), then it waits for their replies before the next two. Starts are
    spread over the first second, as real conversations do not begin in the same instant."""
    acks: List[float] = []
    numbers = [f"549{uuid.uuid4().int % 10**10:010d}" for _ in range(conversations)]
    messages_each = rounds * len(WAHA_CYCLE)
    connector = aiohttp.TCPConnector(limit=conversations + 10)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def talk(index: int, number: str) -> None:
            await asyncio.sleep(index / max(conversations, 1))
            chat = f"{number}@c.us"
            sent: List[str] = []
            script = WAHA_CYCLE * rounds
            for start in range(0, len(script), 2):
                for text in script[start:start + 2]:
                    acks.append(await post(session, webhook, event_for(number, text)))
                    sent.append(text)
                await fake.wait_replies(chat, len(expected.sequence(sent)), timeout)

        started = time.perf_counter()
        await asyncio.gather(*(talk(i, n) for i, n in enumerate(numbers)))
        wall = time.perf_counter() - started
    await asyncio.sleep(1.0)  # anything arriving twice arrives now
    lost = duplicated = reordered = 0
    for number in numbers:
        got = [t for _, t in fake.received[f"{number}@c.us"]]
        want = expected.sequence(WAHA_CYCLE * rounds)
        if got == want:
            continue
        if len(got) < len(want):
            lost += len(want) - len(got)
        elif len(got) > len(want):
            duplicated += len(got) - len(want)
        elif sorted(got) == sorted(want):
            reordered += 1
        else:
            lost += 1
    messages = conversations * messages_each
    # the spread-out start is not work: leave it out of the rate
    busy = max(wall - 1.0, 1e-6) if conversations > 1 else wall
    return {
        "conversations": conversations, "messages": messages, "wall_s": round(wall, 2),
        "messages_per_s": round(messages / busy, 1),
        "ack_p50_ms": stats.rnd(stats.percentile(acks, 50), 2),
        "ack_p99_ms": stats.rnd(stats.percentile(acks, 99), 2),
        "ack_max_ms": stats.rnd(max(acks), 2),
        "lost": lost, "duplicated": duplicated, "reordered_conversations": reordered,
    }


async def measured_load(ours: harness.Bot, fake: FakeWaha, webhook: str, expected: Expected,
                        level: int, rounds: int) -> Dict[str, Any]:
    """`load`, with the CPU time our processes spent on it, per message."""
    servers = [ours.rasa] + [server.rasa for server in ours.extra["servers"]]
    parts = {"rasa": servers, "actions": [ours.extra["actions"]], "ingress": [ours.extra["ingress"]]}
    before = {name: sum(harness.cpu_seconds(p.pid) for p in processes)
              for name, processes in parts.items()}
    result = await load(fake, webhook, expected, level, rounds, 300)
    for name, processes in parts.items():
        spent = sum(harness.cpu_seconds(p.pid) for p in processes) - before[name]
        result[f"{name}_cpu_ms_per_message"] = round(spent * 1000 / result["messages"], 1)
    result["rasa_servers"] = len(servers)
    return result


def wait_shared(redis_url: str, seconds: float) -> None:
    """Until the inbound partitions' leases are held half by each of the two servers."""
    partitions = load_channel_config(harness.PROJECT / "config" / "channels.yml").inbound_partitions
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            owners = [client.get(inbound.lease_key(p)) for p in range(partitions)]
            if None not in owners and len(set(owners)) == 2 and all(
                    owners.count(o) == partitions // 2 for o in set(owners)):
                return
            time.sleep(0.2)
    finally:
        client.close()
    raise harness.StartupError("the two Rasa servers did not share the inbound partitions")


def start_ours(work: Path, cleanup: harness.Cleanup, fake: FakeWaha) -> harness.Bot:
    return harness.start_ours(work, cleanup, [], ingress=True, extra_env={
        "WAHA_BASE_URL": f"http://127.0.0.1:{fake.port}", "WAHA_API_KEY": WAHA_API_KEY,
        "WAHA_WEBHOOK_HMAC_KEY": WAHA_HMAC_KEY, "WAHA_SESSION": "default"})


async def measure(args: argparse.Namespace, cleanup: harness.Cleanup) -> Dict[str, Any]:
    fake = FakeWaha()
    await fake.start()
    try:
        base_dir = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-rasa-init-")))
        ours_dir = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-channels-")))
        print("== starting our stack with the WAHA channel, and building stock rasa init", flush=True)
        ours = start_ours(ours_dir, cleanup, fake)
        await asyncio.to_thread(harness.train_baseline, base_dir, cleanup, 900)
        baseline = harness.start_baseline(base_dir, cleanup)
        await asyncio.to_thread(harness.wait_ours, ours)
        await asyncio.to_thread(harness.wait_baseline, baseline)
        ingress = f"http://127.0.0.1:{ours.extra['ingress_port']}"
        await asyncio.to_thread(harness.wait_http, f"{ingress}/health", 60, ours.extra["ingress"],
                                ours.extra["ingress_log"])
        base = ingress if args.via == "ingress" else ours.url
        webhook = f"{base}/webhooks/waha/webhook"
        print(f"== webhooks posted to the {args.via}: {webhook}", flush=True)
        results: Dict[str, Any] = {"ours": {"levels": {}}, "baseline": {"levels": {}}}
        async with aiohttp.ClientSession() as session:
            print("== warm-up: learning the replies of the cycle", flush=True)
            expected = await learn(fake, webhook, session)
            for text, replies in expected.replies.items():
                print(f"   {text!r:34s} -> {harness.shorten(' | '.join(replies), 90)}", flush=True)
            warm = await harness.run_conversations(baseline, 1, 10, 60, "warm")
            print(f"   baseline warm-up: {warm.requests} turns, {len(warm.failures)} failed", flush=True)
            print(f"== turn latency, one conversation: {args.turns} turns each", flush=True)
            ours_lat = await turn_latency(fake, webhook, session, expected, args.turns)
        base_lat = await harness.run_one_at_a_time(baseline, args.turns, len(WAHA_CYCLE), 60)
        results["ours"]["turn"] = {"p50_ms": stats.rnd(stats.percentile(ours_lat, 50)),
                                   "p95_ms": stats.rnd(stats.percentile(ours_lat, 95))}
        results["baseline"]["turn"] = {"p50_ms": stats.rnd(stats.percentile(base_lat.latencies_ms, 50)),
                                       "p95_ms": stats.rnd(stats.percentile(base_lat.latencies_ms, 95)),
                                       "failures": len(base_lat.failures)}
        print(f"   ours webhook→reply p50 {results['ours']['turn']['p50_ms']} ms p95 "
              f"{results['ours']['turn']['p95_ms']} ms; baseline REST p50 "
              f"{results['baseline']['turn']['p50_ms']} ms p95 {results['baseline']['turn']['p95_ms']} ms",
              flush=True)
        for level in args.levels:
            print(f"== {level} concurrent conversation(s), {args.rounds} round(s) of {len(WAHA_CYCLE)}",
                  flush=True)
            base = await harness.run_conversations(baseline, level, args.rounds * len(WAHA_CYCLE), 120,
                                                   f"b{level}")
            results["baseline"]["levels"][str(level)] = harness.summary(base)
            mine = await measured_load(ours, fake, webhook, expected, level, args.rounds)
            results["ours"]["levels"][str(level)] = mine
            b = results["baseline"]["levels"][str(level)]
            print(f"   ours: ack p50 {mine['ack_p50_ms']} ms p99 {mine['ack_p99_ms']} ms, "
                  f"{mine['messages_per_s']} msg/s, lost {mine['lost']}, duplicated "
                  f"{mine['duplicated']}, reordered {mine['reordered_conversations']}, "
                  f"Rasa CPU {mine['rasa_cpu_ms_per_message']} ms/msg", flush=True)
            print(f"   baseline: {b['messages_per_s']} msg/s p50 {b['p50_ms']} ms "
                  f"({b['failures']} failed)", flush=True)
        if args.two_servers:
            print("== a second Rasa server on the same Redis: the partitions shared", flush=True)
            second = harness.start_rasa(ours, cleanup)
            await asyncio.to_thread(harness.wait_http, f"{second.url}/status", 300, second.rasa,
                                    second.log, lambda body: bool(body and body.get("model_id")),
                                    harness.api_headers)
            await asyncio.to_thread(wait_shared, ours.extra["env"]["REDIS_URL"], 60)
            results["ours_two_servers"] = {"levels": {}}
            for level in args.levels:
                mine = await measured_load(ours, fake, webhook, expected, level, args.rounds)
                results["ours_two_servers"]["levels"][str(level)] = mine
                print(f"   two servers, {level} conversation(s): {mine['messages_per_s']} msg/s, "
                      f"lost {mine['lost']}, duplicated {mine['duplicated']}, reordered "
                      f"{mine['reordered_conversations']}, Rasa CPU "
                      f"{mine['rasa_cpu_ms_per_message']} ms/msg", flush=True)
        results["ours"]["memory"] = harness.rss_of(ours.rasa.pid)
        results["baseline"]["memory"] = harness.rss_of(baseline.rasa.pid)
        results["ours"]["log_errors"] = harness.log_errors(ours.log)
        return results
    finally:
        await fake.stop()


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,50,200")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--via", choices=("ingress", "rasa"), default="ingress",
                        help="post to the webhook ingress (default) or to the Rasa server's route")
    parser.add_argument("--no-two-servers", dest="two_servers", action="store_false",
                        help="skip the second round with two Rasa servers")
    parser.add_argument("--quick", action="store_true", help="small numbers, a smoke test")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in str(args.levels).split(",") if x]
    if args.quick:
        args.levels, args.rounds, args.turns = [1, 10], 1, 20
    return args


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    started = time.time()
    results = harness.run_benchmark("bench_channels", measure, args)
    if results is None:
        return 2
    checks = {
        "turn_p50_ms": {"value": results["ours"]["turn"]["p50_ms"], "budget": BUDGET_TURN_P50_MS},
        "ack_p99_ms": {level: {"value": r["ack_p99_ms"], "budget": BUDGET_ACK_P99_MS}
                       for level, r in results["ours"]["levels"].items()},
        "throughput_ratio": {
            level: round(r["messages_per_s"] / results["baseline"]["levels"][level]["messages_per_s"], 2)
            for level, r in results["ours"]["levels"].items()
            if results["baseline"]["levels"][level]["messages_per_s"]
        },
        "zero_lost_duplicated_reordered": all(
            r["lost"] == r["duplicated"] == r["reordered_conversations"] == 0
            for part in ("ours", "ours_two_servers")
            for r in results.get(part, {"levels": {}})["levels"].values()
        ),
    }
    print("\n== summary")
    print(f"  turn webhook→reply p50 {checks['turn_p50_ms']['value']} ms (budget < {BUDGET_TURN_P50_MS:.0f})")
    for level, check in checks["ack_p99_ms"].items():
        print(f"  {level:>4} conversations: ack p99 {check['value']} ms (budget < {BUDGET_ACK_P99_MS:.0f}), "
              f"throughput {checks['throughput_ratio'].get(level)}x stock rasa init")
    for level, two in results.get("ours_two_servers", {"levels": {}})["levels"].items():
        one = results["ours"]["levels"][level]
        print(f"  {level:>4} conversations: two Rasa servers {two['messages_per_s']} msg/s "
              f"against one {one['messages_per_s']} ({two['messages_per_s'] / one['messages_per_s']:.2f}x); "
              f"Rasa CPU {two['rasa_cpu_ms_per_message']} against {one['rasa_cpu_ms_per_message']} ms/msg")
    print(f"  zero lost/duplicated/reordered: {checks['zero_lost_duplicated_reordered']}")
    document = {
        "benchmark": "bench/bench_channels.py", "started_at": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"levels": args.levels, "rounds": args.rounds, "turns": args.turns,
                     "cycle": WAHA_CYCLE, "via": args.via, "two_servers": args.two_servers},
        "results": results, "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"  written {args.output}")
    return 0 if checks["zero_lost_duplicated_reordered"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
