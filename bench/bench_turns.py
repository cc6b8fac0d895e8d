"""Dialogue benchmark: our bot against stock `rasa init`, same machine, same run (`make bench`).

What it does, in one run:

1. builds the baseline: `rasa init --no-prompt` in a temporary directory (it trains the stock
   moodbot model and does not start a shell), then serves it with
   `rasa run --enable-api -m <dir>/models --port <free>` from that directory;
2. starts our stack the way `tests/stack.py` does: a throw-away redis-server,
   then `python -m helpdesk.launch actions|rasa` with REDIS_URL, RASA_PORT, ACTIONS_PORT,
   DATABASE_URL, HELPDESK_VAR_DIR, RASA_MODEL and PYTHONPATH pointing at temporary places;
3. through the REST channel (`POST /webhooks/rest/webhook {"sender", "message"}`) of both bots:
   - turn latency with one conversation at a time (N sequential turns in conversations of
     10 turns, p50/p95/p99),
   - throughput with 1, 20 and 100 concurrent conversations (distinct senders, each sending
     its turns one after the other), with every request checked (HTTP 200 and a non-empty
     reply list),
   - resident memory (VmRSS, VmHWM) of each Rasa server process after the run;
4. prints both bots side by side with the ratio and the design's budgets, and writes
   bench/results/turns.json.

The phases alternate between the two bots (baseline, then ours, for each phase) while both
servers are up, so a busy machine disturbs both alike. Everything started here runs in its own
process group and is stopped, and every temporary directory removed, on exit, on failure and
on Ctrl-C / SIGTERM.

    .venv/bin/python bench/bench_turns.py [--turns 200] [--per-conversation 10]
        [--concurrency 1,20,100] [--quick] [--keep] [--output bench/results/turns.json]
"""
import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project: bench.harness, helpdesk

from bench import harness  # noqa: E402
from bench.harness import (  # noqa: E402
    BASELINE_CYCLE, CONFIRM_LABEL, LAST_REFERENCE, NO_REFERENCE, PROJECT,
    Bot, Cleanup, Result, StartupError, load_average, log_errors, log_tail,
    raise_on_sigterm, rss_of, run_conversations, run_one_at_a_time, shorten, start_baseline,
    summary, train_baseline, wait_baseline, wait_ours,
)

DEFAULT_OUTPUT = PROJECT / "bench" / "results" / "turns.json"

# The design's budgets (../shared/DESIGN.md, "Performance budgets").
BUDGET_TURN_P50_MS = 60.0
BUDGET_THROUGHPUT_RATIO = 3.0
BUDGET_RSS_BYTES = 1.5e9  # 1.5 GB read strictly: 10^9 bytes (about 1430 MiB)

# One conversation cycle per bot: the same shape of turns (a greeting, the "problem", its
# confirmation, a question, chatter, thanks, goodbye). Conversations repeat their cycle.
# The moodbot's is harness.BASELINE_CYCLE (why both its confirmations are "yes" is written there).
# (label, message). In our messages, {last_reference} is replaced by the latest HD- reference
# the bot gave this conversation (HD-AAAAAA, an unknown one, before the first).
OURS_CYCLE: List[Tuple[str, str]] = [
    ("greet", "hola"),
    ("incident, complete (form prefilled, read back)", "se cayó el POS en la tienda 42, no podemos vender"),
    ("confirm (ledger write)", "sí"),
    ("status, no number (recent tickets)", "¿cómo va mi ticket?"),
    ("chatter", "buenos días a todos, hoy hace frío"),
    ("incident, complete (form prefilled, read back)", "la impresora fiscal de la tienda 15 no imprime nada"),
    ("confirm (ledger write)", "si"),
    ("status, with number (ledger read)", f"¿cómo va el ticket {LAST_REFERENCE}?"),
    ("thanks", "gracias"),
    ("goodbye", "chau, hasta mañana"),
]

QUICK = {"turns": 20, "per_conversation": 3, "concurrency": "1,5,10", "warmup": 10}


# --------------------------------------------------------------------------- our stack
def start_ours(work: Path, cleanup: Cleanup) -> Bot:
    """Redis, the action server and the Rasa server, as tests/stack.py does."""
    return harness.start_ours(work, cleanup, OURS_CYCLE)


def ledger_rows(path: Path) -> Optional[int]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as connection:
            return connection.execute("SELECT count(*) FROM tickets").fetchone()[0]
    except sqlite3.Error:
        return None


def report_failures(bot: Bot, phase: str, result: Result) -> None:
    if result.failures:
        print(f"  !! {bot.name} {phase}: {len(result.failures)} failed of {result.requests}", flush=True)
        for line in result.failures[:10]:
            print(f"     {line}", flush=True)
        if len(result.failures) > 10:
            print(f"     ... and {len(result.failures) - 10} more", flush=True)


async def measure(bots: List[Bot], args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    results: Dict[str, Dict[str, Any]] = {bot.name: {"throughput": {}} for bot in bots}

    print(f"\n== warm-up: {args.warmup} turns per bot (not measured)", flush=True)
    for bot in bots:
        warm = await run_conversations(bot, 1, args.warmup, args.request_timeout, "warmup", samples=True)
        report_failures(bot, "warm-up", warm)
        print(f"  {bot.name}: {warm.requests} turns, {len(warm.failures)} failed; what it answered:", flush=True)
        for text, replies in warm.samples or []:
            print(f"    {text[:40]!r:42s} -> {shorten(replies, 110)}", flush=True)
        results[bot.name]["warmup"] = {"turns": warm.requests, "failures": len(warm.failures),
                                       "replies": [{"message": t, "replies": r} for t, r in warm.samples or []]}

    print(f"\n== turn latency: one conversation at a time, {args.turns} sequential turns "
          f"(a new conversation every {args.conversation_length} turns)", flush=True)
    for bot in bots:
        result = await run_one_at_a_time(bot, args.turns, args.conversation_length, args.request_timeout)
        report_failures(bot, "latency", result)
        results[bot.name]["latency"] = summary(result)
        s = results[bot.name]["latency"]
        print(f"  {bot.name:8s} p50 {s['p50_ms']} ms  p95 {s['p95_ms']} ms  p99 {s['p99_ms']} ms  "
              f"(first/last quarter p50 {s['p50_first_quarter_ms']}/{s['p50_last_quarter_ms']} ms, "
              f"{s['failures']} failed)", flush=True)

    for level in args.concurrency:
        print(f"\n== throughput: {level} concurrent conversation(s) x {args.per_conversation} turns", flush=True)
        for bot in bots:
            result = await run_conversations(bot, level, args.per_conversation, args.request_timeout, f"c{level}")
            report_failures(bot, f"{level} concurrent", result)
            results[bot.name]["throughput"][str(level)] = summary(result)
            s = results[bot.name]["throughput"][str(level)]
            print(f"  {bot.name:8s} {s['messages_per_s']} msg/s  p50 {s['p50_ms']} ms  p95 {s['p95_ms']} ms  "
                  f"({s['requests']} requests in {s['wall_s']} s, {s['failures']} failed)", flush=True)
    return results


# --------------------------------------------------------------------------- report
def mix_description(cycle: List[Tuple[str, str]]) -> List[Dict[str, str]]:
    return [{"kind": label, "message": text} for label, text in cycle]


def print_mix(args: argparse.Namespace) -> None:
    print("Message mix (each conversation repeats its cycle from the start):", flush=True)
    for name, cycle in (("ours", OURS_CYCLE), ("baseline (stock rasa init moodbot)", BASELINE_CYCLE)):
        print(f"  {name}:", flush=True)
        for i, (label, text) in enumerate(cycle, 1):
            print(f"    {i:2d}. {text!r:58s} {label}", flush=True)
        shares: Dict[str, int] = {}
        for label, _ in cycle:
            key = label.split(" (")[0].split(",")[0]
            shares[key] = shares.get(key, 0) + 1
        print("      share: " + ", ".join(f"{k} {v * 100 // len(cycle)}%" for k, v in shares.items()), flush=True)
    print(f"  latency run: {args.turns} turns, one conversation at a time, "
          f"{args.conversation_length or args.turns} turns each; throughput runs: "
          f"{args.per_conversation} turns per conversation", flush=True)
    print(f"  ({{last_reference}} is the latest HD- reference the bot gave that conversation, "
          f"{NO_REFERENCE} before the first)", flush=True)


def mib(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def verdict(ok: Optional[bool]) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


def build_table(results: Dict[str, Any], args: argparse.Namespace) -> Tuple[List[List[str]], Dict[str, Any]]:
    base, ours = results["baseline"], results["ours"]
    rows = [["metric", "baseline (rasa init)", "ours", "ours/baseline", "budget", "check"]]
    checks: Dict[str, Any] = {}

    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return round(a / b, 2) if a is not None and b else None

    bl, ol = base["latency"], ours["latency"]
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        budget, ok = "", None
        if key == "p50_ms":
            budget = f"< {BUDGET_TURN_P50_MS:.0f} ms"
            ok = ol[key] is not None and ol[key] < BUDGET_TURN_P50_MS and ol["failures"] == 0
            checks["turn_p50_ms"] = {"value": ol[key], "budget": BUDGET_TURN_P50_MS, "ok": ok}
        rows.append([f"1 conversation, {args.turns} turns: {key[:-3]}", fmt(bl[key], " ms"), fmt(ol[key], " ms"),
                     fmt(ratio(ol[key], bl[key]), "x"), budget, verdict(ok)])
    rows.append([f"  failed turns", fmt(bl["failures"]), fmt(ol["failures"]), "", "0",
                 verdict(bl["failures"] == 0 and ol["failures"] == 0)])

    checks["throughput"] = {}
    for level in args.concurrency:
        bt, ot = base["throughput"][str(level)], ours["throughput"][str(level)]
        r = ratio(ot["messages_per_s"], bt["messages_per_s"])
        ok = r is not None and r >= BUDGET_THROUGHPUT_RATIO and ot["failures"] == 0
        checks["throughput"][str(level)] = {"ratio": r, "budget_ratio": BUDGET_THROUGHPUT_RATIO, "ok": ok,
                                           "errors_ours": ot["failures"], "errors_baseline": bt["failures"]}
        rows.append([f"{level} concurrent x {args.per_conversation}: msg/s", fmt(bt["messages_per_s"]),
                     fmt(ot["messages_per_s"]), fmt(r, "x"), f">= {BUDGET_THROUGHPUT_RATIO:.0f}x", verdict(ok)])
        for key in ("p50_ms", "p95_ms"):
            rows.append([f"  {key[:-3]}", fmt(bt[key], " ms"), fmt(ot[key], " ms"),
                         fmt(ratio(ot[key], bt[key]), "x"), "", ""])
        rows.append([f"  failed", f"{bt['failures']}/{bt['requests']}", f"{ot['failures']}/{ot['requests']}",
                     "", "0", verdict(bt["failures"] == 0 and ot["failures"] == 0)])

    br, orss = base["memory"]["rss_bytes"], ours["memory"]["rss_bytes"]
    ok = orss is not None and orss < BUDGET_RSS_BYTES
    checks["rasa_rss_bytes"] = {"value": orss, "budget": BUDGET_RSS_BYTES, "ok": ok}
    rows.append(["Rasa server RSS after run", mib(br), mib(orss), fmt(ratio(orss, br), "x"),
                 f"< 1.5 GB ({BUDGET_RSS_BYTES / 2**20:.0f} MiB)", verdict(ok)])
    rows.append(["  peak RSS (VmHWM)", mib(base["memory"]["peak_rss_bytes"]), mib(ours["memory"]["peak_rss_bytes"]),
                 "", "", ""])
    if ours.get("actions_memory"):
        rows.append(["  action server RSS (ours only)", "-", mib(ours["actions_memory"]["rss_bytes"]), "", "", ""])
    return rows, checks


def print_table(rows: List[List[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) if i < 4 else cell.ljust(widths[i])
                        for i, cell in enumerate(row)).rstrip(), flush=True)
        if n == 0:
            print("  ".join("-" * w for w in widths), flush=True)


# --------------------------------------------------------------------------- main
def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Turn latency, throughput and memory of our Rasa bot against stock `rasa init`, "
                    "measured in the same run on this machine.")
    parser.add_argument("--turns", type=int, default=None,
                        help="sequential turns of the single-conversation latency run (default 200; --quick 20)")
    parser.add_argument("--conversation-length", type=int, default=10,
                        help="turns per conversation in the latency run, one conversation at a time "
                             "(default 10, one cycle of the mix; 0 = a single endless conversation)")
    parser.add_argument("--per-conversation", type=int, default=None,
                        help="turns each conversation sends in the throughput runs (default 10; --quick 3)")
    parser.add_argument("--concurrency", default=None,
                        help="comma-separated concurrent conversations for the throughput runs "
                             "(default 1,20,100; --quick 1,5,10)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured warm-up turns per server before measuring; their replies are printed "
                             "(default 10: one full cycle of the mix)")
    parser.add_argument("--request-timeout", type=float, default=180.0,
                        help="seconds before one request counts as failed (default 180)")
    parser.add_argument("--train-timeout", type=float, default=1200.0,
                        help="seconds allowed for `rasa init` to train the baseline (default 1200)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: small counts (20 turns; 1,5,10 concurrent conversations x 3 turns)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write the JSON results (default {DEFAULT_OUTPUT.relative_to(PROJECT)})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directories (logs, baseline project, ledger) for inspection")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"turns": 200, "per_conversation": 10, "concurrency": "1,20,100", "warmup": 10}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.concurrency = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    except ValueError:
        parser.error("--concurrency takes comma-separated integers, e.g. 1,20,100")
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency needs positive integers")
    if args.turns < 1 or args.per_conversation < 1 or args.warmup < 0:
        parser.error("--turns and --per-conversation must be at least 1, --warmup at least 0")
    if args.concurrency and max(args.concurrency) > 1000:
        parser.error("--concurrency above 1000 is not supported")
    return args


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    signal.signal(signal.SIGHUP, raise_on_sigterm)
    cleanup = Cleanup(keep=args.keep)
    started = time.time()
    load_before = load_average()
    print(f"bench_turns: {'quick smoke test' if args.quick else 'full run'} on {os.cpu_count()} CPU(s), "
          f"load average {load_before}", flush=True)
    print_mix(args)
    try:
        base_dir = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-rasa-init-")))
        ours_dir = cleanup.directory(Path(tempfile.mkdtemp(prefix="bench-helpdesk-")))

        print("\n== starting our stack (Redis, action server, Rasa server) in the background", flush=True)
        t0 = time.monotonic()
        ours = start_ours(ours_dir, cleanup)
        print(f"== building the baseline: rasa init --no-prompt --init-dir {base_dir / 'project'}"
              " (trains the stock model)", flush=True)
        train_s = train_baseline(base_dir, cleanup, args.train_timeout)
        print(f"   trained in {train_s:.0f} s", flush=True)
        baseline = start_baseline(base_dir, cleanup)
        wait_ours(ours)
        print(f"   our stack ready at {ours.url} ({time.monotonic() - t0:.0f} s after start)", flush=True)
        t1 = time.monotonic()
        wait_baseline(baseline)
        print(f"   baseline ready at {baseline.url} ({time.monotonic() - t1:.0f} s after start)", flush=True)

        bots = [baseline, ours]
        results = asyncio.run(measure(bots, args))
        for bot in bots:
            results[bot.name]["memory"] = {"pid": bot.rasa.pid, **rss_of(bot.rasa.pid)}
        results["ours"]["actions_memory"] = {"pid": ours.extra["actions"].pid, **rss_of(ours.extra["actions"].pid)}
        confirmations = sum(
            (s.get("ticket_confirmations") or 0)
            for s in [results["ours"]["latency"], *results["ours"]["throughput"].values()]
        )
        warmup_confirmations = sum(1 for i in range(args.warmup) if OURS_CYCLE[i % len(OURS_CYCLE)][0] == CONFIRM_LABEL)
        rows = ledger_rows(ours.extra["ledger"])
        results["ours"]["ledger"] = {
            "rows": rows,
            "confirmations_measured": confirmations,
            "confirmations_warmup_max": warmup_confirmations,
        }
        results["baseline"]["log_errors"] = {"rasa": log_errors(baseline.log)}
        results["ours"]["log_errors"] = {"rasa": log_errors(ours.log), "actions": log_errors(ours.extra["actions_log"])}
        for bot in bots:
            if bot.rasa.poll() is not None:
                raise RuntimeError(f"{bot.name}'s Rasa server died during the run:\n{log_tail(bot.log)}")

        table, checks = build_table(results, args)
        print("\n== results (same machine, same run; REST channel over loopback)", flush=True)
        print_table(table)
        print(f"\n  ledger rows written by our bot: {rows} "
              f"(confirmed with a reference: {confirmations} measured + up to {warmup_confirmations} in warm-up)",
              flush=True)
        for bot in bots:
            for server, found in results[bot.name]["log_errors"].items():
                print(f"  {bot.name} {server} server log: {fmt(found['errors'])} ERROR lines/tracebacks", flush=True)
                for sample in found["samples"]:
                    print(f"     {sample}", flush=True)
        load_after = load_average()
        print(f"  load average before/after: {load_before} / {load_after}; the client runs on the same "
              f"{os.cpu_count()} CPU(s) as the servers", flush=True)
        budgets_met = all([checks["turn_p50_ms"]["ok"], checks["rasa_rss_bytes"]["ok"],
                           *(c["ok"] for c in checks["throughput"].values())])
        print(f"  budgets: {'all met' if budgets_met else 'NOT all met'} "
              f"(turn p50 < {BUDGET_TURN_P50_MS:.0f} ms with one conversation; throughput >= "
              f"{BUDGET_THROUGHPUT_RATIO:.0f}x stock rasa init with zero errors; Rasa RSS < 1.5 GB)", flush=True)

        document = {
            "benchmark": "bench/bench_turns.py",
            "mode": "quick" if args.quick else "full",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_s": round(time.time() - started, 1),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "load_before": load_before, "load_after": load_after},
            "rasa_version": rasa_version(),
            "settings": {"turns": args.turns, "per_conversation": args.per_conversation,
                         "concurrency": args.concurrency, "warmup": args.warmup,
                         "request_timeout_s": args.request_timeout},
            "baseline_training_s": round(train_s, 1),
            "mix": {"ours": mix_description(OURS_CYCLE), "baseline": mix_description(BASELINE_CYCLE)},
            "budgets": {"turn_p50_ms": BUDGET_TURN_P50_MS, "throughput_ratio": BUDGET_THROUGHPUT_RATIO,
                        "rasa_rss_bytes": BUDGET_RSS_BYTES},
            "results": results,
            "checks": checks,
            "budgets_met": budgets_met,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"  written {args.output}", flush=True)
        errors = sum(s["failures"] for r in results.values() if isinstance(r, dict) and "latency" in r
                     for s in [r["latency"], *r["throughput"].values()])
        return 0 if errors == 0 else 1
    except StartupError as error:
        print(f"\nbench_turns: start-up failed: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\nbench_turns: interrupted; stopping everything it started", file=sys.stderr, flush=True)
        return 130
    finally:
        cleanup.run()
        print(f"bench_turns: cleaned up after {time.time() - started:.0f} s", flush=True)


def rasa_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("rasa")
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
