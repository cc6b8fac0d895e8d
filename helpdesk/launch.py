"""Start one of the project's processes with its environment prepared.

    python -m helpdesk.launch redis|actions|rasa|ingress|worker|interactive|rasa-shell|banner|env
    python -m helpdesk.launch supervise   (`make run`: every process, under supervisord)

Reads `.env`, applies defaults, derives REDIS_HOST/PORT/DB/PASSWORD from REDIS_URL for
`endpoints.yml`, checks that the port is free (a clear message instead of a traceback), waits
for Redis where the process needs it, then replaces itself with the real program, so the
process manager's signals reach it directly. `supervise` writes supervisord's configuration
from the Procfile (helpdesk/processes.py) and becomes supervisord.

Secrets go to the programs through their environment (or stdin), never their command line:
REDIS_URL with the Redis password (helpdesk.settings: the generated one for the project's own
Redis), and ACTION_SERVER_TOKEN for the action server and the Rasa processes that call it
(endpoints.yml sends it as `Authorization: Bearer ...`).

The Rasa server is `python -m connectors.server` (Rasa's `rasa run` in-process), so the
HTTP API's key (RASA_AUTH_TOKEN, or the generated one) reaches it the same way, and every
process gets it in its environment to call the API with (helpdesk/rasa_api.py).
"""
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import unquote, urlparse

import yaml

from helpdesk.processes import write_config
from helpdesk.settings import (
    PROJECT_DIR,
    action_server_token,
    insecure_webhooks,
    load_chatwoot,
    load_meta,
    load_settings,
    load_waha,
    rasa_api_secret,
    rasa_host,
    rest_channel_enabled,
    unsigned_webhooks,
    unsigned_webhooks_message,
)

VENV_BIN = Path(sys.executable).parent
# the webhook ingress listens on loopback unless INGRESS_HOST says otherwise (a reverse proxy
# with TLS on the same host forwards the gateways' webhooks to it)
DEFAULT_INGRESS_HOST = "127.0.0.1"


def redis_env(redis_url: str) -> dict:
    parsed = urlparse(redis_url)
    db = (parsed.path or "/0").lstrip("/") or "0"
    return {
        "REDIS_HOST": parsed.hostname or "127.0.0.1",
        "REDIS_PORT": str(parsed.port or 6379),
        "REDIS_DB": db,
        "REDIS_PASSWORD": unquote(parsed.password or ""),
    }


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def fail(message: str) -> None:
    print(f"helpdesk: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def require_free(port: int, what: str, variable: str) -> None:
    if port_in_use(port):
        fail(
            f"port {port} for the {what} is already in use. Stop what listens there "
            f"(`ss -ltnp | grep :{port}`) or set {variable} in .env to another port."
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (tests and benchmarks start servers there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, seconds: float, host: str = "127.0.0.1") -> bool:
    """True as soon as something accepts connections on the port, False after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.1)
    return False


def stack_env(
    base: Dict[str, str],
    *,
    redis_url: str,
    rasa_port: int,
    actions_port: int,
    work_dir: Path,
    model: Path,
    auth_token: str,
    rest_token: Optional[str] = None,
) -> Dict[str, str]:
    """The environment for `python -m helpdesk.launch actions|rasa` of a throw-away stack
    (tests, benchmarks): its own Redis, ports, ledger, var/ and model, and the REST channel on
    with its token (`rest_token`, default "rest-" + `auth_token`): send it as
    `Authorization: Bearer` (helpdesk.rasa_api `rest_headers`)."""
    return {
        **base,
        "REDIS_URL": redis_url,
        "RASA_PORT": str(rasa_port),
        "ACTIONS_PORT": str(actions_port),
        "DATABASE_URL": f"sqlite:///{work_dir / 'ledger.sqlite3'}",
        "HELPDESK_VAR_DIR": str(work_dir / "var"),
        "RASA_AUTH_TOKEN": auth_token,
        "REST_CHANNEL_ENABLED": "true",
        "REST_CHANNEL_TOKEN": rest_token or f"rest-{auth_token}",
        "RASA_MODEL": str(model),
        "PYTHONPATH": str(PROJECT_DIR),
        "LOG_LEVEL": "INFO",
    }


APPENDFSYNC = ("always", "everysec", "no")


def redis_server_config(port: int, data_dir: Path, password: str, *, persistent: bool = True,
                        appendfsync: str = "always") -> str:
    """redis-server's configuration, read from its stdin (`redis-server -`): the password
    (`requirepass`) never appears in `ps`.

    Persistence is the append-only file alone (`save ""`: no RDB snapshots), fsynced before
    each write is answered (`appendfsync always`): a message the webhook acknowledged survives
    a power loss (with `everysec`, Redis' default, up to about a second of acknowledged writes
    would not). bench/bench_fsync.py measures the price; docs/whatsapp.md says what it means."""
    if appendfsync not in APPENDFSYNC:
        raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC)}, not {appendfsync!r}")
    lines = [
        "bind 127.0.0.1",
        f"port {int(port)}",
        f"dir {_redis_quoted(str(data_dir))}",
        "appendonly yes" if persistent else "appendonly no",
        f"appendfsync {appendfsync}",
        'save ""',
        "daemonize no",
    ]
    if password:
        lines.append(f"requirepass {_redis_quoted(password)}")
    return "\n".join(lines) + "\n"


def _redis_quoted(value: str) -> str:
    """A value in redis.conf's double quotes (its escapes: backslash and quote)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        fail("a Redis password or directory must not contain control characters (REDIS_URL, HELPDESK_VAR_DIR)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spawn_redis(port: int, data_dir: Path, password: str, *, persistent: bool = False,
                appendfsync: str = "always", **popen: object) -> subprocess.Popen:
    """A throw-away redis-server for tests and benchmarks, its password given on stdin."""
    binary = shutil.which("redis-server")
    if not binary:
        fail("redis-server is not installed: run `make setup`")
    process = subprocess.Popen([binary, "-"], stdin=subprocess.PIPE, **popen)
    process.stdin.write(redis_server_config(port, data_dir, password, persistent=persistent,
                                             appendfsync=appendfsync).encode())
    process.stdin.close()
    return process


def _exec_with_stdin(command: List[str], text: str) -> None:
    """Replace this process with `command`, `text` on its stdin (a pipe already filled and
    closed: a configuration is far below the pipe's buffer)."""
    read_end, write_end = os.pipe()
    os.write(write_end, text.encode())
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)
    os.execv(command[0], command)


def wait_for_redis(host: str, port: int, seconds: float = 30) -> None:
    if not wait_for_port(port, seconds, host):
        fail(f"Redis did not answer on {host}:{port} within {seconds:.0f} s")


def command_for(name: str, settings) -> List[str]:
    env = redis_env(settings.redis_url)
    logging_config = str(PROJECT_DIR / "logging.yml")
    if name == "redis":
        redis_server = shutil.which("redis-server")
        if not redis_server:
            fail("redis-server is not installed: run `make setup`")
        data_dir = settings.var_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        require_free(int(env["REDIS_PORT"]), "Redis server", "REDIS_URL")
        # the configuration (with the password) comes on stdin: see redis_config()
        return [redis_server, "-"]
    if name == "actions":
        require_free(settings.actions_port, "action server", "ACTIONS_PORT")
        wait_for_redis(env["REDIS_HOST"], int(env["REDIS_PORT"]))
        # rasa_sdk's server with the token check (actions/server.py); host: ACTIONS_HOST
        return [
            str(VENV_BIN / "python"), "-m", "actions.server",
            "--actions", "actions",
            "--port", str(settings.actions_port),
            "--logging-config-file", logging_config,
        ]
    if name == "rasa":
        check_webhook_secrets()
        require_free(settings.rasa_port, "Rasa server", "RASA_PORT")
        wait_for_redis(env["REDIS_HOST"], int(env["REDIS_PORT"]))
        if settings.rasa_auth_token and len(settings.rasa_auth_token.encode()) < 32:
            print("helpdesk: RASA_AUTH_TOKEN is shorter than 32 bytes, a weak key for the HTTP "
                  "API's JWTs: set a longer one (or leave it empty to have one generated)",
                  file=sys.stderr, flush=True)
        # `rasa run`'s arguments, no secret among them: connectors/server.py adds the API's
        # key (a JWT secret) from the environment
        return [
            str(VENV_BIN / "python"), "-m", "connectors.server",
            "--enable-api",
            "--port", str(settings.rasa_port),
            "--interface", rasa_host(),
            "--credentials", str(active_credentials(settings)),
            "--endpoints", "endpoints.yml",
            "--model", os.environ.get("RASA_MODEL") or "models",
            "--logging-config-file", logging_config,
        ]
    if name in ("interactive", "rasa-shell"):
        # Rasa's own tools, with endpoints.yml resolved (action server, Redis trackers);
        # a second server on RASA_PORT + 1 so it can run beside `make run`
        wait_for_redis(env["REDIS_HOST"], int(env["REDIS_PORT"]))
        port = str(settings.rasa_port + 1)
        require_free(int(port), "second Rasa server (rasa shell/interactive)", "RASA_PORT")
        tool = "interactive" if name == "interactive" else "shell"
        command = [
            str(VENV_BIN / "rasa"), tool,
            "--port", port,
            "--endpoints", "endpoints.yml",
            "--model", os.environ.get("RASA_MODEL") or "models",
        ]
        # rasa shell's cmdline channel answers HTTP: only from this machine (rasa interactive
        # has no such option and binds every interface while it runs)
        return command + (["--interface", "127.0.0.1"] if tool == "shell" else [])
    if name == "ingress":
        check_webhook_secrets()
        port = int(os.environ.get("INGRESS_PORT") or 5007)
        require_free(port, "webhook ingress", "INGRESS_PORT")
        wait_for_redis(env["REDIS_HOST"], int(env["REDIS_PORT"]))
        return [str(VENV_BIN / "python"), "-m", "connectors.ingress"]
    if name == "worker":
        wait_for_redis(env["REDIS_HOST"], int(env["REDIS_PORT"]))
        return [str(VENV_BIN / "python"), "-m", "workers.worker"]
    fail(f"unknown process '{name}' (redis, actions, rasa, ingress, worker)")
    return []


def redis_config(settings) -> str:
    """The configuration `make run`'s own redis-server reads on stdin."""
    env = redis_env(settings.redis_url)
    return redis_server_config(int(env["REDIS_PORT"]), settings.var_dir / "redis", env["REDIS_PASSWORD"])


# the processes that call the action server (endpoints.yml) or are it
ACTION_TOKEN_PROCESSES = ("actions", "rasa", "interactive", "rasa-shell")


def process_env(name: str, settings) -> Dict[str, str]:
    """What `name` gets in its environment beyond .env: REDIS_URL with its password (every
    process reads it through helpdesk.settings), REDIS_* for endpoints.yml, the action
    server's token for the processes that need it."""
    variables = {"REDIS_URL": settings.redis_url, **redis_env(settings.redis_url)}
    # the HTTP API's key for the Rasa server and its clients (workers, actions, shell): .env's,
    # or this installation's generated one
    variables["RASA_AUTH_TOKEN"] = rasa_api_secret(settings)
    if name in ACTION_TOKEN_PROCESSES:
        variables["ACTION_SERVER_TOKEN"] = action_server_token(settings)
    return variables


# channels of credentials.yml that need settings: class path -> "configured?"
CHANNEL_REQUIREMENTS = {
    "connectors.waha.WahaInput": lambda: load_waha() is not None,
    "connectors.meta.MetaInput": lambda: load_meta() is not None,
    # configured without a webhook token or secret it refuses to start (check_webhook_secrets)
    "connectors.chatwoot.ChatwootInput": lambda: load_chatwoot() is not None,
}


def check_webhook_secrets() -> None:
    """Before a process that serves webhooks starts: a configured channel without its secret
    stops it with one line, unless HELPDESK_INSECURE_WEBHOOKS=true (then the channel logs a
    warning once as it starts: connectors/whatsapp/webhook.py `require_secret`)."""
    unsigned = unsigned_webhooks()
    if unsigned and not insecure_webhooks():
        fail(unsigned_webhooks_message(unsigned))


def enabled_channels(source: Path = PROJECT_DIR / "credentials.yml") -> dict:
    """The channels of credentials.yml whose settings are present."""
    listed = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    return {
        name: value for name, value in listed.items()
        if name not in CHANNEL_REQUIREMENTS or CHANNEL_REQUIREMENTS[name]()
    }


def active_credentials(settings) -> Path:
    """credentials.yml without the channels that are not configured, under var/."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    target = settings.var_dir / "credentials.active.yml"
    target.write_text(
        "# written by helpdesk/launch.py from credentials.yml; do not edit\n"
        + yaml.safe_dump(enabled_channels(), sort_keys=False),
        encoding="utf-8",
    )
    return target


def channel_lines(settings) -> List[str]:
    host = os.environ.get("INGRESS_HOST") or DEFAULT_INGRESS_HOST
    ingress = f"http://{host}:{os.environ.get('INGRESS_PORT') or 5007}"
    lines = [f"  ingress        {ingress}  (the webhooks: the one port to expose, behind TLS)"]
    if load_waha():
        lines.append(f"  WAHA webhook   {ingress}/webhooks/waha/webhook")
    if load_meta():
        lines.append(f"  Meta webhook   {ingress}/webhooks/whatsapp/webhook  (GET verifies, POST"
                     " receives)")
    if "connectors.chatwoot.ChatwootInput" in enabled_channels():
        lines.append(f"  Chatwoot       {ingress}/webhooks/chatwoot/webhook  (agent replies,"
                     " hand-back)")
    if len(lines) == 1:
        lines.append("  webhooks       none configured (WAHA_* / META_* / CHATWOOT_* in .env);"
                     " the ingress idles")
    lines.append(f"  metrics        {ingress}/metrics  (Authorization: Bearer METRICS_TOKEN)"
                 if os.environ.get("METRICS_TOKEN")
                 else "  metrics        off: METRICS_TOKEN in .env serves /metrics on the ingress")
    return lines


def banner(settings) -> str:
    env = redis_env(settings.redis_url)
    rasa = f"http://{rasa_host()}:{settings.rasa_port}"
    rest = (f"REST channel {rasa}/webhooks/rest/webhook with REST_CHANNEL_TOKEN"
            if rest_channel_enabled()
            else "REST channel off: REST_CHANNEL_ENABLED=true in .env for `make shell`")
    rest += f"; health {rasa}/webhooks/rest/health"
    return "\n".join(
        [
            "WhatsApp Helpdesk is starting:",
            f"  Rasa server    {rasa}  ({rest})",
            f"  action server  http://{settings.actions_host}:{settings.actions_port}  (health /health;"
            " calls need ACTION_SERVER_TOKEN, from .env or var/secrets/)",
            f"  RQ worker      health http://127.0.0.1:{os.environ.get('WORKER_HEALTH_PORT') or '5056'}/health",
            f"  Redis          {env['REDIS_HOST']}:{env['REDIS_PORT']} db {env['REDIS_DB']}"
            f" (append-only file in {settings.var_dir / 'redis'};"
            + (" password required)" if env["REDIS_PASSWORD"] else " no password)"),
            f"  ledger         {settings.database_url.split('@')[-1]}",
            f"  Rasa HTTP API  {rasa}  (Authorization: Bearer JWT signed with RASA_AUTH_TOKEN"
            + (")" if settings.rasa_auth_token else ", generated in var/secrets/)"),
            *channel_lines(settings),
            ("Talk to the bot: `make shell` in another terminal." if rest_channel_enabled()
             else "Talk to the bot: REST_CHANNEL_ENABLED=true in .env, then `make shell`.")
            + " Stop everything: Ctrl-C.",
        ]
    )


def main(argv: List[str]) -> None:
    if len(argv) != 1:
        fail("usage: python -m helpdesk.launch redis|actions|rasa|ingress|worker|interactive|rasa-shell|banner|env|supervise")
    settings = load_settings()
    if argv[0] == "banner":
        print(banner(settings), flush=True)
        return
    if argv[0] == "supervise":
        # `make run`: supervisord (helpdesk/processes.py) runs the Procfile's processes and
        # restarts any that dies; Ctrl-C stops them all
        workers = os.environ.get("WORKERS") or "2"
        if not workers.isdigit() or int(workers) < 1:
            fail(f"WORKERS must be a number of workers, 1 or more, not {workers!r}")
        # the ledger's schema once, before any process opens it (helpdesk/tickets/schema.py);
        # imported here: the other commands need neither SQLAlchemy nor Alembic
        from helpdesk.tickets import migrate_ledger

        was = migrate_ledger(settings.database_url)
        if was:
            print(f"helpdesk: ledger migrated (was at revision {was})", flush=True)
        conf = write_config(settings.var_dir, int(workers))
        supervisord = VENV_BIN / "supervisord"
        if not supervisord.is_file():
            fail("supervisord is not installed: run `make setup`")
        os.chdir(PROJECT_DIR)
        os.execv(str(supervisord), [str(supervisord), "-c", str(conf)])
    if argv[0] == "env":
        # `eval "$(python -m helpdesk.launch env)"` before running rasa commands by hand
        # (it prints the secrets endpoints.yml needs: for eval, not for a log)
        variables = {**process_env("rasa", settings), "ACTIONS_PORT": str(settings.actions_port)}
        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in variables.items()))
        return
    os.chdir(PROJECT_DIR)
    os.environ.update(process_env(argv[0], settings))
    os.environ.setdefault("ACTIONS_PORT", str(settings.actions_port))
    os.environ.setdefault("LOG_LEVEL", settings.log_level)
    # TensorFlow's start-up chatter is not JSON and says nothing an operator needs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONPATH", str(PROJECT_DIR))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("HELPDESK_LOGGING_CONFIG", str(PROJECT_DIR / "logging.yml"))
    command = command_for(argv[0], settings)
    if argv[0] == "redis":
        _exec_with_stdin(command, redis_config(settings))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
