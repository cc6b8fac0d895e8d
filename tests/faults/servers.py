"""What the fault drills share: a Rasa server of a drill's own (the part the drill kills or
stalls, or one whose config/ it changes), its config/ and its Redis database.

A drill's server runs on its own Redis database (so the session's server never reads its
inbound log or drains its outbox) with the session's action server and fake gateways.
"""
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import pytest
import redis
import requests
import yaml

from tests.conftest import free_port
from tests.stack import _start, _stop, _wait_http, api_headers


def start_rasa(env: Dict[str, str], log: Path) -> Tuple[Any, str]:
    """A Rasa server with `env`; (process, url) once its model is loaded. Without the session's
    fake Chatwoot (tests/stack.py): the drills' own servers break the WhatsApp path, and a
    mirror write per message would only add to what they measure."""
    env = {name: value for name, value in env.items() if not name.startswith("CHATWOOT_")}
    process = _start("rasa", env, log)
    url = f"http://127.0.0.1:{env['RASA_PORT']}"
    _wait_http(f"{url}/webhooks/waha/", 240, process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/status", headers=api_headers(), timeout=5)
        if status.ok and status.json().get("model_id"):
            return process, url
        time.sleep(0.5)
    pytest.fail(f"the model did not load:\n{log.read_text()[-3000:]}")


def drill_config(stack: Any, target: Path, channels: Dict[Tuple[str, str], Any]) -> Path:
    """The session's test config/ with these channels.yml settings changed:
    {(section, key): value}."""
    shutil.copytree(stack.env["HELPDESK_CONFIG_DIR"], target)
    path = target / "channels.yml"
    settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    for (section, key), value in channels.items():
        settings[section][key] = value
    path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    return target


def database_url(stack: Any, database: int) -> str:
    """The session Redis' database `database` (0 is the session stack's)."""
    return f"{stack.redis_url.rsplit('/', 1)[0]}/{database}"


@contextmanager
def drill_server(stack: Any, work: Path, database: int,
                 channels: Dict[Tuple[str, str], Any]) -> Iterator[Dict[str, Any]]:
    """A Rasa server of the drill's own on Redis database `database` (emptied before and
    after), with these channels.yml settings: {"url", "env", "redis", "log", "process"} (the
    server's process, in a session of its own: its group is the whole server)."""
    config = drill_config(stack, work / "config", channels)
    url = database_url(stack, database)
    env = dict(stack.env, REDIS_URL=url, RASA_PORT=str(free_port()),
               HELPDESK_CONFIG_DIR=str(config))
    client = redis.Redis.from_url(url)
    client.flushdb()
    process, rasa_url = start_rasa(env, work / "rasa.log")
    try:
        yield {"url": rasa_url, "env": env, "redis": client, "log": work / "rasa.log",
               "process": process}
    finally:
        _stop(process)
        client.flushdb()
        client.close()


def rq_jobs(client: redis.Redis, queue: str) -> List[Any]:
    """The jobs waiting in an RQ queue (nothing runs them on a drill's database)."""
    # a drill reads what the server enqueued; RQ is the workers' library, not the code under test
    from rq import Queue

    return Queue(queue, connection=client).get_jobs()


def sends_to(requests_seen: Iterable[Dict[str, Any]], chat_id: str) -> List[str]:
    """What WAHA delivered to a chat (texts and buttons as text), in order."""
    return [r["body"].get("text") or "" for r in requests_seen
            if r["path"].startswith("/api/send") and r["path"] != "/api/sendSeen"
            and not r.get("failed") and (r["body"] or {}).get("chatId") == chat_id]
