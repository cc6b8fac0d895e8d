"""helpdesk/launch.py: REDIS_* variables from REDIS_URL, and the port check."""
import socket

import pytest
import redis

from helpdesk.launch import port_in_use, redis_env


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://127.0.0.1:6390/3",
         {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6390", "REDIS_DB": "3", "REDIS_PASSWORD": ""}),
        ("redis://:secret@host:1234/0",
         {"REDIS_HOST": "host", "REDIS_PORT": "1234", "REDIS_DB": "0", "REDIS_PASSWORD": "secret"}),
        ("redis://user:secret@redis.internal:6380/15",
         {"REDIS_HOST": "redis.internal", "REDIS_PORT": "6380", "REDIS_DB": "15",
          "REDIS_PASSWORD": "secret"}),
        # defaults: loopback, 6379, db 0, no password
        ("redis://",
         {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379", "REDIS_DB": "0", "REDIS_PASSWORD": ""}),
        ("redis://localhost",
         {"REDIS_HOST": "localhost", "REDIS_PORT": "6379", "REDIS_DB": "0", "REDIS_PASSWORD": ""}),
        ("redis://localhost/",
         {"REDIS_HOST": "localhost", "REDIS_PORT": "6379", "REDIS_DB": "0", "REDIS_PASSWORD": ""}),
        ("redis://127.0.0.1:6379/0",
         {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379", "REDIS_DB": "0", "REDIS_PASSWORD": ""}),
    ],
)
def test_redis_env(url, expected):
    assert redis_env(url) == expected


def test_redis_env_values_are_text():
    assert all(isinstance(v, str) for v in redis_env("redis://:pw@h:1/2").values())


def test_redis_env_decodes_the_password_like_redis_py():
    url = "redis://:p%40ss:w%2Frd@host:1234/0"
    assert redis.connection.parse_url(url)["password"] == "p@ss:w/rd"
    assert redis_env(url)["REDIS_PASSWORD"] == "p@ss:w/rd"


def test_port_in_use_for_a_listening_socket():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert port_in_use(port) is True
        assert port_in_use(port, "127.0.0.1") is True
    # closed again: nobody listens there any more
    assert port_in_use(port) is False


def test_port_not_in_use_for_a_closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        # bound but not listening: a connection is refused
        assert port_in_use(port) is False
    assert port_in_use(port) is False


def test_port_in_use_for_the_test_redis(redis_url):
    port = int(redis_env(redis_url)["REDIS_PORT"])
    assert port_in_use(port) is True


# --- webhook secrets ----------------------------------------------------------------------

WEBHOOK_ENV = ("WAHA_", "META_", "CHATWOOT_", "HELPDESK_INSECURE_WEBHOOKS")
WAHA = {"WAHA_BASE_URL": "http://127.0.0.1:9"}
META = {"META_ACCESS_TOKEN": "t", "META_PHONE_NUMBER_ID": "1"}
CHATWOOT = {"CHATWOOT_URL": "http://127.0.0.1:9", "CHATWOOT_API_TOKEN": "t",
            "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_INBOX_ID": "2"}


def _launch(process: str, extra: dict) -> "subprocess.CompletedProcess":
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT

    env = {k: v for k, v in os.environ.items() if not k.startswith(WEBHOOK_ENV)}
    env.update({"PYTHONPATH": str(PROJECT), **extra})
    return subprocess.run([sys.executable, "-m", "helpdesk.launch", process], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("process", ["rasa", "ingress"])
@pytest.mark.parametrize("configured, named", [
    (WAHA, ["WAHA_WEBHOOK_HMAC_KEY"]),
    (META, ["META_APP_SECRET"]),
    (CHATWOOT, ["CHATWOOT_WEBHOOK_TOKEN or CHATWOOT_WEBHOOK_SECRET"]),
    ({**WAHA, **META}, ["WAHA_WEBHOOK_HMAC_KEY", "META_APP_SECRET"]),
])
def test_a_channel_without_its_webhook_secret_refuses_to_start_in_one_line(process, configured,
                                                                          named):
    result = _launch(process, configured)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert all(variable in lines[0] for variable in named), lines[0]
    assert "HELPDESK_INSECURE_WEBHOOKS=true" in lines[0] and "refusing to start" in lines[0]


def test_the_development_setting_or_the_secrets_let_them_start(monkeypatch):
    from helpdesk import launch

    for name, value in {**WAHA, **META, **CHATWOOT}.items():
        monkeypatch.setenv(name, value)
    for name in ("WAHA_WEBHOOK_HMAC_KEY", "META_APP_SECRET", "CHATWOOT_WEBHOOK_TOKEN",
                 "CHATWOOT_WEBHOOK_SECRET", "HELPDESK_INSECURE_WEBHOOKS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit):
        launch.check_webhook_secrets()
    monkeypatch.setenv("HELPDESK_INSECURE_WEBHOOKS", "true")
    launch.check_webhook_secrets()
    monkeypatch.delenv("HELPDESK_INSECURE_WEBHOOKS")
    for name in ("WAHA_WEBHOOK_HMAC_KEY", "META_APP_SECRET", "CHATWOOT_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "s")
    launch.check_webhook_secrets()
    # Chatwoot configured is a channel that runs (and so must have its secret)
    assert "connectors.chatwoot.ChatwootInput" in launch.enabled_channels()
