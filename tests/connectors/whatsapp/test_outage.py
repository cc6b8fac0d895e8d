"""connectors/whatsapp/outage.py: Rasa's own RemoteAction calling a closed port or a loopback
HTTP server that answers what a stopped or broken action server answers. Inside a WhatsApp
turn (`guarded`) an unreachable action server stops the turn; anything else, and everything
outside a turn, stays Rasa's RasaException."""
import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.domain import Domain
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig

from connectors.whatsapp import outage
from tests.conftest import free_port


class _Answer(BaseHTTPRequestHandler):
    status = 503

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": "x"}).encode()
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _run_action(url: str, guard: bool) -> None:
    outage.install()
    action = RemoteAction("action_submit_incident", EndpointConfig(url))
    tracker = DialogueStateTracker("t-1", [])

    async def call() -> None:
        if guard:
            with outage.guarded():
                await action.run(None, None, tracker, Domain.empty())
        else:
            await action.run(None, None, tracker, Domain.empty())

    asyncio.run(call())


def test_a_closed_port_in_a_turn_stops_the_turn():
    url = f"http://127.0.0.1:{free_port()}/webhook"
    with pytest.raises(outage.ActionServerDown) as raised:
        _run_action(url, guard=True)
    assert raised.value.action == "action_submit_incident"
    assert raised.value.cause.endswith("Error")  # aiohttp's connection error class
    # a BaseException: Rasa's `except Exception` around actions lets it through
    assert not isinstance(raised.value, Exception)


def test_a_closed_port_outside_a_turn_is_rasas_own_error():
    with pytest.raises(RasaException):
        _run_action(f"http://127.0.0.1:{free_port()}/webhook", guard=False)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_proxy_without_its_server_stops_the_turn(answering, status):
    answering.status = status  # type: ignore[attr-defined]
    with pytest.raises(outage.ActionServerDown) as raised:
        _run_action(f"http://127.0.0.1:{answering.server_port}/webhook", guard=True)
    assert raised.value.cause == f"HTTP {status}"


def test_an_action_that_fails_keeps_rasas_behaviour(answering):
    answering.status = 500  # type: ignore[attr-defined]  # the SDK's answer to a raising action
    with pytest.raises(RasaException):
        _run_action(f"http://127.0.0.1:{answering.server_port}/webhook", guard=True)


def test_the_guard_ends_with_its_block():
    with outage.guarded():
        assert outage._guarded.get()
    assert not outage._guarded.get()
