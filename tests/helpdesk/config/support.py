"""What the tests of the catalog's readers share: a copy of config/ to break, and the error
`load_catalog` raises on it."""
from pathlib import Path

import pytest
import yaml

from helpdesk.config import load_catalog
from helpdesk.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[3]
CONFIG = PROJECT / "config"


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dump(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def catalog_error(config_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_catalog(config_dir)
    return str(info.value)
