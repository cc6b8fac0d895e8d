"""helpdesk/launch.py: REDIS_* variables from REDIS_URL, the port check, the secrets each
process gets (in its environment or stdin, never its argv), and what the Rasa server is started
with (no secret on its command line, loopback, the REST channel off)."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from helpdesk.launch import (
    banner,
    command_for,
    free_port,
    port_in_use,
    process_env,
    redis_config,
    redis_env,
    redis_server_config,
    stack_env,
    wait_for_port,
)
from helpdesk.local_secrets import local_secret
from helpdesk.settings import load_settings, rasa_api_secret
from tests.conftest import PROJECT


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


# --- secrets reach the processes through their environment, never argv ----------------------
def own_settings(monkeypatch, tmp_path, **env):
    from helpdesk.settings import load_settings

    monkeypatch.setenv("HELPDESK_VAR_DIR", str(tmp_path / "var"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ACTION_SERVER_TOKEN", raising=False)
    return load_settings()


def test_the_action_token_goes_to_the_action_server_and_its_callers_only(monkeypatch, tmp_path):
    settings = own_settings(monkeypatch, tmp_path)
    tokens = {name: process_env(name, settings).get("ACTION_SERVER_TOKEN")
              for name in ("actions", "rasa", "interactive", "rasa-shell", "worker", "ingress", "redis")}
    shared = tokens["actions"]
    assert shared and len(shared) >= 32
    assert tokens["rasa"] == tokens["interactive"] == tokens["rasa-shell"] == shared
    assert tokens["worker"] is tokens["ingress"] is tokens["redis"] is None
    # generated once into var/secrets/, owner-only
    assert (tmp_path / "var" / "secrets" / "action_server_token").stat().st_mode & 0o077 == 0


def test_an_operator_token_from_env_wins(monkeypatch, tmp_path):
    settings = own_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("ACTION_SERVER_TOKEN", "operator-chosen-token")
    from helpdesk.settings import action_server_token

    assert action_server_token(settings) == "operator-chosen-token"


def test_no_secret_on_a_command_line(monkeypatch, tmp_path):
    settings = own_settings(monkeypatch, tmp_path, ACTIONS_PORT=str(free_port()),
                            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr("helpdesk.launch.wait_for_redis", lambda *a, **k: None)
    secrets = [process_env("actions", settings)["ACTION_SERVER_TOKEN"],
               redis_env(settings.redis_url)["REDIS_PASSWORD"]]
    assert all(secrets)
    for name in ("redis", "actions", "worker"):
        argv = " ".join(command_for(name, settings))
        assert not any(secret in argv for secret in secrets), name
    assert command_for("actions", settings)[1:3] == ["-m", "actions.server"]
    assert not any(secret in banner(settings) for secret in secrets)
    assert f'requirepass "{secrets[1]}"' in redis_config(settings)


def test_redis_server_config_fsyncs_every_write_unless_told_otherwise(tmp_path):
    lines = redis_server_config(6390, tmp_path, "pw").splitlines()
    assert "appendonly yes" in lines and "appendfsync always" in lines and 'save ""' in lines
    assert "appendfsync everysec" in redis_server_config(6390, tmp_path, "pw", appendfsync="everysec").splitlines()
    with pytest.raises(ValueError):
        redis_server_config(6390, tmp_path, "pw", appendfsync="sometimes")


def test_every_process_gets_the_redis_url_with_its_password(monkeypatch, tmp_path):
    settings = own_settings(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6399/2")
    for name in ("actions", "rasa", "worker", "ingress", "interactive", "rasa-shell"):
        variables = process_env(name, settings)
        assert variables["REDIS_URL"] == settings.redis_url
        assert variables["REDIS_PASSWORD"] == redis_env(settings.redis_url)["REDIS_PASSWORD"] != ""


def _start(name, env, log):
    return subprocess.Popen([sys.executable, "-m", "helpdesk.launch", name], cwd=PROJECT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_make_runs_redis_requires_its_password_and_the_worker_has_it(tmp_path):
    """`helpdesk.launch redis` with the default kind of REDIS_URL (loopback, no password): the
    server requires the generated password, given on stdin (not in `ps`); a client without it
    is refused while a worker started by helpdesk.launch works."""
    redis_port, health_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "CHATWOOT_", "LLM_"))},
           "HELPDESK_VAR_DIR": str(tmp_path / "var"), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}", "PYTHONPATH": str(PROJECT),
           "WORKER_HEALTH_PORT": str(health_port)}
    env.pop("REDIS_PASSWORD", None)
    log = open(tmp_path / "launch.log", "wb")
    server = _start("redis", env, log)
    worker = None
    try:
        assert wait_for_port(redis_port, 15), (tmp_path / "launch.log").read_text()
        password = local_secret("redis_password", tmp_path / "var")
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode(errors="replace")
        assert password not in argv

        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, socket_timeout=2).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, password="guess", socket_timeout=2).ping()
        client = redis.Redis(port=redis_port, password=password, socket_timeout=2)
        assert client.ping()
        # durability (issue 12): the append-only file alone, fsynced before each write is
        # answered, so an acknowledged webhook survives a power loss
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("save") == {"save": ""}

        worker = _start("worker", env, log)
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{health_port}/health", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.3)
        assert health is not None and health.status_code == 200, (tmp_path / "launch.log").read_text()[-3000:]
        assert health.json()["checks"]["redis"]["status"] == "ok"
        assert password not in (tmp_path / "launch.log").read_text()
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
        log.close()


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
    monkeypatch.delenv("INGRESS_HOST")
    assert "ingress        http://127.0.0.1:" in banner(load_settings())  # loopback by default


def test_the_banner_says_where_metrics_are_served(monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    monkeypatch.delenv("INGRESS_HOST", raising=False)
    assert "metrics        off: METRICS_TOKEN in .env" in banner(load_settings())
    monkeypatch.setenv("METRICS_TOKEN", "a-secret-token-value")
    text = banner(load_settings())
    assert "/metrics  (Authorization: Bearer METRICS_TOKEN)" in text
    assert "a-secret-token-value" not in text  # the variable's name, never its value
