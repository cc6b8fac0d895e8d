"""What more than one benchmark uses: starting and stopping the servers, the fakes and the
stock `rasa init` baseline, driving conversations, and the numbers they give.

- processes: `Cleanup` (every process group and temporary directory a run started, stopped and
  removed on exit), `stop_group`, `wait_http`, `rss_of`, `quiet_env`, `StartupError`;
- the baseline: `train_baseline`, `start_baseline`, `wait_baseline` (stock `rasa init`, served
  by `rasa run` on its REST channel) and our stack's `wait_ours`, `log_errors`;
- load through the REST channel: `Conversation`, `run_conversations`, `run_one_at_a_time`,
  `summary` (percentiles and rates of a `Result`);
- the fake WAHA and its webhook: `FakeWaha`, `event_for`, `post`, `learn` (the replies each
  message of `WAHA_CYCLE` calls for);
- `load_average`, `raise_on_sigterm`, `shorten`.

Used by bench_turns.py, bench_channels.py and bench_llm_fallback.py; no benchmark imports
another. The statistics are in bench/stats.py.
"""
import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import aiohttp
from aiohttp import web

from bench.stats import percentile, rnd
from helpdesk.launch import free_port, spawn_redis, stack_env, wait_for_port
from helpdesk.rasa_api import signed_api_token

PROJECT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RASA_BIN = VENV_BIN / "rasa"
MODEL = PROJECT / "models" / "helpdesk.tar.gz"
AUTH_TOKEN = "bench-token-0123456789abcdef0123456789"  # our Rasa server's HTTP API key (JWT secret)
REST_TOKEN = f"rest-{AUTH_TOKEN}"  # our REST channel's token (stack_env's default)
REST_HEADERS = {"Authorization": f"Bearer {REST_TOKEN}"}
LOOPBACK = "127.0.0.1"

REFERENCE = re.compile(r"HD-[A-Z0-9]{6,16}")
LAST_REFERENCE = "{last_reference}"
NO_REFERENCE = "HD-AAAAAA"

# The stock moodbot's conversation cycle, (label, message): the same shape of turns as ours
# (bench_turns.py's OURS_CYCLE). Conversations repeat their cycle.
# The moodbot's turns are ones it answers at any point of a long conversation: a "no" after
# "did that help?" mid-conversation falls under its core fallback threshold and, with no
# utter_default in its domain, gets no reply at all (an error here), so both confirmations
# are "yes".
BASELINE_CYCLE: List[Tuple[str, str]] = [
    ("greet", "hi"),  # the moodbot is English: "hola" is below its fallback in some trainings
    ("mood_unhappy (cheer-up: text, image, \"did that help?\")", "I am sad"),
    ("affirm (after \"did that help?\")", "yes"),
    ("bot_challenge", "are you a bot?"),
    ("greet", "hello there"),
    ("mood_unhappy (cheer-up: text, image, \"did that help?\")", "so sad"),
    ("affirm (after \"did that help?\")", "yes"),
    ("mood_great", "I am great"),
    ("greet", "good morning"),
    ("goodbye", "bye"),
]
# our confirmations' label: their replies must carry a ticket reference
CONFIRM_LABEL = "confirm (ledger write)"


# --------------------------------------------------------------------------- processes
class Cleanup:
    """Everything this run started: process groups and temporary directories."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.processes: List[Tuple[str, subprocess.Popen]] = []
        self.dirs: List[Path] = []

    def process(self, name: str, process: subprocess.Popen) -> subprocess.Popen:
        self.processes.append((name, process))
        return process

    def directory(self, path: Path) -> Path:
        self.dirs.append(path)
        return path

    def run(self) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits for this
        try:
            for name, process in reversed(self.processes):
                stop_group(process)
            self.processes.clear()
            for path in self.dirs:
                if self.keep:
                    print(f"kept {path}", flush=True)
                else:
                    shutil.rmtree(path, ignore_errors=True)
            self.dirs.clear()
        finally:
            signal.signal(signal.SIGINT, previous)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 15 s (as the integration fixture does)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)
    else:
        # the leader is gone; make sure nothing of its group lingers
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class StartupError(RuntimeError):
    pass


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def api_headers() -> Dict[str, str]:
    """A call to our Rasa server's HTTP API: a fresh admin JWT (helpdesk.rasa_api)."""
    return {"Authorization": f"Bearer {signed_api_token(AUTH_TOKEN)}"}


def http_get(url: str, timeout: float = 2.0, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=timeout) as answer:
            body = answer.read()
            try:
                return answer.status, json.loads(body)
            except ValueError:
                return answer.status, None
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def wait_http(url: str, seconds: float, process: subprocess.Popen, log: Path,
              ready: Callable[[Any], bool] = lambda body: True,
              headers: Optional[Callable[[], Dict[str, str]]] = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(f"{url}: the process exited early (code {process.returncode}):\n{log_tail(log)}")
        status, body = http_get(url, headers=headers() if headers else None)
        if status == 200 and ready(body):
            return
        time.sleep(0.5)
    raise StartupError(f"{url} did not come up in {seconds:.0f} s:\n{log_tail(log)}")


def rss_of(pid: int) -> Dict[str, Optional[int]]:
    """VmRSS and VmHWM (peak) of a process, in bytes, from /proc/<pid>/status."""
    values: Dict[str, Optional[int]] = {"rss_bytes": None, "peak_rss_bytes": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                values["rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                values["peak_rss_bytes"] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


def quiet_env(base: Dict[str, str]) -> Dict[str, str]:
    env = dict(base)
    # loopback only: no usage reporting from either Rasa server
    env["RASA_TELEMETRY_ENABLED"] = "false"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


@dataclass
class Bot:
    name: str
    url: str
    rasa: subprocess.Popen
    log: Path
    cycle: List[Tuple[str, str]]
    extra: Dict[str, Any] = field(default_factory=dict)
    rest_headers: Dict[str, str] = field(default_factory=dict)  # ours: REST_HEADERS

    @property
    def webhook(self) -> str:
        return f"{self.url}/webhooks/rest/webhook"


# --------------------------------------------------------------------------- baseline
def train_baseline(work: Path, cleanup: Cleanup, timeout: float) -> float:
    """`rasa init --no-prompt`: scaffolds the moodbot, trains it, starts no shell."""
    log = work / "rasa-init.log"
    (work / "project").mkdir()  # --no-prompt wants an existing (empty) directory
    env = quiet_env(os.environ)
    env.pop("PYTHONPATH", None)  # stock project: nothing of ours on the path
    started = time.monotonic()
    with open(log, "wb") as out:
        process = cleanup.process("rasa init", subprocess.Popen(
            [str(RASA_BIN), "init", "--no-prompt", "--init-dir", str(work / "project")],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise StartupError(f"rasa init did not finish in {timeout:.0f} s:\n{log_tail(log)}")
    models = list((work / "project" / "models").glob("*.tar.gz"))
    if code != 0 or not models:
        raise StartupError(f"rasa init failed (code {code}):\n{log_tail(log)}")
    return time.monotonic() - started


def start_baseline(work: Path, cleanup: Cleanup) -> Bot:
    project = work / "project"
    port = free_port()
    log = work / "baseline-rasa.log"
    env = quiet_env(os.environ)
    env.pop("PYTHONPATH", None)
    with open(log, "wb") as out:
        process = cleanup.process("baseline rasa", subprocess.Popen(
            [str(RASA_BIN), "run", "--enable-api", "-m", str(project / "models"), "--port", str(port)],
            cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))
    return Bot("baseline", f"http://{LOOPBACK}:{port}", process, log, BASELINE_CYCLE)


def wait_baseline(bot: Bot) -> None:
    wait_http(f"{bot.url}/webhooks/rest/", 300, bot.rasa, bot.log)
    wait_http(f"{bot.url}/status", 120, bot.rasa, bot.log, lambda body: bool(body and body.get("model_id")))


# --------------------------------------------------------------------------- our stack
def wait_ours(bot: Bot) -> None:
    wait_http(f"http://{LOOPBACK}:{bot.extra['actions_port']}/health", 180, bot.extra["actions"],
              bot.extra["actions_log"])
    wait_http(f"{bot.url}/webhooks/rest/", 300, bot.rasa, bot.log)
    # the model is loaded when /status names it (Rasa 3.6: model_id)
    wait_http(f"{bot.url}/status", 120, bot.rasa, bot.log,
              lambda body: bool(body and body.get("model_id")), headers=api_headers)


def start_ours(work: Path, cleanup: Cleanup, cycle: List[Tuple[str, str]],
               extra_env: Optional[Dict[str, str]] = None, ingress: bool = False) -> Bot:
    """Redis (with a password, as make run's own), the action server, the Rasa server and,
    with `ingress`, the webhook ingress, as tests/stack.py starts them.
    `start_rasa` adds more Rasa servers on the same Redis."""
    if not MODEL.is_file():
        raise StartupError(f"{MODEL} is missing: run `make train`")
    if not shutil.which("redis-server"):
        raise StartupError("redis-server is not installed: run `make setup`")
    redis_port = free_port()
    (work / "redis").mkdir()
    redis_password = secrets.token_urlsafe(16)  # given on stdin, not in ps
    cleanup.process("redis", spawn_redis(
        redis_port, work / "redis", redis_password,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    ))
    if not wait_for_port(redis_port, 10):
        raise StartupError("the benchmark's Redis did not start")
    rasa_port, actions_port = free_port(), free_port()
    env = quiet_env(stack_env(
        {**os.environ, **(extra_env or {})},
        redis_url=f"redis://:{redis_password}@{LOOPBACK}:{redis_port}/0", rasa_port=rasa_port,
        actions_port=actions_port, work_dir=work, model=MODEL, auth_token=AUTH_TOKEN,
    ))
    names = ["actions", "rasa"] + (["ingress"] if ingress else [])
    if ingress:
        env["INGRESS_PORT"] = str(free_port())
    logs = {name: work / f"{name}.log" for name in names}
    processes = {name: _launch(name, env, logs[name], cleanup) for name in names}
    extra: Dict[str, Any] = {"actions": processes["actions"], "actions_port": actions_port,
                             "actions_log": logs["actions"], "ledger": work / "ledger.sqlite3",
                             "env": env, "work": work, "servers": []}
    if ingress:
        extra.update(ingress_port=int(env["INGRESS_PORT"]), ingress=processes["ingress"],
                     ingress_log=logs["ingress"])
    return Bot("ours", f"http://{LOOPBACK}:{rasa_port}", processes["rasa"], logs["rasa"], cycle,
               extra=extra, rest_headers=REST_HEADERS)


def start_rasa(bot: Bot, cleanup: Cleanup) -> Bot:
    """One more Rasa server of our stack, on the same Redis, ledger and action server."""
    number = len(bot.extra["servers"]) + 2
    port = free_port()
    log = bot.extra["work"] / f"rasa-{number}.log"
    process = _launch("rasa", dict(bot.extra["env"], RASA_PORT=str(port)), log, cleanup,
                      label=f"rasa-{number}")
    server = Bot(f"ours-{number}", f"http://{LOOPBACK}:{port}", process, log, bot.cycle,
                 extra=dict(bot.extra, servers=[]), rest_headers=bot.rest_headers)
    bot.extra["servers"].append(server)
    return server


def _launch(name: str, env: Dict[str, str], log: Path, cleanup: Cleanup,
            label: Optional[str] = None) -> subprocess.Popen:
    with open(log, "wb") as out:
        return cleanup.process(label or name, subprocess.Popen(
            [sys.executable, "-m", "helpdesk.launch", name], cwd=PROJECT, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process group (its leader is the launcher; Rasa runs in
    it), from /proc: each live member's own time and that of the children it has reaped."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:  # its process group (start_new_session: pgid == pid)
                total += sum(int(value) for value in fields[11:15]) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


ERROR_LINE = re.compile(r'"level": "(ERROR|CRITICAL)"|^\S+ \S+ (ERROR|CRITICAL) |^Traceback ')


def log_errors(path: Path) -> Dict[str, Any]:
    """ERROR/CRITICAL lines and tracebacks a server logged (JSON lines or Rasa's text format)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {"log": str(path), "errors": None, "samples": []}
    hits = [line for line in lines if ERROR_LINE.search(line)]
    return {"log": path.name, "errors": len(hits), "samples": [shorten(h, 300) for h in hits[:5]]}


# --------------------------------------------------------------------------- load
@dataclass
class Result:
    latencies_ms: List[float] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)
    requests: int = 0
    confirmations: int = 0  # "confirm" turns answered with a ticket reference
    wall_s: float = 0.0
    samples: Optional[List[Tuple[str, str]]] = None  # (message, replies) when asked for


class Conversation:
    def __init__(self, bot: Bot, sender: str) -> None:
        self.bot = bot
        self.sender = sender
        self.turn = 0
        self.last_reference = NO_REFERENCE

    async def say(self, session: aiohttp.ClientSession, result: Result) -> None:
        label, text = self.bot.cycle[self.turn % len(self.bot.cycle)]
        self.turn += 1
        text = text.replace(LAST_REFERENCE, self.last_reference)
        result.requests += 1
        started = time.perf_counter()
        try:
            async with session.post(self.bot.webhook, json={"sender": self.sender, "message": text},
                                    headers=self.bot.rest_headers) as answer:
                body = await answer.read()
                elapsed = (time.perf_counter() - started) * 1000
                if answer.status != 200:
                    result.failures.append(f"{self.sender} «{text}»: HTTP {answer.status} {body[:200]!r}")
                    return
                replies = json.loads(body)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # timeouts, resets, bad JSON: all count as failures
            result.failures.append(f"{self.sender} «{text}»: {type(error).__name__}: {error}")
            return
        result.latencies_ms.append(elapsed)
        if not isinstance(replies, list) or not replies:
            result.failures.append(f"{self.sender} «{text}»: empty reply {replies!r}")
            return
        texts = " ".join(str(r.get("text") or "") for r in replies if isinstance(r, dict))
        if result.samples is not None:
            result.samples.append((text, " | ".join(str(r.get("text") or r) for r in replies)))
        found = REFERENCE.findall(texts)
        if label == CONFIRM_LABEL:
            if found:
                result.confirmations += 1
            else:
                result.failures.append(f"{self.sender} «{text}»: no ticket reference in {texts[:200]!r}")
        if found:
            self.last_reference = found[-1]


def session_for(limit: int, timeout: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit + 10, limit_per_host=limit + 10, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


async def run_conversations(bot: Bot, conversations: int, turns: int, timeout: float, tag: str,
                            samples: bool = False) -> Result:
    """`conversations` distinct senders at once, each sending `turns` turns one after the other."""
    result = Result(samples=[] if samples else None)
    async with session_for(conversations, timeout) as session:
        talks = [Conversation(bot, f"bench-{tag}-{i}-{uuid.uuid4().hex[:8]}") for i in range(conversations)]

        async def talk(conversation: Conversation) -> None:
            for _ in range(turns):
                await conversation.say(session, result)

        started = time.perf_counter()
        await asyncio.gather(*(talk(c) for c in talks))
        result.wall_s = time.perf_counter() - started
    return result


async def run_one_at_a_time(bot: Bot, turns: int, length: int, timeout: float) -> Result:
    """`turns` sequential turns, one conversation at a time, each `length` turns long.

    A support conversation is about one cycle of the mix long (a day's session expiry keeps
    them short); Rasa's per-turn cost grows with the tracker, so one endless conversation
    would measure tracker length rather than turn latency (`--conversation-length 0` does that).
    """
    if length <= 0:
        return await run_conversations(bot, 1, turns, timeout, "latency")
    merged = Result()
    done = 0
    while done < turns:
        part = await run_conversations(bot, 1, min(length, turns - done), timeout, f"latency{done}")
        merged.requests += part.requests
        merged.latencies_ms += part.latencies_ms
        merged.failures += part.failures
        merged.confirmations += part.confirmations
        merged.wall_s += part.wall_s
        done += length
    return merged


def summary(result: Result) -> Dict[str, Any]:
    lat = result.latencies_ms
    quarter = max(1, len(lat) // 4)
    return {
        "requests": result.requests,
        "ok": result.requests - len(result.failures),
        "failures": len(result.failures),
        "failure_samples": result.failures[:10],
        "wall_s": round(result.wall_s, 3),
        "messages_per_s": round(result.requests / result.wall_s, 2) if result.wall_s else None,
        "p50_ms": rnd(percentile(lat, 50)),
        "p95_ms": rnd(percentile(lat, 95)),
        "p99_ms": rnd(percentile(lat, 99)),
        "mean_ms": rnd(statistics.fmean(lat)) if lat else None,
        "max_ms": rnd(max(lat)) if lat else None,
        "p50_first_quarter_ms": rnd(percentile(lat[:quarter], 50)),
        "p50_last_quarter_ms": rnd(percentile(lat[-quarter:], 50)),
        "ticket_confirmations": result.confirmations,
    }


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- the run
def load_average() -> Optional[List[float]]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def run_benchmark(name: str, measure: Callable[[Any, "Cleanup"], Any], args: Any) -> Optional[Any]:
    """`asyncio.run(measure(args, cleanup))` with SIGTERM stopping it, everything started
    stopped and removed afterwards (`--keep` keeps the directories); None when start-up failed
    (said on stderr)."""
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    cleanup = Cleanup(keep=args.keep)
    try:
        return asyncio.run(measure(args, cleanup))
    except StartupError as error:
        print(f"{name}: start-up failed: {error}", file=sys.stderr)
        return None
    finally:
        cleanup.run()


def raise_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------- the fake WAHA
WAHA_HMAC_KEY = "bench-hmac-key"
WAHA_API_KEY = "bench-waha-key"
WAHA_BOT = "5491100000000"
# one cycle of distinct messages with distinct replies (so order can be checked); the status
# question goes through the action server and the ledger
WAHA_CYCLE = ["hola", "gracias", "¿eres un bot?", "estado del ticket HD-AAAAAA", "chau"]


class FakeWaha:
    """WAHA's send endpoints, recording each text with the time it arrived."""

    def __init__(self) -> None:
        self.received: Dict[str, List[Tuple[float, str]]] = defaultdict(list)
        self.waiters: Dict[str, asyncio.Event] = {}
        self.count = 0
        self.runner: Optional[web.AppRunner] = None
        self.port = free_port()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/sendText", self.send_text)
        app.router.add_post("/api/{action}", self.other)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def send_text(self, request: web.Request) -> web.Response:
        body = await request.json()
        chat = body["chatId"]
        self.received[chat].append((time.perf_counter(), body["text"]))
        self.count += 1
        event = self.waiters.get(chat)
        if event:
            event.set()
        return web.json_response({"id": {"_serialized": f"true_{chat}_{self.count}"}}, status=201)

    async def other(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"result": True}, status=201)

    async def wait_replies(self, chat: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        event = self.waiters.setdefault(chat, asyncio.Event())
        while len(self.received[chat]) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True


def event_for(number: str, text: str) -> bytes:
    payload = {
        "id": f"evt_{uuid.uuid4().hex[:26]}", "timestamp": int(time.time() * 1000),
        "event": "message", "session": "default",
        "me": {"id": f"{WAHA_BOT}@c.us", "pushName": "Soporte"},
        "payload": {"id": f"false_{number}@c.us_{uuid.uuid4().hex[:20].upper()}",
                    "timestamp": int(time.time()), "from": f"{number}@c.us", "fromMe": False,
                    "body": text, "hasMedia": False, "media": None, "participant": None,
                    "_data": {"notifyName": "Bench"}},
        "engine": "NOWEB",
    }
    return json.dumps(payload).encode()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    signature = hmac.new(WAHA_HMAC_KEY.encode(), body, hashlib.sha512).hexdigest()
    started = time.perf_counter()
    async with session.post(url, data=body, headers={
        "Content-Type": "application/json", "X-Webhook-Hmac": signature,
        "X-Webhook-Hmac-Algorithm": "sha512",
    }) as answer:
        await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"webhook answered {answer.status}")
    return (time.perf_counter() - started) * 1000


class Expected:
    """The replies each message of the cycle calls for, learned in the warm-up."""

    def __init__(self) -> None:
        self.replies: Dict[str, List[str]] = {}

    def sequence(self, messages: List[str]) -> List[str]:
        return [reply for message in messages for reply in self.replies[message]]


async def learn(fake: FakeWaha, webhook: str, session: aiohttp.ClientSession) -> Expected:
    expected = Expected()
    number = f"549{uuid.uuid4().int % 10**10:010d}"
    chat = f"{number}@c.us"
    for text in WAHA_CYCLE:
        before = len(fake.received[chat])
        await post(session, webhook, event_for(number, text))
        if not await fake.wait_replies(chat, before + 1, 30):
            raise RuntimeError(f"no reply to {text!r} in the warm-up")
        await asyncio.sleep(0.3)  # any further reply to the same message
        expected.replies[text] = [t for _, t in fake.received[chat][before:]]
    return expected
