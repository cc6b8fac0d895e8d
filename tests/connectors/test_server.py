"""connectors/server.py: `rasa run`'s arguments parsed by Rasa's own parser, the HTTP API's key
added from the environment, and no secret accepted on the command line. The server itself runs
in tests/integration (test_doors.py: its argv, its socket, its authentication)."""
import pytest

from connectors.server import parse
from helpdesk.settings import load_settings, rasa_api_secret


def test_secrets_on_the_command_line_are_refused():
    for option in (["--auth-token", "x"], ["-t", "x"], ["--jwt-secret=x"], ["--jwt-private-key", "k"]):
        with pytest.raises(SystemExit, match="not accepted on the command line"):
            parse(["--enable-api", *option])


def test_the_api_checks_jwts_signed_with_the_installation_key_and_no_plain_token(monkeypatch):
    monkeypatch.setenv("RASA_AUTH_TOKEN", "k" * 40)
    args = parse(["--enable-api", "--port", "5999", "--interface", "127.0.0.1"])
    assert args.auth_token is None  # so Rasa accepts no ?token= at all
    assert args.jwt_secret == "k" * 40 and args.jwt_method == "HS256"
    assert (args.port, args.interface, args.enable_api) == (5999, "127.0.0.1", True)
    assert args.server_listeners  # the logging configuration, re-applied after start


def test_without_rasa_auth_token_the_generated_key(monkeypatch):
    monkeypatch.delenv("RASA_AUTH_TOKEN", raising=False)
    assert parse([]).jwt_secret == rasa_api_secret(load_settings())
