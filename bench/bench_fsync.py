"""Redis durability benchmark: `appendfsync always` against `everysec` (Redis' default, the
baseline) on the WhatsApp webhook's acknowledgement, same machine, same disk, same run
(`make bench-fsync`, issue 12).

The acknowledgement is the webhook's 200: the message recorded in the inbound log
(helpdesk/whatsapp/inbound.py `InboundLog.accept`, one Lua round trip) and then the answer.
With `always` Redis fsyncs the append-only file before it answers that write, so an
acknowledged message survives a power loss; with `everysec` up to about a second of
acknowledged messages (which WAHA and Meta will not redeliver) can be lost.

What it measures, for each policy:

1. webhook acknowledgement latency (p50/p95/p99) and throughput: two throw-away Redis servers
   (`appendonly yes`, one `appendfsync always`, one `everysec`, their directories side by side
   on the disk make run's var/ is on), the real ingress process (`python -m helpdesk.launch
   ingress`) against each, and signed WAHA message webhooks posted at a steady rate by N
   concurrent senders (each message from a new number: no rate limit applies);
2. the raw `accept` round trip straight against each Redis (redis-py's asyncio client), one at
   a time and with the same N concurrent callers, to separate Redis from HTTP.

The machine is shared and noisy: the rounds interleave (always, everysec, always, everysec...)
and the numbers are pooled per policy over the rounds. Everything started is stopped, and
every temporary directory removed, on exit.

    .venv/bin/python bench/bench_fsync.py [--rounds 4] [--senders 8] [--rate 200] [--seconds 10] [--quick]
"""
import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import aiohttp
import redis.asyncio as aioredis

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the project: bench.harness, helpdesk

from bench import harness, stats  # noqa: E402
from bench.harness import WAHA_API_KEY, WAHA_HMAC_KEY, FakeWaha, event_for, post  # noqa: E402
from helpdesk.config import channel_config  # noqa: E402
from helpdesk.launch import free_port, spawn_redis, stack_env, wait_for_port  # noqa: E402
from helpdesk.whatsapp.inbound import ACCEPTED, InboundLog, InboundMessage  # noqa: E402

OUTPUT = BENCH / "results" / "fsync.json"
POLICIES = ("always", "everysec")  # the candidate first, the baseline (Redis' default) second
BASELINE = "everysec"


class Target:
    """One policy: its Redis and the ingress in front of it."""

    def __init__(self, policy: str, work: Path, cleanup: harness.Cleanup, fake: FakeWaha) -> None:
        self.policy = policy
        self.work = work
        self.cleanup = cleanup
        self.fake = fake
        self.password = secrets.token_urlsafe(16)  # given on stdin, not in ps
        self.redis_port = free_port()
        self.ingress_port = free_port()
        self.redis_url = f"redis://:{self.password}@{harness.LOOPBACK}:{self.redis_port}/0"
        self.ingress_log = work / "ingress.log"
        self.ingress: Any = None

    def start(self) -> None:
        (self.work / "redis").mkdir(parents=True)
        self.cleanup.process(f"redis-{self.policy}", spawn_redis(
            self.redis_port, self.work / "redis", self.password, persistent=True,
            appendfsync=self.policy,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))
        if not wait_for_port(self.redis_port, 10):
            raise harness.StartupError(f"the {self.policy} Redis did not start")
        env = harness.quiet_env(stack_env(
            {**os.environ, "WAHA_BASE_URL": f"http://127.0.0.1:{self.fake.port}",
             "WAHA_API_KEY": WAHA_API_KEY, "WAHA_WEBHOOK_HMAC_KEY": WAHA_HMAC_KEY,
             "WAHA_SESSION": "default"},
            redis_url=self.redis_url, rasa_port=free_port(), actions_port=free_port(),
            work_dir=self.work, model=harness.MODEL, auth_token=harness.AUTH_TOKEN,
        ))
        env["INGRESS_PORT"] = str(self.ingress_port)
        self.ingress = harness._launch("ingress", env, self.ingress_log, self.cleanup,
                                       label=f"ingress-{self.policy}")

    def wait(self) -> None:
        harness.wait_http(f"{self.base}/health", 90, self.ingress, self.ingress_log)

    @property
    def base(self) -> str:
        return f"http://{harness.LOOPBACK}:{self.ingress_port}"

    @property
    def webhook(self) -> str:
        return f"{self.base}/webhooks/waha/webhook"


def new_number() -> str:
    return f"549{uuid.uuid4().int % 10**10:010d}"


async def webhook_round(target: Target, senders: int, rate: float, seconds: float,
                        session: aiohttp.ClientSession) -> harness.Result:
    """`senders` concurrent senders, together `rate` webhooks a second for `seconds`: each
    sender posts on its own schedule (a late post goes at once, the schedule is kept)."""
    result = harness.Result()
    interval = senders / rate
    count = max(1, int(rate * seconds / senders))

    async def sender(index: int) -> None:
        start = time.perf_counter() + interval * index / senders  # spread over the interval
        for k in range(count):
            delay = start + k * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.requests += 1
            try:
                result.latencies_ms.append(await post(session, target.webhook,
                                                      event_for(new_number(), "hola")))
            except Exception as error:  # a non-200, a timeout, a reset: all failures
                result.failures.append(f"{type(error).__name__}: {error}")

    started = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    result.wall_s = time.perf_counter() - started
    return result


def message() -> InboundMessage:
    number = new_number()
    return InboundMessage(channel="waha", message_id=f"false_{number}@c.us_{uuid.uuid4().hex[:20].upper()}",
                          conversation_id=f"{number}@c.us", chat_id=f"{number}@c.us",
                          kind="text", text="hola", phone=number)


async def accept_round(log: InboundLog, count: int, concurrency: int) -> harness.Result:
    """`count` accepts by `concurrency` callers, each one after the other (closed loop)."""
    result = harness.Result()
    per_caller = max(1, count // concurrency)

    async def caller() -> None:
        for _ in range(per_caller):
            result.requests += 1
            started = time.perf_counter()
            outcome, _ = await log.accept(message())
            elapsed = (time.perf_counter() - started) * 1000
            if outcome != ACCEPTED:
                result.failures.append(outcome)
            result.latencies_ms.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def merge(results: List[harness.Result]) -> harness.Result:
    merged = harness.Result()
    for part in results:
        merged.requests += part.requests
        merged.latencies_ms += part.latencies_ms
        merged.failures += part.failures
        merged.wall_s += part.wall_s
    return merged


def brief(result: harness.Result) -> Dict[str, Any]:
    lat = result.latencies_ms
    return {
        "requests": result.requests, "failures": len(result.failures),
        "failure_samples": result.failures[:5],
        "per_s": round(result.requests / result.wall_s, 1) if result.wall_s else None,
        "p50_ms": stats.rnd(stats.percentile(lat, 50)), "p95_ms": stats.rnd(stats.percentile(lat, 95)),
        "p99_ms": stats.rnd(stats.percentile(lat, 99)),
        "mean_ms": stats.rnd(statistics.fmean(lat)) if lat else None,
        "max_ms": stats.rnd(max(lat)) if lat else None,
    }


async def aof_fsyncs(client: Any) -> Dict[str, Any]:
    """What Redis says of its append-only file: the policy, the fsyncs that were late."""
    info = await client.info("persistence")
    config = await client.config_get("appendfsync")
    return {"appendfsync": config.get("appendfsync"), "aof_enabled": info.get("aof_enabled"),
            "aof_delayed_fsync": info.get("aof_delayed_fsync"),
            "aof_last_write_status": info.get("aof_last_write_status")}


async def measure(args: argparse.Namespace, cleanup: harness.Cleanup) -> Dict[str, Any]:
    root = Path(args.dir) if args.dir else harness.PROJECT / "var"
    root.mkdir(parents=True, exist_ok=True)
    work = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-fsync-", dir=root)))
    fake = FakeWaha()
    await fake.start()
    targets = {policy: Target(policy, work / policy, cleanup, fake) for policy in POLICIES}
    clients: Dict[str, Any] = {}
    try:
        for target in targets.values():
            target.start()
        for target in targets.values():
            target.wait()
        config = channel_config()
        logs = {}
        for policy, target in targets.items():
            clients[policy] = aioredis.Redis.from_url(target.redis_url, socket_timeout=10)
            logs[policy] = InboundLog(clients[policy], config.dedupe_ttl_seconds, config.rate_messages,
                                      config.rate_window_seconds, config.rate_cooldown_seconds,
                                      config.inbound_partitions)
        webhook: Dict[str, List[harness.Result]] = {p: [] for p in POLICIES}
        raw_one: Dict[str, List[harness.Result]] = {p: [] for p in POLICIES}
        raw_many: Dict[str, List[harness.Result]] = {p: [] for p in POLICIES}
        async with harness.session_for(args.senders, 30) as session:
            for policy, target in targets.items():  # warm-up: connections, scripts, the AOF file
                await webhook_round(target, args.senders, args.rate, 1, session)
                await accept_round(logs[policy], 50, 1)
            for number in range(args.rounds):
                for policy, target in targets.items():  # interleaved: always, everysec, ...
                    hook = await webhook_round(target, args.senders, args.rate, args.seconds, session)
                    one = await accept_round(logs[policy], args.accepts, 1)
                    many = await accept_round(logs[policy], args.accepts, args.senders)
                    webhook[policy].append(hook)
                    raw_one[policy].append(one)
                    raw_many[policy].append(many)
                    h, o, m = brief(hook), brief(one), brief(many)
                    print(f"round {number + 1} {policy:>8}: webhook p50 {h['p50_ms']} p99 {h['p99_ms']} ms "
                          f"{h['per_s']}/s ({h['failures']} failed); accept alone p50 {o['p50_ms']} "
                          f"p99 {o['p99_ms']} ms; accept x{args.senders} p50 {m['p50_ms']} p99 "
                          f"{m['p99_ms']} ms {m['per_s']}/s", flush=True)
        results: Dict[str, Any] = {}
        for policy in POLICIES:
            results[policy] = {
                "webhook": brief(merge(webhook[policy])),
                "webhook_rounds_p99_ms": [brief(r)["p99_ms"] for r in webhook[policy]],
                "accept_one_at_a_time": brief(merge(raw_one[policy])),
                f"accept_{args.senders}_concurrent": brief(merge(raw_many[policy])),
                "redis": await aof_fsyncs(clients[policy]),
                "ingress_log_errors": harness.log_errors(targets[policy].ingress_log),
            }
        return results
    finally:
        for client in clients.values():
            await client.close()
        await fake.stop()


def side_by_side(results: Dict[str, Any], senders: int) -> List[str]:
    rows = [f"{'':34}{'always':>12}{'everysec':>12}{'ratio':>8}"]
    for part, label in (("webhook", "webhook ack"), ("accept_one_at_a_time", "accept, one at a time"),
                        (f"accept_{senders}_concurrent", f"accept, {senders} concurrent")):
        for key in ("p50_ms", "p95_ms", "p99_ms", "per_s"):
            a, b = results["always"][part][key], results[BASELINE][part][key]
            ratio = f"{a / b:.2f}x" if a is not None and b else "-"
            rows.append(f"{label + ' ' + key:34}{a!s:>12}{b!s:>12}{ratio:>8}")
    return rows


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per policy (interleaved)")
    parser.add_argument("--senders", type=int, default=8, help="concurrent webhook senders")
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks a second, all senders together")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of webhooks a round")
    parser.add_argument("--accepts", type=int, default=1000, help="raw accepts a round, each way")
    parser.add_argument("--dir", help="where the two Redis directories go (default: the project's var/, "
                                      "the disk make run's Redis writes to)")
    parser.add_argument("--quick", action="store_true", help="small numbers, a smoke test")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.senders, args.rate, args.seconds, args.accepts = 1, 2, 20.0, 1.0, 20
    return args


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    started = time.time()
    load_before = harness.load_average()
    results = harness.run_benchmark("bench_fsync", measure, args)
    if results is None:
        return 2
    print("\n== side by side (pooled over the rounds; everysec is the baseline)")
    for row in side_by_side(results, args.senders):
        print("  " + row)
    failures = sum(results[p][part]["failures"] for p in POLICIES
                   for part in ("webhook", "accept_one_at_a_time", f"accept_{args.senders}_concurrent"))
    document = {
        "benchmark": "bench/bench_fsync.py",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": harness.load_average()},
        "settings": {"rounds": args.rounds, "senders": args.senders, "rate_per_s": args.rate,
                     "seconds_per_round": args.seconds, "accepts_per_round": args.accepts},
        "results": results, "failures": failures,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"  written {args.output}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
