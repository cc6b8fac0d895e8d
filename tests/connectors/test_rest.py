"""The REST channel's doors (connectors/rest.py) over real HTTP: the channels `make run` would
start (helpdesk/launch.py `active_credentials`, read by Rasa's own `create_http_input_channels`)
registered the way the Rasa server registers them, in a Sanic process on a free loopback port
with the session's Redis. In place of the model, an agent that echoes what reached it (the
gate decides before Rasa predicts anything; the real Rasa server is tests/integration)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import requests

from tests.conftest import PROJECT, free_port, wait_for_port

TOKEN = "rest-channel-test-token-0123456789abcdef"

SERVER = """
import json, sys
from pathlib import Path
from sanic import Sanic, response
from rasa.core.channels.channel import register
from rasa.core.run import create_http_input_channels
from helpdesk.launch import active_credentials
from helpdesk.settings import load_settings

seen = Path(sys.argv[2])


class EchoAgent:
    # what reached "Rasa": one JSON line a message, and an answer naming the text
    async def handle_message(self, message):
        with seen.open("a") as out:
            out.write(json.dumps({"sender": message.sender_id, "text": message.text,
                                  "metadata": message.metadata,
                                  "input_channel": message.input_channel}) + "\\n")
        await message.output_channel.send_text_message(message.sender_id, "eco: " + message.text)


app = Sanic("rest_channel_test")
app.ctx.agent = EchoAgent()


@app.get("/")
async def root(request):
    # the Rasa server's own routes stand here (Sanic will not start with no route at all)
    return response.json({"version": "test"})


register(create_http_input_channels(None, str(active_credentials(load_settings()))), app,
         route="/webhooks/")
app.run(host="127.0.0.1", port=int(sys.argv[1]), access_log=False, motd=False)
"""


class Server:
    def __init__(self, env: Dict[str, str], work: Path) -> None:
        self.port = free_port()
        self.seen = work / "seen.jsonl"
        self.seen.touch()
        self.log = work / "server.log"
        self.output = open(self.log, "wb")
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port), str(self.seen)],
                                        cwd=PROJECT, env=env, stdout=self.output,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while not wait_for_port(self.port, 0.5):
            assert self.process.poll() is None and time.monotonic() < deadline, \
                self.log.read_text()[-3000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/rest/webhook"

    def reached(self) -> List[dict]:
        return [json.loads(line) for line in self.seen.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.output.close()


def server_env(redis_url: str, work: Path, **extra: str) -> Dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WAHA_", "META_", "CHATWOOT_", "REST_CHANNEL_"))}
    env.update({"REDIS_URL": redis_url, "HELPDESK_VAR_DIR": str(work / "var"),
                "PYTHONPATH": str(PROJECT), "LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("rest")
    for name in ("on", "off", "generated"):
        (work / name).mkdir()
    return work


@pytest.fixture(scope="module")
def enabled(redis_url: str, work: Path) -> Iterator[Server]:
    server = Server(server_env(redis_url, work / "on", REST_CHANNEL_ENABLED="true",
                               REST_CHANNEL_TOKEN=TOKEN), work / "on")
    yield server
    server.stop()


def say(server: Server, headers: Dict[str, str], **body) -> requests.Response:
    payload = {"sender": "5491122334455", "message": "hola", **body}
    return requests.post(server.url, json=payload, headers=headers, timeout=30)


def bearer(token: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_off_by_default_the_route_is_not_there(redis_url, work):
    server = Server(server_env(redis_url, work / "off"), work / "off")
    try:
        answer = say(server, bearer(TOKEN))
        assert answer.status_code == 404
        assert server.reached() == []  # not answered, nothing reached Rasa
        # what monitoring reads stays
        assert requests.get(server.url.rsplit("/", 1)[0] + "/", timeout=10).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("headers", [
    {},
    bearer("wrong"),
    bearer(TOKEN[:-1]),
    {"Authorization": TOKEN},  # no scheme
    {"Authorization": f"Basic {TOKEN}"},
], ids=["none", "wrong", "prefix", "no-scheme", "basic"])
def test_without_the_token_401_and_nothing_reaches_rasa(enabled, headers):
    before = len(enabled.reached())
    answer = say(enabled, headers)
    assert answer.status_code == 401
    assert "error" in answer.json()
    assert len(enabled.reached()) == before


def test_the_token_in_the_query_string_opens_nothing(enabled):
    before = len(enabled.reached())
    answer = requests.post(f"{enabled.url}?token={TOKEN}", json={"sender": "1", "message": "hola"},
                           timeout=30)
    assert answer.status_code == 401
    assert len(enabled.reached()) == before


def test_with_the_token_the_message_is_answered(enabled):
    answer = say(enabled, bearer(TOKEN), sender="tester-1", message="hola")
    assert answer.status_code == 200, answer.text
    assert [m["text"] for m in answer.json()] == ["eco: hola"]
    assert answer.json()[0]["recipient_id"] == "tester-1"
    # the scheme is case-insensitive, as RFC 7235 says
    assert say(enabled, {"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_only_the_metadata_the_project_defines_passes(enabled):
    metadata = {
        "sender_name": "Ana Pérez",
        "sender_phone": "5491100001111",
        "correlation_id": "abc123",
        "media": [{"path": "/work/main/.env", "mime_type": "text/plain"}],
        "is_external": True,
        "channel": "waha",
        "is_group": True,
        "group_id": "120363000000000001@g.us",
    }
    answer = say(enabled, bearer(TOKEN), sender="tester-2", metadata=metadata,
                 input_channel="waha")
    assert answer.status_code == 200
    [reached] = [m for m in enabled.reached() if m["sender"] == "tester-2"]
    assert reached["metadata"] == {"sender_name": "Ana Pérez", "sender_phone": "5491100001111",
                                   "correlation_id": "abc123"}
    # a REST message never claims another channel's route (the workers answer on "latest")
    assert reached["input_channel"] == "rest"


def test_metadata_values_of_the_wrong_form_are_dropped(enabled):
    metadata = {"sender_phone": "５４９１１０００", "sender_name": "x" * 101,
                "correlation_id": {"nested": 1}}
    say(enabled, bearer(TOKEN), sender="tester-3", metadata=metadata)
    [reached] = [m for m in enabled.reached() if m["sender"] == "tester-3"]
    assert set(reached["metadata"]) == {"correlation_id"}  # a fresh one, made by the channel
    assert reached["metadata"]["correlation_id"] != {"nested": 1}


def test_intent_texts_pass_for_a_tester(enabled):
    say(enabled, bearer(TOKEN), sender="tester-4", message="/greet")
    [reached] = [m for m in enabled.reached() if m["sender"] == "tester-4"]
    assert reached["text"] == "/greet"


def test_without_rest_channel_token_the_installation_generates_one(redis_url, work):
    directory = work / "generated"
    server = Server(server_env(redis_url, directory, REST_CHANNEL_ENABLED="true"), directory)
    try:
        assert say(server, {}).status_code == 401
        path = directory / "var" / "secrets" / "rest_channel_token"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        generated = path.read_text().strip()
        assert len(generated) >= 40
        assert say(server, bearer(generated)).status_code == 200
    finally:
        server.stop()
