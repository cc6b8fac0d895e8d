"""The alert rules (deploy/prometheus/alerts.yml) with promtool (Debian's `prometheus`, which
`make test` installs): they parse, each alert is unit-tested in alerts_test.yml and fires
when it should (and not when it should not), and every series a rule reads is one a real
scrape serves (and docs/operations.md's table lists)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpdesk.metrics import HelpdeskCollector
from tests.conftest import PROJECT
from tests.helpdesk.metrics.test_collector import PARTITIONS, filled, scrape  # noqa: F401

RULES = PROJECT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = PROJECT / "deploy" / "prometheus" / "alerts_test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str) -> subprocess.CompletedProcess:
    if not Path(PROMTOOL).is_file():
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return subprocess.run([PROMTOOL, *args], cwd=RULES.parent, capture_output=True, text=True,
                          timeout=120)


def alerts():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def test_the_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_the_rules_pass_their_unit_tests():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_expects_it_to_fire():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alerts()} == fired


def test_a_broken_rule_fails_its_unit_test(tmp_path):
    """The unit tests are not vacuous: a rule whose threshold is wrong fails them."""
    for path in (RULES, RULE_TESTS):
        shutil.copy(path, tmp_path / path.name)
    broken = (tmp_path / RULES.name).read_text().replace("inbound_lag_seconds) > 120",
                                                         "inbound_lag_seconds) > 1200")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    result = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "HelpdeskInboundLag" in result.stdout + result.stderr


def documented_metrics():
    """The metric names of docs/operations.md's table (its first column)."""
    names = set()
    for line in (PROJECT / "docs" / "operations.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_]+)", line.split("|")[1]))
    return names


def test_the_rules_read_only_metrics_a_scrape_serves(filled, ledger):
    """Each series a rule reads is in a real scrape of a filled Redis and ledger, and in the
    operators' table."""
    samples, _types = scrape(HelpdeskCollector(filled, ledger, PARTITIONS, monthly_budget_usd=500.0))
    served = {name for name, _labels in samples}
    functions = {"max", "min", "sum", "and", "or", "increase", "vector"}
    read = set()
    for rule in alerts():
        expr = re.sub(r"\{[^}]*\}", "", rule["expr"])  # label matchers
        expr = re.sub(r"\b(by|on)\s*\([^)]*\)", "", expr)  # grouping labels
        expr = re.sub(r"\[[^]]*\]", "", expr)  # ranges
        read |= set(re.findall(r"[a-z_]+", expr)) - functions
    assert read and read <= served, read - served
    families = {re.sub(r"_(count|sum|bucket)$", "", name) for name in read}
    assert families <= documented_metrics(), families - documented_metrics()
