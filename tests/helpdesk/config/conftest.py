import shutil
from pathlib import Path

import pytest

from tests.helpdesk.config.support import CONFIG


@pytest.fixture
def config_copy(tmp_path) -> Path:
    """A copy of the shipped config/ a test may break."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target
