"""config/zoho.yml: the spec's defaults, and clear errors for a broken file."""
from pathlib import Path

import pytest
import yaml
from rq.job import Job

from helpdesk.errors import ConfigError
from helpdesk.config import load_zoho_config
from helpdesk.zoho.queue import _retry
from tests.conftest import PROJECT

SHIPPED = PROJECT / "config" / "zoho.yml"


def test_the_shipped_file_has_the_specs_numbers():
    config = load_zoho_config(SHIPPED)
    assert config.delivery.max_attempts == 10
    assert [config.delivery.retry_interval(n) for n in range(1, 10)] == [30, 60, 120, 300, 300, 300, 300, 300, 300]
    assert (config.circuit.failure_threshold, config.circuit.recovery_seconds) == (5, 60)
    assert config.ticket.priorities == {"urgent": "High", "normal": "Medium"}
    assert config.status_polling.labels["On Hold"] == "en espera"
    # one mapping for the status answer and the status-change announcement
    assert config.status_polling.label("On Hold", "On Hold") == "en espera"
    assert config.status_polling.label("Esperando repuesto", "On Hold") == "Esperando repuesto"
    assert config.status_polling.label("", "Closed") == "cerrado"
    # the status question's call while a user waits
    assert (config.lookup.connect_timeout, config.lookup.read_timeout) == (2.0, 4.0)


def test_rqs_retry_gives_the_nth_retry_the_nth_interval(redis_client):
    # RQ picks intervals[len - retries_left] as its retries run out
    retry = _retry(load_zoho_config(SHIPPED).delivery)
    job = Job(connection=redis_client)
    job.retry_intervals, job.retries_left = retry.intervals, retry.max
    seen = []
    while job.retries_left:
        seen.append(job.get_retry_interval())
        job.retries_left -= 1
    assert seen == [30, 60, 120, 300, 300, 300, 300, 300, 300]


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("delivery", "max_attempts", 0, "'max_attempts' must be at least 1"),
        ("delivery", "retry_intervals", [], "'retry_intervals' must be a non-empty list"),
        ("delivery", "retry_intervals", [30, -1], "'retry_intervals' must be a non-empty list"),
        ("delivery", "quota_reset_timezone", "Mars/Olympus", "is not a time zone"),
        ("submit", "wait_seconds", "cuatro", "'wait_seconds' must be a number"),
        ("ticket", "public_comments", "no", "'public_comments' must be true or false"),
        ("ticket", "detail_labels", {"shoe_size": "Talle"}, "unknown detail_labels"),
        ("ticket", "priorities", {"urgent": "High"}, "'priorities.normal' is missing"),
        ("lookup", "read_timeout", 0, "'read_timeout' must be a number >= 0.1, got 0"),
        ("lookup", "connect_timeout", None, "'connect_timeout' must be a number >= 0.1, got None"),
    ],
)
def test_a_broken_value_names_the_file_and_the_field(tmp_path: Path, section, key, value, message):
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    data[section][key] = value
    path = tmp_path / "zoho.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as raised:
        load_zoho_config(path)
    assert str(path) in str(raised.value) and section in str(raised.value)


def test_a_missing_notice_text(tmp_path: Path):
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    del data["human_notices"]["ticket_rejected"]
    path = tmp_path / "zoho.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="human_notices is missing ticket_rejected"):
        load_zoho_config(path)
