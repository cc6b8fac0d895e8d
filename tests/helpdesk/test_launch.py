"""helpdesk/launch.py: REDIS_* variables from REDIS_URL, the port check, and what the Rasa
server is started with (no secret on its command line, loopback, the REST channel off)."""
import socket

import pytest
import redis

from helpdesk.launch import (
    banner,
    command_for,
    free_port,
    port_in_use,
    redis_env,
    stack_env,
)
from helpdesk.settings import load_settings, rasa_api_secret


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


# --- the Rasa server's command line and channels (issue 11) ---------------------------------
SECRET = "rasa-api-secret-that-must-never-be-on-a-command-line"


@pytest.fixture
def rasa_env(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RASA_PORT", str(free_port()))
    monkeypatch.setenv("RASA_AUTH_TOKEN", SECRET)
    monkeypatch.setenv("REST_CHANNEL_TOKEN", "rest-" + SECRET)
    monkeypatch.delenv("RASA_HOST", raising=False)
    monkeypatch.delenv("REST_CHANNEL_ENABLED", raising=False)


def test_the_rasa_command_line_holds_no_secret_and_binds_loopback(rasa_env):
    command = command_for("rasa", load_settings())
    assert command[1:3] == ["-m", "connectors.server"]
    assert not any(SECRET in part for part in command)
    assert "--auth-token" not in command and "--jwt-secret" not in command
    assert command[command.index("--interface") + 1] == "127.0.0.1"


def test_rasa_host_moves_the_rasa_server(rasa_env, monkeypatch):
    monkeypatch.setenv("RASA_HOST", "0.0.0.0")
    command = command_for("rasa", load_settings())
    assert command[command.index("--interface") + 1] == "0.0.0.0"


def test_rasa_shell_answers_only_on_loopback(rasa_env):
    command = command_for("rasa-shell", load_settings())
    assert command[command.index("--interface") + 1] == "127.0.0.1"
    assert not any(SECRET in part for part in command)


def test_a_throw_away_stack_has_the_rest_channel_on_with_a_token(tmp_path):
    env = stack_env({}, redis_url="redis://127.0.0.1:1/0", rasa_port=1, actions_port=2,
                    work_dir=tmp_path, model=tmp_path / "m.tar.gz", auth_token="t" * 40)
    assert env["REST_CHANNEL_ENABLED"] == "true"
    assert env["REST_CHANNEL_TOKEN"] and env["REST_CHANNEL_TOKEN"] != env["RASA_AUTH_TOKEN"]


def test_without_rasa_auth_token_the_api_key_is_generated_once(monkeypatch, tmp_path):
    monkeypatch.delenv("RASA_AUTH_TOKEN", raising=False)
    first = rasa_api_secret(load_settings())
    assert len(first) >= 40 and rasa_api_secret(load_settings()) == first
    path = tmp_path / "var" / "secrets" / "rasa_auth_token"
    assert path.read_text().strip() == first and oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_banner_says_what_listens_where(monkeypatch):
    monkeypatch.delenv("REST_CHANNEL_ENABLED", raising=False)
    monkeypatch.setenv("INGRESS_HOST", "0.0.0.0")
    text = banner(load_settings())
    assert "Rasa server    http://127.0.0.1:" in text
    assert "REST channel off: REST_CHANNEL_ENABLED=true" in text
    assert "ingress        http://0.0.0.0:" in text
