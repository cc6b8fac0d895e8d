"""helpdesk/processes.py: supervisord's configuration from the Procfile, read back with
Supervisor's own parser (the drill that runs it is tests/faults/test_make_run.py)."""
import configparser
from pathlib import Path

import pytest

from helpdesk.errors import ConfigError
from helpdesk.processes import STOP_WAIT_SECONDS, procfile_processes, supervisor_config, write_config

PROJECT = Path(__file__).resolve().parents[2]


def _parsed(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_every_procfile_process_is_a_program_restarted_and_stopped_gracefully(tmp_path):
    names = [name for name, _command in procfile_processes()]
    assert names == ["redis", "actions", "worker", "rasa", "ingress"]
    config = _parsed(supervisor_config(tmp_path, workers=3))
    for name in names:
        program = config[f"program:{name}"]
        assert program["autorestart"] == "true" and program["autostart"] == "true"
        assert program["stopasgroup"] == "true" and program["killasgroup"] == "true"
        assert int(program["stopwaitsecs"]) == STOP_WAIT_SECONDS > 10  # the consumer's grace
        assert program["command"] == f"{PROJECT}/.venv/bin/python -m helpdesk.launch {name}"
    assert config["program:worker"]["numprocs"] == "3"
    assert int(config["program:redis"]["priority"]) < int(config["program:rasa"]["priority"])
    assert config["supervisord"]["nodaemon"] == "true"
    # supervisorctl only through a socket of this user, no TCP port
    assert config["unix_http_server"]["chmod"] == "0700"
    assert not any(section.startswith("inet_http_server") for section in config.sections())


def test_supervisors_own_parser_reads_it(tmp_path):
    from supervisor.options import ServerOptions

    conf = write_config(tmp_path / "var", workers=2)
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    options = ServerOptions()
    options.realize(["-c", str(conf)])
    programs = {p.name: p for group in options.process_group_configs
                for p in group.process_configs}
    assert set(programs) == {"redis", "actions", "worker-0", "worker-1", "rasa", "ingress"}
    assert all(p.autorestart and p.stopasgroup and p.killasgroup for p in programs.values())


def test_nothing_secret_goes_into_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:very-secret-password@127.0.0.1:6390/0")
    monkeypatch.setenv("RASA_AUTH_TOKEN", "another-secret-token-0123456789abcdef")
    text = supervisor_config(tmp_path, workers=1)
    assert "very-secret" not in text and "another-secret" not in text


def test_a_bad_procfile_or_worker_count_is_a_clear_error(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("redis .venv/bin/python -m helpdesk.launch redis\n")
    with pytest.raises(ConfigError, match="line 1"):
        supervisor_config(tmp_path, workers=1, procfile=procfile)
    with pytest.raises(ConfigError, match="WORKERS"):
        supervisor_config(tmp_path, workers=0)
    procfile.write_text("web: run --rate 100%\n")
    assert "command=run --rate 100%%" in supervisor_config(tmp_path, 1, procfile=procfile)
