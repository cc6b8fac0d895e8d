"""The action server (actions/server.py), started as `make run` starts it
(`python -m helpdesk.launch actions`): every call but /health needs the shared token, and it
listens on loopback only."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest
import requests
from rasa.shared.core.trackers import EventVerbosity

from helpdesk.local_secrets import local_secret
from helpdesk.tickets import Ledger
from tests.actions.helpers import SENDER, Conversation, domain_dict
from tests.conftest import PROJECT, free_port

INCIDENT = "se cayó el POS en la tienda 42, no podemos vender"


class ActionServer:
    def __init__(self, url: str, port: int, env: Dict[str, str], process: subprocess.Popen, log: Path):
        self.url, self.port, self.env, self.process, self.log = url, port, env, process, log

    @property
    def token(self) -> str:
        # what helpdesk.launch gave it: ACTION_SERVER_TOKEN unset, so the generated one
        return local_secret("action_server_token", Path(self.env["HELPDESK_VAR_DIR"]))

    def ledger(self) -> Ledger:
        return Ledger(self.env["DATABASE_URL"])


@pytest.fixture(scope="module")
def action_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActionServer]:
    work = tmp_path_factory.mktemp("action-server")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("ZOHO_", "LLM_", "CHATWOOT_", "ACTION", "SANIC_"))},
        "REDIS_URL": redis_url,
        "ACTIONS_PORT": str(port),
        "HELPDESK_VAR_DIR": str(work / "var"),
        "DATABASE_URL": f"sqlite:///{work / 'ledger.sqlite3'}",
        "PYTHONPATH": str(PROJECT),
        "LOG_LEVEL": "INFO",
    }
    log = work / "actions.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "helpdesk.launch", "actions"], cwd=PROJECT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the action server exited:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the action server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield ActionServer(url, port, env, process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)


def forged_submit(sender: str) -> dict:
    """What Rasa would post to run action_submit_ticket for a confirmed ticket, made up."""
    conversation = Conversation(sender_id=sender)
    conversation.user(INCIDENT, "report_incident", [("store", "tienda 42"), ("system", "POS")],
                      store="tienda 42", system="POS")
    conversation.activate_form()
    conversation.slot("description", INCIDENT).slot("confirm_ticket", True)
    conversation.deactivate_form()
    return {
        "next_action": "action_submit_ticket",
        "sender_id": sender,
        "tracker": conversation.rasa_tracker().current_state(EventVerbosity.ALL),
        "domain": domain_dict(),
        "version": "3.6.21",
    }


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": "not-the-token"},
    {"X-Action-Token": "anything"},
], ids=["missing", "wrong", "no scheme", "other header"])
def test_a_forged_call_without_the_token_runs_nothing(action_server, headers):
    sender = f"forged-{len(headers)}-{time.monotonic_ns()}"
    answer = requests.post(f"{action_server.url}/webhook", json=forged_submit(sender), headers=headers, timeout=30)

    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert action_server.ledger().recent_for(sender, 10) == []
    listed = requests.get(f"{action_server.url}/actions", headers=headers, timeout=10)
    assert listed.status_code == 401


def test_the_token_is_checked_whole(action_server):
    """A prefix or the token with something appended is as wrong as any other."""
    for given in (action_server.token[:-1], action_server.token + "x", ""):
        answer = requests.get(f"{action_server.url}/actions", headers={"Authorization": f"Bearer {given}"},
                              timeout=10)
        assert answer.status_code == 401


def test_with_the_token_the_action_runs(action_server):
    sender = f"genuine-{time.monotonic_ns()}"
    answer = requests.post(f"{action_server.url}/webhook", json=forged_submit(sender),
                           headers={"Authorization": f"Bearer {action_server.token}"}, timeout=60)

    assert answer.status_code == 200, answer.text
    assert [r["response"] for r in answer.json()["responses"]] == ["utter_ticket_recorded"]
    [record] = action_server.ledger().recent_for(sender, 10)
    assert record.system == "POS"
    listed = requests.get(f"{action_server.url}/actions",
                          headers={"Authorization": f"Bearer {action_server.token}"}, timeout=10)
    assert {"name": "action_submit_ticket"} in listed.json()


def test_ready_is_open_runs_nothing_and_names_its_checks(action_server):
    answer = requests.get(f"{action_server.url}/ready", timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready" and body["not_ready"] == []
    assert set(body["checks"]) == {"redis", "ledger", "zoho"}  # not itself


def test_health_stays_open_and_says_nothing_else(action_server):
    answer = requests.get(f"{action_server.url}/health", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_a_refusal_is_logged_without_the_token(action_server):
    requests.get(f"{action_server.url}/actions", headers={"Authorization": "Bearer guessed-token-123"}, timeout=10)
    deadline = time.monotonic() + 5
    while "action server call refused" not in action_server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = action_server.log.read_text()
    assert '"reason": "wrong token"' in text
    assert "guessed-token-123" not in text and action_server.token not in text


def listening_addresses(port: int) -> set:
    """Local addresses of the sockets listening on `port` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.add(address)
    return found


def test_it_listens_on_loopback_only(action_server):
    # 0100007F is 127.0.0.1 (little-endian); 00000000 would be every interface
    assert listening_addresses(action_server.port) == {"0100007F"}


def test_the_token_is_not_on_the_command_line(action_server):
    """`ps` shows argv to every user: the token travels in the environment."""
    pids = [action_server.process.pid]
    children = Path(f"/proc/{action_server.process.pid}/task/{action_server.process.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for pid in pids:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert action_server.token not in argv
        assert "actions.server" in argv
