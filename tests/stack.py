"""The real stack for integration tests and fault drills: Redis, the action server, the Rasa
server with the trained model and the ingress, started once per session on free ports, stopped
at the end, with the fake WhatsApp gateways and a fake Chatwoot (so a handoff pauses the bot). A pytest plugin (pytest.ini `-p tests.stack`), so tests/integration/ and
tests/faults/ share one stack; tests import its helpers from here."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from helpdesk.launch import stack_env
from helpdesk.rasa_api import signed_api_token
from tests.conftest import PROJECT, free_port, wait_for_port
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.gateways import FakeMeta, FakeWaha

# HELPDESK_TEST_MODEL: test another trained model (one trained into a private directory)
MODEL = Path(os.environ.get("HELPDESK_TEST_MODEL") or PROJECT / "models" / "helpdesk.tar.gz")
AUTH_TOKEN = "integration-test-token-0123456789abcdef"  # the HTTP API's JWT secret (RASA_AUTH_TOKEN)
REST_TOKEN = "integration-rest-token"  # the REST channel's (REST_CHANNEL_TOKEN)
REST_HEADERS = {"Authorization": f"Bearer {REST_TOKEN}"}
WAHA_KEY = "waha-key"
WAHA_HMAC = "waha-hmac-secret"
META_TOKEN = "meta-token"
META_SECRET = "meta-app-secret"
META_VERIFY = "meta-verify-token"
META_PHONE_ID = "106540352242922"
CHATWOOT_WEBHOOK_TOKEN = "chatwoot-webhook-token"  # the agent webhook's ?token= (Chatwoot's way)
# channel settings for tests: quick retries, so outages end within a test
TEST_CHANNEL_SETTINGS = {
    ("outbound", "outbox_backoff_seconds"): [0.2, 0.5, 1],
    ("outbound", "retry_delay_ms"): 50,
    ("outbound", "typing"): False,
    # a media fetch read by a stopped or killed process is taken over after 2 s, not 30
    ("media", "fetch_claim_seconds"): 2,
}
# follow-up timings for tests (config/followups.yml): a reminder after 2 s of silence; the
# close of a silent thread far enough away that it never fires on its own during the session
TEST_FOLLOWUP_SETTINGS = {
    ("reask", "delay_seconds"): 2,
    ("thread", "timeout_seconds"): 3600,
    ("jobs", "retry_intervals"): [1, 1],
}


def test_config_dir(work: Path) -> Path:
    """config/ with TEST_CHANNEL_SETTINGS applied to channels.yml, TEST_FOLLOWUP_SETTINGS to
    followups.yml and the same-incident check within groups (dialogue.yml)."""
    import shutil

    import yaml

    target = work / "config"
    shutil.copytree(PROJECT / "config", target)
    channels = yaml.safe_load((target / "channels.yml").read_text(encoding="utf-8"))
    for (section, key), value in TEST_CHANNEL_SETTINGS.items():
        channels[section][key] = value
    (target / "channels.yml").write_text(yaml.safe_dump(channels, allow_unicode=True),
                                         encoding="utf-8")
    # follow-ups (issue 4): seconds instead of minutes (tests/integration/test_followups.py)
    followups = yaml.safe_load((target / "followups.yml").read_text(encoding="utf-8"))
    for (section, key), value in TEST_FOLLOWUP_SETTINGS.items():
        followups.setdefault(section, {})[key] = value
    (target / "followups.yml").write_text(yaml.safe_dump(followups), encoding="utf-8")
    # one outage, one ticket compares within a group here: every test of the session shares
    # one ledger, and most report the POS of store 42 from a chat of their own (the "all"
    # scope is tested in tests/actions/test_same_incident.py)
    dialogue = yaml.safe_load((target / "dialogue.yml").read_text(encoding="utf-8"))
    dialogue["same_incident"]["scope"] = "group"
    (target / "dialogue.yml").write_text(yaml.safe_dump(dialogue, allow_unicode=True),
                                         encoding="utf-8")
    return target


def api_headers() -> Dict[str, str]:
    """A call to Rasa's HTTP API: a fresh admin JWT signed with AUTH_TOKEN (helpdesk.rasa_api)."""
    return {"Authorization": f"Bearer {signed_api_token(AUTH_TOKEN)}"}


@dataclass
class Stack:
    rasa_url: str
    actions_port: int
    database_url: str
    redis_url: str
    logs: Dict[str, Path]
    env: Dict[str, str]
    processes: Dict[str, subprocess.Popen] = field(default_factory=dict)
    ingress_url: str = ""

    def say(self, sender: str, text: Any, metadata: Optional[dict] = None, **kwargs: Any) -> List[dict]:
        payload: Dict[str, Any] = {"sender": sender, "message": text}
        if metadata is not None:
            payload["metadata"] = metadata
        headers = {**REST_HEADERS, **kwargs.pop("headers", {})}
        answer = requests.post(f"{self.rasa_url}/webhooks/rest/webhook", json=payload, timeout=60,
                               headers=headers, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def texts(self, sender: str, text: Any, **kwargs: Any) -> List[str]:
        return [m.get("text", "") for m in self.say(sender, text, **kwargs)]

    def tracker(self, sender: str) -> dict:
        answer = requests.get(
            f"{self.rasa_url}/conversations/{sender}/tracker",
            headers=api_headers(),
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(encoding="utf-8", errors="replace")


def _start(name: str, env: Dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "helpdesk.launch", name],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _wait_http(url: str, seconds: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} process exited early:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not come up in {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def fake_waha() -> Iterator[FakeWaha]:
    with FakeWaha(api_key=WAHA_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def fake_meta() -> Iterator[FakeMeta]:
    with FakeMeta(token=META_TOKEN, phone_number_id=META_PHONE_ID) as server:
        yield server


@pytest.fixture(scope="session")
def fake_chatwoot() -> Iterator[FakeChatwoot]:
    """The session's Chatwoot: every conversation is mirrored into it and a handoff pauses
    the bot until an agent resolves (tests/integration/test_handback.py)."""
    with FakeChatwoot() as server:
        yield server


def gateway_env(fake_waha: FakeWaha, fake_meta: FakeMeta) -> Dict[str, str]:
    return {
        "WAHA_BASE_URL": fake_waha.url,
        "WAHA_API_KEY": WAHA_KEY,
        "WAHA_SESSION": "default",
        "WAHA_WEBHOOK_HMAC_KEY": WAHA_HMAC,
        "META_ACCESS_TOKEN": META_TOKEN,
        "META_APP_SECRET": META_SECRET,
        "META_VERIFY_TOKEN": META_VERIFY,
        "META_PHONE_NUMBER_ID": META_PHONE_ID,
        "META_GRAPH_URL": fake_meta.url,
        "META_API_VERSION": "v21.0",
    }


@pytest.fixture(scope="session")
def stack(redis_url: str, fake_waha: FakeWaha, fake_meta: FakeMeta,
          fake_chatwoot: FakeChatwoot) -> Iterator[Stack]:
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} is missing: run `make train` (make test does it)")
    work = Path(tempfile.mkdtemp(prefix="helpdesk-it-"))
    rasa_port, actions_port = free_port(), free_port()
    base_env = {**os.environ, **gateway_env(fake_waha, fake_meta), **fake_chatwoot.env(),
                "CHATWOOT_WEBHOOK_TOKEN": CHATWOOT_WEBHOOK_TOKEN,
                "HELPDESK_CONFIG_DIR": str(test_config_dir(work))}
    env = stack_env(
        base_env,
        redis_url=redis_url,
        rasa_port=rasa_port,
        actions_port=actions_port,
        work_dir=work,
        model=MODEL,
        auth_token=AUTH_TOKEN,
        rest_token=REST_TOKEN,
    )
    ingress_port = free_port()
    env["INGRESS_PORT"] = str(ingress_port)
    database_url = env["DATABASE_URL"]
    logs = {"actions": work / "actions.log", "rasa": work / "rasa.log",
            "ingress": work / "ingress.log"}
    stack = Stack(
        rasa_url=f"http://127.0.0.1:{rasa_port}",
        actions_port=actions_port,
        database_url=database_url,
        redis_url=redis_url,
        logs=logs,
        env=env,
    )
    try:
        stack.processes["actions"] = _start("actions", env, logs["actions"])
        stack.processes["rasa"] = _start("rasa", env, logs["rasa"])
        stack.processes["ingress"] = _start("ingress", env, logs["ingress"])
        stack.ingress_url = f"http://127.0.0.1:{ingress_port}"
        _wait_http(f"http://127.0.0.1:{actions_port}/health", 90, stack.processes["actions"], logs["actions"])
        _wait_http(f"{stack.ingress_url}/health", 60, stack.processes["ingress"], logs["ingress"])
        _wait_http(f"{stack.rasa_url}/webhooks/rest/", 240, stack.processes["rasa"], logs["rasa"])
        # the model is loaded when /status names it
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = requests.get(f"{stack.rasa_url}/status", headers=api_headers(), timeout=5)
            if status.ok and status.json().get("model_id"):
                break
            time.sleep(0.5)
        yield stack
    finally:
        for process in stack.processes.values():
            _stop(process)


@pytest.fixture
def sender() -> str:
    """A fresh conversation id per test."""
    return f"it-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bot_ledger(stack: Stack):
    from helpdesk.tickets import Ledger

    return Ledger(stack.database_url)


def json_lines(text: str) -> List[dict]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries
