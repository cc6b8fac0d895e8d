"""What the Zoho delivery tests share: fake Zoho and fake Rasa on loopback, a config directory
with test timings, the environment that points the project (and worker processes) at them,
real RQ workers (burst, or in the background for retries, the scheduler and SIGKILL), and
tickets written to the ledger the way the submit action writes them.

Test modules import the fixtures they use from here.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import redis
import yaml

from helpdesk.tickets import Ledger, TicketRecord
from helpdesk.tickets import build_ticket, ticket_id_for
from tests.conftest import PROJECT
from tests.fakes.rasa_trigger import FakeRasa
from tests.fakes.zoho import FakeZoho

DEPARTMENT_IDS = {
    "it": "1892000000006907",
    "payments": "1892000000006911",
    "maintenance": "1892000000006913",
    "operations": "1892000000006917",
    "security": "1892000000006919",
}

# retries at once, short timeouts, no periodic jobs unless a test turns them on
FAST: Dict[str, Dict[str, Any]] = {
    "delivery": {"retry_intervals": [0], "retry_jitter": 0, "search_settle_seconds": 0, "job_timeout": 20,
                 "connect_timeout": 2, "read_timeout": 3, "upload_timeout": 5,
                 "rate_limited_backoff": [1, 2], "token_refresh_margin": 60},
    "submit": {"wait_seconds": 4, "poll_seconds": 0.1},
    "circuit": {"failure_threshold": 5, "recovery_seconds": 60, "auth_recovery_seconds": 600},
    "additions": {"retry_intervals": [0], "wait_for_delivery_seconds": 1},
    "announcements": {"retry_intervals": [0], "connect_timeout": 1, "read_timeout": 5},
    "status_polling": {"interval_seconds": 0},
    "reconcile": {"interval_seconds": 0, "grace_seconds": 0, "announce_after_seconds": 0},
}


def write_config(target: Path, overrides: Optional[Dict[str, Dict[str, Any]]] = None,
                 source: Optional[Path] = None) -> Path:
    """A copy of config/ (or of `source`) with department ids and zoho.yml sections merged
    with FAST + overrides."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source or PROJECT / "config", target)
    departments = yaml.safe_load((target / "departments.yml").read_text(encoding="utf-8"))
    for key, entry in departments["departments"].items():
        entry["zoho_id"] = DEPARTMENT_IDS.get(key, "")
    (target / "departments.yml").write_text(yaml.safe_dump(departments, allow_unicode=True), encoding="utf-8")
    data = yaml.safe_load((target / "zoho.yml").read_text(encoding="utf-8"))
    for section, values in FAST.items():
        data[section].update(values)
    for section, values in (overrides or {}).items():
        data[section].update(values)
    (target / "zoho.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


def clear_process_caches() -> None:
    """The catalog and the Zoho config are cached per process; tests change them."""
    from helpdesk.config import catalog
    from helpdesk.config import zoho_config
    from workers import zoho_resources

    catalog.cache_clear()
    zoho_config.cache_clear()
    zoho_resources._contexts.clear()


@dataclass
class ZohoWorld:
    zoho: FakeZoho
    rasa: FakeRasa
    env: Dict[str, str]
    ledger: Ledger
    redis: redis.Redis
    config_dir: Path
    tmp: Path
    monkeypatch: pytest.MonkeyPatch

    def reconfigure(self, **overrides: Dict[str, Any]) -> None:
        """New zoho.yml values for this process and for workers started afterwards."""
        write_config(self.config_dir, overrides)
        clear_process_caches()

    def submit(self, conversation_id: str = "5491122334455", *, started: Optional[float] = None,
               system: str = "POS", description: str = "la caja 2 no enciende, sale error E-45",
               attachments: Optional[List[str]] = None, reporter_phone: Optional[str] = "5491122334455",
               reporter_name: Optional[str] = "Ana Pérez", announce_by_worker: bool = True) -> TicketRecord:
        """A ticket recorded as the submit action records it; by default the turn has already
        handed the announcement to a worker (it said "Zoho no está disponible…")."""
        from helpdesk.config import load_catalog

        catalog = load_catalog(self.config_dir)
        started = started if started is not None else time.time()
        ticket = build_ticket(
            catalog,
            ticket_id=ticket_id_for(conversation_id, started),
            conversation_id=conversation_id,
            store="Tienda 42 (Avenida)",
            system=system,
            description=description,
            stated_priority=None,
            priority_texts=[description],
            reporter_name=reporter_name,
            reporter_phone=reporter_phone,
            channel="waha",
            mentioned_users=["@5491100000001"],
            correlation_id="corr-zoho-test",
        )
        if attachments:
            ticket.attachments = list(attachments)
        record, _ = self.ledger.submit(ticket)
        if announce_by_worker:
            self.ledger.hand_announcement_to_worker(record.id)
        return self.ledger.get(record.id)

    def enqueue(self, record: TicketRecord):
        from helpdesk.config import zoho_config
        from helpdesk.zoho import enqueue_delivery

        return enqueue_delivery(self.redis, record.id, zoho_config(), record.correlation_id)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client: redis.Redis,
          database_url: str) -> Iterator[ZohoWorld]:
    zoho = FakeZoho(departments=tuple(DEPARTMENT_IDS.values())).start()
    rasa = FakeRasa().start()
    config = write_config(tmp_path / "config")
    values = {
        **zoho.env(),
        **rasa.env(),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "HELPDESK_CONFIG_DIR": str(config),
        "HELPDESK_VAR_DIR": str(tmp_path / "var"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clear_process_caches()
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "WORKER_HEALTH_PORT": "0", "LOG_LEVEL": "INFO"}
    ledger = Ledger(database_url)
    try:
        yield ZohoWorld(zoho, rasa, env, ledger, redis_client, config, tmp_path, monkeypatch)
    finally:
        zoho.stop()
        rasa.stop()
        ledger.engine.dispose()
        clear_process_caches()


# --- real RQ workers -----------------------------------------------------------------------------
# the worker as `workers/worker.py` runs it, after `warm_up()` (what the lead's start-up adds)
WARM_WORKER = ("import sys; from workers.worker import warm_up; warm_up(); "
               "from workers.worker import main; main(sys.argv[1:])")


def worker_command(burst: bool, warm: bool = False) -> List[str]:
    command = [sys.executable, "-c", WARM_WORKER] if warm else [sys.executable, "-m", "workers.worker"]
    return command + (["--burst"] if burst else [])


def run_burst(env: Dict[str, str], timeout: float = 120, warm: bool = False) -> subprocess.CompletedProcess:
    """`python -m workers.worker --burst`: works the queues (and due scheduled jobs), then exits."""
    finished = subprocess.run(worker_command(True, warm), cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


class BackgroundWorker:
    """`python -m workers.worker` in its own session, with RQ's scheduler, until stopped."""

    def __init__(self, env: Dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "BackgroundWorker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "workers.worker"], cwd=PROJECT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def children(self) -> List[int]:
        """Every descendant process (the work horse runs in a session of its own)."""
        found, frontier = [], [self.process.pid]
        while frontier:
            parent = frontier.pop()
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == parent:
                    found.append(int(entry))
                    frontier.append(int(entry))
        return found

    def work_horse(self) -> Optional[int]:
        """The pid of the work horse running a job now (RQ forks it into a session of its
        own), None between jobs."""
        for pid in self.children():
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    session = int(handle.read().rsplit(")", 1)[1].split()[3])
            except OSError:
                continue
            if session == pid:
                return pid
        return None

    def kill(self) -> None:
        """SIGKILL the worker and everything it started, as a crash of the machine would."""
        pids = self.children()
        for pid in [self.process.pid, *pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        descendants = self.children()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def background_workers(world: ZohoWorld) -> Iterator[Callable[..., BackgroundWorker]]:
    started: List[BackgroundWorker] = []

    def start(name: str = "worker") -> BackgroundWorker:
        env = dict(os.environ, PYTHONPATH=str(PROJECT), WORKER_HEALTH_PORT="0", LOG_LEVEL="INFO")
        worker = BackgroundWorker(env, world.tmp / f"{name}-{len(started)}.log").start()
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what or predicate}")
