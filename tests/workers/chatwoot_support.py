"""What the Chatwoot tests share: a config directory with test timings, the environment that
points the project at the fakes, a real RQ worker run in burst mode, and routes."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
import yaml

from helpdesk import redis_keys
from helpdesk.whatsapp import ROUTE_TTL_SECONDS, Route
from tests.conftest import PROJECT

# retries at once, short timeouts: a burst worker gets through failures in seconds
FAST = {
    "http": {"connect_timeout_seconds": 1, "read_timeout_seconds": 0.5},
    "delivery": {"retry_intervals": [0] * 10, "job_timeout_seconds": 60,
                 "circuit_failure_threshold": 50, "circuit_recovery_seconds": 1},
    "resume": {"connect_timeout_seconds": 1, "read_timeout_seconds": 5},
}


def config_dir(tmp_path: Path, overrides: Optional[Dict[str, Dict[str, Any]]] = None) -> Path:
    """A copy of config/ whose chatwoot.yml has the given sections merged in."""
    target = tmp_path / "config"
    shutil.copytree(PROJECT / "config", target)
    data = yaml.safe_load((target / "chatwoot.yml").read_text(encoding="utf-8"))
    for section, values in {**FAST, **(overrides or {})}.items():
        data.setdefault(section, {}).update(values)
    (target / "chatwoot.yml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


def use_env(monkeypatch: pytest.MonkeyPatch, values: Dict[str, str]) -> Dict[str, str]:
    """Set variables for this process and return the environment for a worker process."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, "PYTHONPATH": str(PROJECT), "WORKER_HEALTH_PORT": "0", "LOG_LEVEL": "INFO"}


def run_worker(env: Dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """One real RQ worker (python -m workers.worker --burst): works the queues, then exits."""
    finished = subprocess.run([sys.executable, "-m", "workers.worker", "--burst"], cwd=PROJECT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def start_worker(env: Dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.worker", "--burst"], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def save_route(client: Any, conversation_id: str, route: Route) -> None:
    key = redis_keys.route(conversation_id)
    client.hset(key, mapping=route.to_hash())
    client.expire(key, ROUTE_TTL_SECONDS)


# the agent webhook, served the way Rasa serves channels ------------------------------------------
WEBHOOK_SERVER = """
import sys
from sanic import Sanic
from rasa.core.channels.channel import register
from connectors.chatwoot import ChatwootInput
app = Sanic("chatwoot_webhook_test")
register([ChatwootInput.from_credentials(None)], app, route="/webhooks/")
app.run(host="127.0.0.1", port=int(sys.argv[1]), access_log=False, motd=False)
"""


def serve_webhook(env: Dict[str, str]) -> "tuple[subprocess.Popen, str]":
    """The connector's blueprint registered with rasa.core.channels.channel.register in a
    Sanic server process on a free port. Returns the process and the webhook URL."""
    from tests.conftest import free_port, wait_for_port

    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", WEBHOOK_SERVER, str(port)], cwd=PROJECT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not wait_for_port(port, 90):
        process.kill()
        pytest.fail(f"webhook server did not start: {process.communicate()[1][-2000:]}")
    return process, f"http://127.0.0.1:{port}/webhooks/chatwoot/webhook"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stderr:
        process.stderr.close()
