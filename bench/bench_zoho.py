"""Zoho Desk delivery benchmark: real RQ workers against the fake Zoho on loopback.

What it measures:

1. tickets per second through 1 and 4 workers, with the fake answering every Desk call at
   once and after 200 ms: N tickets are written to the ledger and queued while the workers
   idle; the clock runs from the first enqueue to the last ticket created in (fake) Zoho.
   Tickets come from 20 reporters, so most contacts are remembered in Redis and a ticket
   costs one call (the create) and sometimes three (contact search, contact create, create).
   Each case runs with the worker as `workers/worker.py` starts it today ("cold": every
   forked job imports the job modules and opens the ledger) and after `warm_up()` ("warm").
2. recovery after an outage: 500 tickets queued while every Desk call answers 503, with the
   default config/zoho.yml (circuit opens after 5 failures, one probe every 60 s, deferred
   tickets spread over 5 s); the time from the end of the outage to the last of the 500
   created, and how many calls reached Zoho during the outage.

Its own redis-server on a free port, a temporary ledger (SQLite) and config copy, the fake
Zoho in this process; everything is stopped and removed on exit. Results go to
bench/results/zoho.json; bench/README.md keeps the latest.

    .venv/bin/python bench/bench_zoho.py [--tickets 100] [--outage-tickets 500] [--outage-seconds 75] [--quick]
"""
import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
sys.path.insert(0, str(PROJECT))

import redis  # noqa: E402
import yaml  # noqa: E402
from rq import Worker  # noqa: E402

from helpdesk.config import load_catalog  # noqa: E402
from helpdesk.launch import free_port, spawn_redis, wait_for_port  # noqa: E402
from helpdesk.tickets import DELIVERED, Ledger  # noqa: E402
from helpdesk.tickets import build_ticket, ticket_id_for  # noqa: E402
from helpdesk.config import load_zoho_config  # noqa: E402
from helpdesk.zoho import enqueue_delivery  # noqa: E402
from tests.fakes.zoho import FakeZoho  # noqa: E402

OUTPUT = BENCH / "results" / "zoho.json"
DEPARTMENT_IDS = {"it": "1892000000006907", "payments": "1892000000006911", "maintenance": "1892000000006913",
                  "operations": "1892000000006917", "security": "1892000000006919"}
WARM = ("import sys; from workers.worker import warm_up; warm_up(); "
        "from workers.worker import main; main(sys.argv[1:])")
REPORTERS = 20


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis_port = free_port()
        redis_password = secrets.token_urlsafe(16)  # as make run's own Redis has one
        self.redis_process = spawn_redis(self.redis_port, work, redis_password,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for_port(self.redis_port, 10):
            raise SystemExit("redis-server did not start")
        self.redis_url = f"redis://:{redis_password}@127.0.0.1:{self.redis_port}/0"
        self.redis = redis.Redis.from_url(self.redis_url)
        self.zoho: Optional[FakeZoho] = None
        self.workers: List[subprocess.Popen] = []
        self.run = 0

    def close(self) -> None:
        self.stop_workers()
        if self.zoho:
            self.zoho.stop()
        self.redis_process.terminate()
        self.redis_process.wait(10)

    # one scenario's world ------------------------------------------------------------------
    def prepare(self, latency: float, overrides: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, str]:
        self.run += 1
        self.redis.flushdb()
        if self.zoho:
            self.zoho.stop()
        self.zoho = FakeZoho(departments=tuple(DEPARTMENT_IDS.values())).start()
        if latency:
            self.zoho.delay(latency)  # every Desk call (not the token endpoint)
        config = self.work / f"config-{self.run}"
        shutil.copytree(PROJECT / "config", config)
        departments = yaml.safe_load((config / "departments.yml").read_text(encoding="utf-8"))
        for key, entry in departments["departments"].items():
            entry["zoho_id"] = DEPARTMENT_IDS.get(key, "")
        (config / "departments.yml").write_text(yaml.safe_dump(departments, allow_unicode=True), encoding="utf-8")
        zoho = yaml.safe_load((config / "zoho.yml").read_text(encoding="utf-8"))
        for section, values in (overrides or {}).items():
            zoho[section].update(values)
        (config / "zoho.yml").write_text(yaml.safe_dump(zoho, allow_unicode=True), encoding="utf-8")
        self.config_dir = config
        self.database_url = f"sqlite:///{self.work / f'ledger-{self.run}.sqlite3'}"
        return {
            **os.environ, **self.zoho.env(),
            "REDIS_URL": self.redis_url, "DATABASE_URL": self.database_url, "HELPDESK_CONFIG_DIR": str(config),
            "HELPDESK_VAR_DIR": str(self.work / "var"), "PYTHONPATH": str(PROJECT), "WORKER_HEALTH_PORT": "0",
            "LOG_LEVEL": "WARNING", "RASA_PORT": str(free_port()),
        }

    def start_workers(self, env: Dict[str, str], count: int, warm: bool) -> None:
        command = [sys.executable, "-c", WARM] if warm else [sys.executable, "-m", "workers.worker"]
        log = open(self.work / f"workers-{self.run}.log", "ab")
        for _ in range(count):
            self.workers.append(subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=log,
                                                 start_new_session=True))
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=self.redis)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start; see {log.name}")
            time.sleep(0.1)

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self.workers = []

    def tickets(self, count: int) -> List[str]:
        ledger = Ledger(self.database_url)
        catalog = load_catalog(self.config_dir)
        ids = []
        for n in range(count):
            phone = f"54911{5550000 + n % REPORTERS:08d}"
            ticket = build_ticket(
                catalog, ticket_id=ticket_id_for(phone, float(n)), conversation_id=phone,
                store="Tienda 42 (Avenida)", system="POS", description=f"la caja {n} no enciende",
                stated_priority=None, priority_texts=[], reporter_name=f"Persona {n % REPORTERS}",
                reporter_phone=phone, channel="waha",
            )
            record, _ = ledger.submit(ticket)
            ids.append(record.id)
        ledger.engine.dispose()
        return ids

    def enqueue(self, ids: List[str]) -> float:
        config = load_zoho_config(self.config_dir / "zoho.yml")
        started = time.time()
        for ticket_id in ids:
            enqueue_delivery(self.redis, ticket_id, config)
        return started

    def wait_delivered(self, count: int, timeout: float) -> None:
        ledger = Ledger(self.database_url)
        deadline = time.monotonic() + timeout
        try:
            while len(ledger.by_state(DELIVERED)) < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(ledger.by_state(DELIVERED))} of {count} delivered in {timeout} s")
                time.sleep(0.25)
        finally:
            ledger.engine.dispose()

    def created_times(self) -> List[float]:
        with self.zoho.lock:
            return sorted(t["_created_at"] for t in self.zoho.tickets.values())


def throughput(bench: Bench, workers: int, latency: float, tickets: int, warm: bool) -> Dict[str, Any]:
    env = bench.prepare(latency)
    ids = bench.tickets(tickets)
    bench.start_workers(env, workers, warm)
    started = bench.enqueue(ids)
    bench.wait_delivered(tickets, timeout=60 + tickets * (2 + latency * 4) / workers)
    bench.stop_workers()
    created = bench.created_times()
    elapsed = created[-1] - started
    duplicates = len(created) - tickets
    result = {"workers": workers, "latency_ms": int(latency * 1000), "warm": warm, "tickets": tickets,
              "seconds": round(elapsed, 2), "tickets_per_second": round(tickets / elapsed, 2),
              "zoho_calls": len([c for c in bench.zoho.requests if not c.path.startswith("/oauth")]),
              "max_concurrent_zoho_calls": bench.zoho.max_in_flight, "duplicates": duplicates}
    print(f"  {workers} worker(s), {result['latency_ms']:>3} ms, {'warm' if warm else 'cold'}: "
          f"{result['tickets_per_second']:6.2f} tickets/s ({tickets} in {elapsed:.1f} s, "
          f"{result['zoho_calls']} calls, at most {bench.zoho.max_in_flight} at once, {duplicates} duplicates)",
          flush=True)
    return result


def outage(bench: Bench, tickets: int, outage_seconds: float, workers: int, warm: bool) -> Dict[str, Any]:
    env = bench.prepare(0.0)
    bench.zoho.fail(None, status=503)
    ids = bench.tickets(tickets)
    bench.start_workers(env, workers, warm)
    queued = bench.enqueue(ids)
    time.sleep(max(0.0, outage_seconds - (time.time() - queued)))
    calls_during = len([c for c in bench.zoho.requests if not c.path.startswith("/oauth")])
    bench.zoho.clear_failures()
    back = time.time()
    bench.wait_delivered(tickets, timeout=900)
    bench.stop_workers()
    created = bench.created_times()
    ledger = Ledger(bench.database_url)
    attempts = sum(r.attempts for r in ledger.by_state(DELIVERED))
    ledger.engine.dispose()
    result = {"tickets": tickets, "workers": workers, "warm": warm, "outage_seconds": round(back - queued, 1),
              "zoho_calls_during_outage": calls_during,
              "first_created_after_outage_s": round(created[0] - back, 2),
              "last_created_after_outage_s": round(created[-1] - back, 2),
              "attempts_spent": attempts, "duplicates": len(created) - tickets}
    print(f"  {tickets} queued, {workers} workers {'warm' if warm else 'cold'}, outage {result['outage_seconds']} s "
          f"({calls_during} calls reached Zoho): first created {result['first_created_after_outage_s']} s and "
          f"last {result['last_created_after_outage_s']} s after Zoho was back; {attempts} attempts spent, "
          f"{result['duplicates']} duplicates", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100)
    parser.add_argument("--outage-tickets", type=int, default=500)
    parser.add_argument("--outage-seconds", type=float, default=75)
    parser.add_argument("--quick", action="store_true", help="20 tickets, outage of 100 tickets for 20 s")
    args = parser.parse_args()
    if args.quick:
        args.tickets, args.outage_tickets, args.outage_seconds = 20, 100, 20
    work = Path(tempfile.mkdtemp(prefix="helpdesk-bench-zoho-"))
    bench = Bench(work)
    results: Dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                               "cpus": os.cpu_count(), "throughput": [], "outage": []}
    try:
        print("Throughput (tickets queued while the workers idle; clock: first enqueue to last created)")
        for warm in (False, True):
            for latency in (0.0, 0.2):
                for workers in (1, 4):
                    results["throughput"].append(throughput(bench, workers, latency, args.tickets, warm))
        print("Recovery after an outage (default config/zoho.yml)")
        for warm in (False, True):
            results["outage"].append(outage(bench, args.outage_tickets, args.outage_seconds, 4, warm))
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {OUTPUT.relative_to(PROJECT)}")


if __name__ == "__main__":
    main()
