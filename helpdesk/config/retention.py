"""`config/retention.yml`: how many days conversation data is kept, how often the retention
job runs and how much it handles per step. A broken value raises `ConfigError` naming the file
and the key."""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from helpdesk.config.reader import number, read_yaml
from helpdesk.settings import load_settings

DAY = 86400


@dataclass(frozen=True)
class RetentionConfig:
    days: int
    run_every_hours: float
    batch_size: int

    @property
    def seconds(self) -> int:
        """The limit in seconds: anything older goes."""
        return self.days * DAY

    @property
    def interval_seconds(self) -> float:
        return self.run_every_hours * 3600


def load_retention_config(path: Path) -> RetentionConfig:
    data = read_yaml(path)
    where = str(path)
    return RetentionConfig(
        days=number(data, "days", where, 90, whole=True, minimum=1),
        run_every_hours=number(data, "run_every_hours", where, 24, minimum=1, maximum=24 * 7),
        batch_size=number(data, "batch_size", where, 500, whole=True, minimum=1, maximum=10000),
    )


@lru_cache(maxsize=None)
def _config_at(path: Path) -> RetentionConfig:
    return load_retention_config(path)


def retention_config() -> RetentionConfig:
    """config/retention.yml of the configured config directory, read once per process."""
    return _config_at(load_settings().config_dir / "retention.yml")
