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
