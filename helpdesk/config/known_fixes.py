"""`config/known_fixes.yml`: whether the ticket form suggests a known fix before a ticket is
opened, the thresholds a knowledge passage must pass to be suggested, and whether urgent
incidents skip it. A broken value raises `ConfigError` naming the file and the key."""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from helpdesk.config.reader import NumberStyle, number, read_yaml
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings

# "'min_dense' must be a number from 0 to 1, got 2"
_FRACTION = NumberStyle(wrong="a number from {minimum} to {maximum}",
                        limits="a number from {minimum} to {maximum}",
                        null_is_missing=False, floats=True)


@dataclass(frozen=True)
class KnownFixConfig:
    enabled: bool
    min_relevance: float
    min_dense: float
    skip_urgent: bool


def load_known_fix_config(path: Path) -> KnownFixConfig:
    data = read_yaml(path)
    where = str(path)
    enabled, skip_urgent = data.get("enabled", True), data.get("skip_urgent", True)
    if not isinstance(enabled, bool) or not isinstance(skip_urgent, bool):
        raise ConfigError(f"{where}: 'enabled' and 'skip_urgent' must be true or false")
    thresholds = {
        key: number(data, key, where, default, minimum=0, maximum=1, style=_FRACTION)
        for key, default in (("min_relevance", 0.7), ("min_dense", 0.5))
    }
    return KnownFixConfig(enabled=enabled, skip_urgent=skip_urgent, **thresholds)


@lru_cache(maxsize=None)
def _config_at(path: Path) -> KnownFixConfig:
    return load_known_fix_config(path)


def known_fix_config() -> KnownFixConfig:
    """config/known_fixes.yml of the configured config directory, read once per process."""
    return _config_at(load_settings().config_dir / "known_fixes.yml")
