"""`config/followups.yml`: when a question the user left unanswered is asked again, how many
times, whether a person is then asked to step in, when a silent thread is closed, and the
follow-up jobs' retries and Rasa timeouts. A missing key takes its default; a wrong one raises
`ConfigError` naming the field. Read by helpdesk/followups.py and workers/followup_jobs.py.
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Tuple

from helpdesk.config.reader import DOTTED_AT_LEAST, number, read_yaml, section
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings

FILE_NAME = "followups.yml"


@dataclass(frozen=True)
class FollowupConfig:
    reask_delay: float
    max_reasks: int
    escalate: bool
    thread_timeout: float
    retry_intervals: Tuple[int, ...]
    job_timeout: int
    rasa_connect_timeout: float
    rasa_read_timeout: float

    @property
    def steps(self) -> int:
        """Scheduled steps after the question: the reminders, then the escalation if any."""
        return self.max_reasks + (1 if self.escalate else 0)


def load_followup_config(path: Path) -> FollowupConfig:
    """Read `config/followups.yml`; a missing key takes its default, a wrong one raises
    ConfigError naming the field."""
    data = read_yaml(path)
    where = str(path)
    reask, thread = section(data, "reask", where), section(data, "thread", where)
    jobs, rasa = section(data, "jobs", where), section(data, "rasa", where)
    escalate = reask.get("escalate", True)
    if not isinstance(escalate, bool):
        raise ConfigError(f"{path}: reask.escalate must be true or false, got {escalate!r}")
    intervals = jobs.get("retry_intervals", [30, 120, 300])
    if not isinstance(intervals, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in intervals
    ):
        raise ConfigError(f"{path}: jobs.retry_intervals must be a list of whole seconds")
    style = DOTTED_AT_LEAST
    return FollowupConfig(
        reask_delay=number(reask, "delay_seconds", f"{path}: reask", 1800, minimum=0.1,
                           style=style),
        max_reasks=number(reask, "max_reasks", f"{path}: reask", 3, whole=True, minimum=0,
                          style=style),
        escalate=escalate,
        thread_timeout=number(thread, "timeout_seconds", f"{path}: thread", 86400, minimum=0.1,
                              style=style),
        retry_intervals=tuple(intervals),
        job_timeout=number(jobs, "job_timeout_seconds", f"{path}: jobs", 120, whole=True,
                           minimum=1, style=style),
        rasa_connect_timeout=number(rasa, "connect_timeout_seconds", f"{path}: rasa", 3,
                                    minimum=0.01, style=style),
        rasa_read_timeout=number(rasa, "read_timeout_seconds", f"{path}: rasa", 30,
                                 minimum=0.01, style=style),
    )


@lru_cache(maxsize=None)
def _config_at(path: str) -> FollowupConfig:
    return load_followup_config(Path(path))


def followup_config() -> FollowupConfig:
    """The configuration of the configured `config/` directory (HELPDESK_CONFIG_DIR), read
    once."""
    return _config_at(str(load_settings().config_dir / FILE_NAME))
