"""Generated secrets: one value per installation, owner-only files, the environment wins."""
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpdesk.local_secrets import local_secret


def test_generated_once_and_read_back(tmp_path):
    first = local_secret("action_token", tmp_path)
    assert len(first) >= 40
    assert local_secret("action_token", tmp_path) == first
    path = tmp_path / "secrets" / "action_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_the_environment_value_wins_and_writes_nothing(tmp_path):
    assert local_secret("redis_password", tmp_path, " from-env ") == "from-env"
    assert not (tmp_path / "secrets" / "redis_password").exists()


def test_blank_environment_value_means_generated(tmp_path):
    assert local_secret("x", tmp_path, "  ") == local_secret("x", tmp_path)


def test_processes_starting_together_agree(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: local_secret("shared", tmp_path), range(32)))
    assert len(values) == 1


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b"])
def test_names_never_leave_the_directory(tmp_path, name):
    with pytest.raises(ValueError):
        local_secret(name, tmp_path)
