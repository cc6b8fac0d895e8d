"""Drill: kill -9 each process `make run` starts, in turn, then Ctrl-C.

Must hold: the killed process is running again within 10 s, the others keep their pid (they
were not stopped or restarted) and keep serving; Ctrl-C (SIGINT to supervisord) stops every
process and leaves none behind.

Before helpdesk/processes.py, honcho terminated every other process as soon as one exited and
restarted nothing: one dead worker stopped the whole bot.

`python -m helpdesk.launch supervise` as `make run` runs it, on a throw-away environment: its own
Redis (a password, persistence in the drill's var/), ports, ledger and var/; the trained model.
"""
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

import pytest
import requests

from tests.conftest import PROJECT, free_port
from tests.stack import AUTH_TOKEN, MODEL

KILL_ORDER = ("rasa", "worker:worker-0", "actions", "ingress", "redis", "worker:worker-1")


def _status(conf: Path) -> Dict[str, tuple]:
    """{name: (state, pid)} from supervisorctl."""
    answer = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(conf),
                             "status"], capture_output=True, text=True, timeout=20)
    found = {}
    for line in answer.stdout.splitlines():
        match = re.match(r"^(\S+)\s+(\S+)\s*(?:pid (\d+))?", line)
        if match:
            found[match.group(1)] = (match.group(2), int(match.group(3) or 0))
    return found


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"{what} within {seconds:g} s")


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_process_comes_back_alone_and_ctrl_c_stops_everything(tmp_path):
    ports = {name: free_port() for name in ("redis", "rasa", "actions", "ingress", "health")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WAHA_", "META_",
                                                                     "CHATWOOT_", "ZOHO_"))},
        "REDIS_URL": f"redis://:{secrets.token_urlsafe(12)}@127.0.0.1:{ports['redis']}/0",
        "RASA_PORT": str(ports["rasa"]), "ACTIONS_PORT": str(ports["actions"]),
        "INGRESS_PORT": str(ports["ingress"]), "WORKER_HEALTH_PORT": str(ports["health"]),
        "HELPDESK_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "RASA_AUTH_TOKEN": AUTH_TOKEN, "RASA_MODEL": str(MODEL), "WORKERS": "2",
        "PYTHONPATH": str(PROJECT), "LOG_LEVEL": "WARNING",
    }
    log = open(tmp_path / "supervise.log", "wb")
    manager = subprocess.Popen([sys.executable, "-m", "helpdesk.launch", "supervise"],
                               cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    conf = tmp_path / "var" / "supervisord.conf"
    health = {
        "rasa": f"http://127.0.0.1:{ports['rasa']}/",
        "actions": f"http://127.0.0.1:{ports['actions']}/health",
        "ingress": f"http://127.0.0.1:{ports['ingress']}/health",
        "worker:worker-0": f"http://127.0.0.1:{ports['health']}/health",
    }
    seen_pids = set()
    try:
        _wait(lambda: conf.is_file() and len(_status(conf)) == 6, 60, "supervisord did not start")
        for name, url in health.items():
            _wait(lambda: _up(url), 240, f"{name} did not serve")
        assert all(state == "RUNNING" for state, _pid in _status(conf).values())

        for name in KILL_ORDER:
            before = _status(conf)
            seen_pids.update(pid for _state, pid in before.values())
            os.kill(before[name][1], signal.SIGKILL)
            after = _wait(lambda: (lambda now: now if now[name][0] == "RUNNING"
                                   and now[name][1] != before[name][1] else None)(_status(conf)),
                          10, f"{name} was not running again")
            for other, (state, pid) in before.items():
                if other != name:
                    assert after[other] == (state, pid), f"{other} was touched when {name} died"
            for other, url in health.items():
                if other not in (name, "rasa"):
                    _wait(lambda: _up(url), 30, f"{other} stopped serving when {name} died")
        # the Rasa server, killed first, loaded its model again meanwhile
        _wait(lambda: _up(health["rasa"]), 240, "the Rasa server did not serve again")
        seen_pids.update(pid for _state, pid in _status(conf).values())
    finally:
        manager.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            manager.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(manager.pid, signal.SIGKILL)
            pytest.fail("supervisord did not stop within 60 s")
        finally:
            log.close()
    assert manager.returncode == 0
    left = [pid for pid in seen_pids if pid and _alive(pid)]
    assert left == [], f"processes left behind: {left}"
    for name, url in health.items():
        assert not _up(url), f"{name} still answers after Ctrl-C"
