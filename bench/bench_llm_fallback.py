"""Slow LLM on the NLU fallback: does it slow anyone else?

The NLU fallback asks the LLM from the action server (actions/nlu_fallback.py), not from an
NLU component on the Rasa server's loop. This benchmark checks what that buys: our stack
(Redis, action server, Rasa server with the WAHA channel, webhook ingress) with LLM_* pointing
at the fake OpenAI-compatible server (tests/fakes/openai_server.py, in this process), whose
intent answers take `--delay` seconds (3 by default).

For each level of concurrent slow fallbacks (0, then the `--slow` levels): 4 ordinary
conversations talk in a closed loop (`--turns` turns each, the cycle bench_channels sends too,
harness.WAHA_CYCLE: greetings, thanks, a status question that goes through the action server
and the ledger, goodbye),
while `slow` other conversations keep sending a message the NLU is unsure of; the LLM
chooses `thank` for it after the delay, so each of those turns takes the delay and more.
Measured: webhook-in to reply-received of the ordinary turns (p50, p95), the webhook
acknowledgement of every post (p50, p95, p99), and the slow turns themselves.

The inbound consumer runs at most `inbound.max_concurrent_turns` turns at once
(config/channels.yml); a turn waiting on the LLM holds its place. So the run is repeated with
that limit at its configured value and at `--wide-limit`, to show where the waiting comes
from. Everything started is stopped, and every temporary directory removed, on exit.

    .venv/bin/python bench/bench_llm_fallback.py [--model models/helpdesk.tar.gz]
        [--slow 2,8] [--delay 3] [--turns 100] [--wide-limit 32] [--quick]
"""
import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import aiohttp
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the project: bench.harness, helpdesk, tests.fakes

from bench import harness, stats  # noqa: E402
from helpdesk.launch import free_port, spawn_redis, stack_env, wait_for_port  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Recorded, Reply  # noqa: E402

OUTPUT = BENCH / "results" / "llm_fallback.json"
NORMAL_CONVERSATIONS = 4
THANKS = "De nada. Quedo atento si necesita algo más."
# messages the NLU may be unsure about; the first one the model is unsure of is used
UNSURE_CANDIDATES = ["y lo mío cómo va", "che y lo que les pasé ayer en qué quedó",
                     "eso que mandé sigue igual", "qué onda con aquello", "mmm bueno no sé"]


class SlowLlm:
    """The fake's intent answers: `thank`, after the delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.fake = FakeOpenAI()
        self.fake.chat.handler = self.chat

    def chat(self, request: Recorded) -> Reply:
        if "clasificar un mensaje" in request.json["messages"][0]["content"]:
            return Reply.slow(self.delay, Reply.json(
                {"intent": "thank", "confidence": 0.9, "entities": []}))
        return Reply.bad_request("bench: only intents are answered")

    def intent_requests(self) -> int:
        return sum(1 for r in self.fake.chat_requests
                   if "clasificar un mensaje" in r.json["messages"][0]["content"])


def config_dir(work: Path, max_turns: Optional[int]) -> Path:
    """config/ with the turn limit set (None: as configured), intent answers not cached (the
    same unsure text must reach the LLM every time) and budgets out of the way."""
    target = work / "config"
    shutil.copytree(harness.PROJECT / "config", target)
    channels_yml = yaml.safe_load((target / "channels.yml").read_text(encoding="utf-8"))
    if max_turns is not None:
        channels_yml["inbound"]["max_concurrent_turns"] = max_turns
    (target / "channels.yml").write_text(yaml.safe_dump(channels_yml, allow_unicode=True),
                                         encoding="utf-8")
    llm = yaml.safe_load((target / "llm.yml").read_text(encoding="utf-8"))
    llm["uses"]["intent"]["cache_ttl_seconds"] = 0
    llm["budgets"]["conversation_tokens"] = 10 ** 9
    llm["budgets"]["monthly_usd"] = 10 ** 9
    (target / "llm.yml").write_text(yaml.safe_dump(llm, allow_unicode=True), encoding="utf-8")
    return target


def configured_turn_limit() -> int:
    data = yaml.safe_load((harness.PROJECT / "config" / "channels.yml").read_text(encoding="utf-8"))
    return int(data["inbound"]["max_concurrent_turns"])


def start_stack(work: Path, cleanup: harness.Cleanup, waha: harness.FakeWaha, llm: SlowLlm,
                model: Path, max_turns: Optional[int]) -> harness.Bot:
    redis_port = free_port()
    (work / "redis").mkdir()
    redis_password = secrets.token_urlsafe(16)  # as make run's own Redis has one
    cleanup.process("redis", spawn_redis(
        redis_port, work / "redis", redis_password,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    if not wait_for_port(redis_port, 10):
        raise harness.StartupError("the benchmark's Redis did not start")
    rasa_port, actions_port, ingress_port = free_port(), free_port(), free_port()
    base = {key: value for key, value in os.environ.items() if not key.startswith("LLM_")}
    env = harness.quiet_env(stack_env(
        {**base, "WAHA_BASE_URL": f"http://127.0.0.1:{waha.port}",
         "WAHA_API_KEY": harness.WAHA_API_KEY, "WAHA_WEBHOOK_HMAC_KEY": harness.WAHA_HMAC_KEY,
         "WAHA_SESSION": "default", "HELPDESK_CONFIG_DIR": str(config_dir(work, max_turns)),
         "LLM_BASE_URL": llm.fake.base_url, "LLM_API_KEY": "sk-bench", "LLM_MODEL": "gpt-4o-mini"},
        redis_url=f"redis://:{redis_password}@127.0.0.1:{redis_port}/0", rasa_port=rasa_port,
        actions_port=actions_port, work_dir=work, model=model, auth_token=harness.AUTH_TOKEN))
    env["INGRESS_PORT"] = str(ingress_port)
    logs = {name: work / f"{name}.log" for name in ("actions", "rasa", "ingress")}
    processes = {}
    for name in ("actions", "rasa", "ingress"):
        with open(logs[name], "wb") as out:
            processes[name] = cleanup.process(name, subprocess.Popen(
                [sys.executable, "-m", "helpdesk.launch", name], cwd=harness.PROJECT, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True))
    bot = harness.Bot("ours", f"http://127.0.0.1:{rasa_port}", processes["rasa"], logs["rasa"], [],
                      extra={"actions": processes["actions"], "actions_port": actions_port,
                             "actions_log": logs["actions"], "ingress_port": ingress_port,
                             "ingress": processes["ingress"], "ingress_log": logs["ingress"]},
                      rest_headers=harness.REST_HEADERS)
    harness.wait_ours(bot)
    harness.wait_http(f"http://127.0.0.1:{ingress_port}/health", 60, processes["ingress"],
                     logs["ingress"])
    return bot


async def unsure_text(session: aiohttp.ClientSession, bot: harness.Bot) -> str:
    for text in UNSURE_CANDIDATES:
        async with session.post(f"{bot.url}/model/parse", headers=harness.api_headers(),
                                json={"text": text}) as answer:
            if (await answer.json())["intent"]["name"] == "nlu_fallback":
                return text
    raise harness.StartupError(f"the model is sure of every candidate: {UNSURE_CANDIDATES}")


def new_number() -> str:
    return f"549{uuid.uuid4().int % 10**10:010d}"


async def phase(waha: harness.FakeWaha, webhook: str, expected: harness.Expected,
                unsure: str, slow: int, turns: int) -> Dict[str, Any]:
    """Ordinary conversations in a closed loop while `slow` others keep the LLM busy."""
    acks: List[float] = []
    slow_acks: List[float] = []
    latencies: List[float] = []
    slow_latencies: List[float] = []
    slow_wrong: List[str] = []
    failures: List[str] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def ordinary() -> None:
            number = new_number()
            for index in range(turns):
                if index and index % len(harness.WAHA_CYCLE) == 0:
                    number = new_number()  # a fresh conversation each cycle: no rate limit
                chat = f"{number}@c.us"
                text = harness.WAHA_CYCLE[index % len(harness.WAHA_CYCLE)]
                wanted = len(waha.received[chat]) + len(expected.replies[text])
                started = time.perf_counter()
                acks.append(await harness.post(session, webhook, harness.event_for(number, text)))
                if not await waha.wait_replies(chat, wanted, 60):
                    failures.append(f"no reply to {text!r}")
                    continue
                latencies.append((waha.received[chat][wanted - 1][0] - started) * 1000)
                await asyncio.sleep(0.1)  # a person reads before writing again

        async def keeps_the_llm_busy() -> None:
            while not stop.is_set():
                number = new_number()
                chat = f"{number}@c.us"
                started = time.perf_counter()
                slow_acks.append(await harness.post(session, webhook,
                                                    harness.event_for(number, unsure)))
                if not await waha.wait_replies(chat, 1, 60):
                    failures.append("no reply to the unsure message")
                    continue
                slow_latencies.append((waha.received[chat][0][0] - started) * 1000)
                if waha.received[chat][0][1] != THANKS:
                    slow_wrong.append(waha.received[chat][0][1])

        busy = [asyncio.create_task(keeps_the_llm_busy()) for _ in range(slow)]
        if slow:
            await asyncio.sleep(0.5)  # the slow turns are in flight before the measured ones
        started = time.perf_counter()
        await asyncio.gather(*(ordinary() for _ in range(NORMAL_CONVERSATIONS)))
        wall = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*busy)
    every_ack = acks + slow_acks
    return {
        "slow_fallbacks": slow,
        "turns": len(latencies), "wall_s": round(wall, 1),
        "turn_p50_ms": stats.rnd(stats.percentile(latencies, 50)),
        "turn_p95_ms": stats.rnd(stats.percentile(latencies, 95)),
        "turn_max_ms": stats.rnd(max(latencies) if latencies else None),
        "ack_p50_ms": stats.rnd(stats.percentile(every_ack, 50), 2),
        "ack_p95_ms": stats.rnd(stats.percentile(every_ack, 95), 2),
        "ack_p99_ms": stats.rnd(stats.percentile(every_ack, 99), 2),
        "posts": len(every_ack),
        "slow_turns": len(slow_latencies),
        "slow_turn_p50_ms": stats.rnd(stats.percentile(slow_latencies, 50)),
        "slow_answered_by_the_llm": len(slow_latencies) - len(slow_wrong),
        "failures": failures[:10], "failure_count": len(failures),
    }


async def measure(args: argparse.Namespace, cleanup: harness.Cleanup) -> Dict[str, Any]:
    waha = harness.FakeWaha()
    await waha.start()
    llm = SlowLlm(args.delay)
    llm.fake.start()
    results: Dict[str, Any] = {}
    try:
        for limit in (None, args.wide_limit):
            label = f"max_concurrent_turns={limit or configured_turn_limit()}"
            print(f"== {label}: starting the stack", flush=True)
            work = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-llm-fallback-")))
            bot = await asyncio.to_thread(start_stack, work, cleanup, waha, llm, args.model, limit)
            webhook = f"http://127.0.0.1:{bot.extra['ingress_port']}/webhooks/waha/webhook"
            async with aiohttp.ClientSession() as session:
                unsure = await unsure_text(session, bot)
                expected = await harness.learn(waha, webhook, session)
            print(f"   unsure message: {unsure!r}; the fake LLM answers it in {args.delay:g} s",
                  flush=True)
            rows = []
            for slow in [0] + args.slow:
                before = llm.intent_requests()
                row = await phase(waha, webhook, expected, unsure, slow, args.turns)
                row["llm_intent_requests"] = llm.intent_requests() - before
                rows.append(row)
                print(f"   {slow:>2} slow fallbacks: ordinary turns p50 {row['turn_p50_ms']} ms "
                      f"p95 {row['turn_p95_ms']} ms max {row['turn_max_ms']} ms; acks p50 "
                      f"{row['ack_p50_ms']} p95 {row['ack_p95_ms']} p99 {row['ack_p99_ms']} ms; "
                      f"slow turns {row['slow_turns']} (p50 {row['slow_turn_p50_ms']} ms, "
                      f"{row['slow_answered_by_the_llm']} answered by the LLM); "
                      f"failures {row['failure_count']}", flush=True)
            results[label] = {"phases": rows, "log_errors": {
                "rasa": harness.log_errors(bot.log),
                "actions": harness.log_errors(bot.extra["actions_log"])}}
            for name, process in list(cleanup.processes):
                harness.stop_group(process)
            cleanup.processes.clear()
        return results
    finally:
        llm.fake.stop()
        await waha.stop()


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=harness.MODEL)
    parser.add_argument("--slow", default="2,8", help="levels of concurrent slow fallbacks")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds the LLM takes")
    parser.add_argument("--turns", type=int, default=100, help="turns of each ordinary conversation")
    parser.add_argument("--wide-limit", type=int, default=32,
                        help="inbound.max_concurrent_turns of the second run")
    parser.add_argument("--quick", action="store_true", help="small numbers, a smoke test")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.slow = [int(x) for x in str(args.slow).split(",") if x]
    if args.quick:
        args.slow, args.turns = [2], 10
    return args


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    started = time.time()
    results = harness.run_benchmark("bench_llm_fallback", measure, args)
    if results is None:
        return 2
    document = {
        "benchmark": "bench/bench_llm_fallback.py",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": harness.load_average()},
        "settings": {"delay_s": args.delay, "slow_levels": args.slow, "turns": args.turns,
                     "ordinary_conversations": NORMAL_CONVERSATIONS, "cycle": harness.WAHA_CYCLE,
                     "model": str(args.model)},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    print(f"written {args.output}")
    failed = any(row["failure_count"] for run in results.values() for row in run["phases"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
