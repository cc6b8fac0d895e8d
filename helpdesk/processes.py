"""`make run`'s process manager: supervisord (Supervisor, from the package index), configured
from the Procfile.

The Procfile stays the one list of the processes (`honcho export` turns it into systemd units
for production); `supervisor_config` writes supervisord's configuration from it, under var/:
- every process is restarted when it exits, whatever the reason (`autorestart`), within a
  second, the others untouched; one that keeps failing to start is retried for good, with
  supervisord's growing back-off, so a process waiting for something (Redis, a port) comes
  back by itself;
- a stop (Ctrl-C, SIGTERM to supervisord) sends SIGTERM to each process's whole group and
  waits `STOP_WAIT_SECONDS` (longer than the inbound consumer's 10 s grace and RQ's warm
  shutdown of a running job) before SIGKILL: in-flight turns and jobs finish, nothing is left
  behind;
- `WORKERS` RQ workers (numprocs);
- every process's output goes to supervisord's own, the terminal;
- supervisorctl talks to it through a Unix socket in var/ that only this user can open (no
  TCP port): `.venv/bin/supervisorctl -c var/supervisord.conf status`.
No secret is in the file: each command is `python -m helpdesk.launch <name>`, which reads .env
and var/secrets/ itself.
"""
import re
import shlex
from pathlib import Path
from typing import List, Tuple

from helpdesk.errors import ConfigError
from helpdesk.settings import PROJECT_DIR

PROCFILE = PROJECT_DIR / "Procfile"
STOP_WAIT_SECONDS = 30  # the consumer's grace is 10 s; an RQ job gets the rest to finish
REDIS_FIRST = 10  # supervisord starts lower priorities first
OTHERS = 50
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def procfile_processes(procfile: Path = PROCFILE) -> List[Tuple[str, str]]:
    """(name, command) of each Procfile line, in order."""
    processes = []
    for number, line in enumerate(procfile.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not _NAME.match(name) or not command:
            raise ConfigError(f"{procfile.name} line {number}: expected 'name: command'")
        processes.append((name, command))
    return processes


def _quoted(value: str) -> str:
    """A value of supervisord's configuration: its own `%` escapes, one line."""
    if any(ord(c) < 32 for c in value):
        raise ConfigError("a process command or path must not contain control characters")
    return value.replace("%", "%%")


def supervisor_config(var_dir: Path, workers: int, procfile: Path = PROCFILE,
                      project_dir: Path = PROJECT_DIR) -> str:
    """supervisord's configuration for the Procfile's processes, `workers` RQ workers."""
    if workers < 1:
        raise ConfigError("WORKERS must be at least 1")
    var = var_dir.resolve()
    lines = [
        "; written by `python -m helpdesk.launch supervise` from the Procfile: do not edit",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={_quoted(str(var / 'log' / 'supervisord.log'))}",
        "logfile_maxbytes=10MB",
        f"pidfile={_quoted(str(var / 'supervisord.pid'))}",
        f"childlogdir={_quoted(str(var / 'log'))}",
        "",
        "[unix_http_server]",
        f"file={_quoted(str(var / 'supervisor.sock'))}",
        "chmod=0700",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_quoted(str(var / 'supervisor.sock'))}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for name, command in procfile_processes(procfile):
        words = shlex.split(command)
        if words and not Path(words[0]).is_absolute() and "/" in words[0]:
            words[0] = str(project_dir / words[0])  # .venv/bin/python from the project
        lines += [
            "",
            f"[program:{name}]",
            f"command={_quoted(shlex.join(words))}",
            f"directory={_quoted(str(project_dir))}",
            f"priority={REDIS_FIRST if name == 'redis' else OTHERS}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            # a process that cannot start yet (Redis not up, a port still held) keeps trying
            "startretries=1000000",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECONDS}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
        if name == "worker":
            lines += [f"numprocs={int(workers)}", "process_name=%(program_name)s-%(process_num)d"]
    return "\n".join(lines) + "\n"


def write_config(var_dir: Path, workers: int) -> Path:
    """Write var/supervisord.conf (and var/log/); its path."""
    (var_dir / "log").mkdir(parents=True, exist_ok=True)
    target = var_dir / "supervisord.conf"
    target.write_text(supervisor_config(var_dir, workers), encoding="utf-8")
    target.chmod(0o600)
    return target
