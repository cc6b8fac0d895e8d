"""The Rasa server's doors (issue 11), on the real server the session started with
`python -m helpdesk.launch rasa`: no secret in its argv, its socket on loopback, the HTTP API
open only to a Bearer JWT (a `?token=` query string opens nothing), the REST channel only to
its token."""
from pathlib import Path
from typing import List, Tuple

import requests

from helpdesk.rasa_api import signed_api_token
from tests.stack import AUTH_TOKEN, REST_HEADERS, REST_TOKEN, api_headers


def listening(port: int) -> List[Tuple[str, str]]:
    """(address, table) of every socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append((address, table))
    return found


def test_the_rasa_command_line_holds_no_secret(stack):
    pid = stack.processes["rasa"].pid
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"connectors.server" in argv
    for secret in (AUTH_TOKEN, REST_TOKEN):
        assert not any(secret.encode() in part for part in argv), argv
    assert b"--auth-token" not in argv and b"--jwt-secret" not in argv


def test_the_rasa_server_listens_on_loopback_only(stack):
    port = int(stack.rasa_url.rsplit(":", 1)[1])
    sockets = listening(port)
    assert sockets, f"nothing listens on {port}"
    assert sockets == [("0100007F", "tcp")] * len(sockets)  # 127.0.0.1, IPv4 only


def test_the_api_refuses_the_token_in_the_query_string(stack, sender):
    for params in ({"token": AUTH_TOKEN}, {}):
        answer = requests.get(f"{stack.rasa_url}/conversations/{sender}/tracker", params=params,
                              timeout=10)
        assert answer.status_code == 401, answer.text
        assert answer.json()["reason"] == "NotAuthenticated"


def test_the_api_answers_a_bearer_jwt(stack, sender):
    answer = requests.get(f"{stack.rasa_url}/conversations/{sender}/tracker", headers=api_headers(),
                          timeout=10)
    assert answer.status_code == 200 and answer.json()["sender_id"] == sender
    # signed with another key, or expired: refused
    forged = signed_api_token("not-the-key-" + "x" * 30)
    expired = signed_api_token(AUTH_TOKEN, lifetime=-600)
    for token in (forged, expired, AUTH_TOKEN):
        answer = requests.get(f"{stack.rasa_url}/status", headers={"Authorization": f"Bearer {token}"},
                              timeout=10)
        assert answer.status_code == 401, token


def test_the_rest_channel_needs_its_token(stack, sender):
    url = f"{stack.rasa_url}/webhooks/rest/webhook"
    body = {"sender": sender, "message": "hola"}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    assert requests.post(url, params={"token": REST_TOKEN}, json=body, timeout=30).status_code == 401
    wrong = {"Authorization": f"Bearer {AUTH_TOKEN}"}  # the API's key is not the REST token
    assert requests.post(url, json=body, headers=wrong, timeout=30).status_code == 401
    # nothing reached Rasa: the conversation has no user message
    events = stack.tracker(sender)["events"]
    assert [e for e in events if e["event"] == "user"] == []
    answer = requests.post(url, json=body, headers=REST_HEADERS, timeout=60)
    assert answer.status_code == 200 and answer.json()[0]["text"].startswith("Hola")
