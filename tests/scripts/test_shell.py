"""scripts/shell.py (`make shell`): its own console loop over the REST channel with the token
in the header, against the REST channel served as the Rasa server serves it (the echo agent
of tests/connectors/test_rest.py), and one line saying how to turn the channel on when off."""
import os
import subprocess
import sys

from tests.conftest import PROJECT
from tests.connectors.test_rest import TOKEN, Server, server_env


def shell(env, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT / "scripts" / "shell.py")], input=text,
                          capture_output=True, text=True, env=env, cwd=PROJECT, timeout=60)


def test_the_shell_talks_with_the_token_in_the_header(redis_url, tmp_path):
    env = server_env(redis_url, tmp_path, REST_CHANNEL_ENABLED="true", REST_CHANNEL_TOKEN=TOKEN)
    server = Server(env, tmp_path)
    try:
        done = shell({**env, "RASA_PORT": str(server.port)}, "hola\n/greet\n/stop\n")
        assert done.returncode == 0, done.stderr
        assert "bot: eco: hola" in done.stdout and "bot: eco: /greet" in done.stdout
        assert [m["text"] for m in server.reached()] == ["hola", "/greet"]
    finally:
        server.stop()


def test_with_the_channel_off_one_line_says_how_to_turn_it_on(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("REST_CHANNEL_")}
    env.update({"HELPDESK_VAR_DIR": str(tmp_path / "var"), "PYTHONPATH": str(PROJECT)})
    done = shell(env, "hola\n")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "REST_CHANNEL_ENABLED=true" in line
