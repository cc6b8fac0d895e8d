"""bench/bench_fsync.py runs end to end, tiny: both policies really applied by their Redis, every
webhook and accept answered (no timing is checked)."""
import json
import subprocess
import sys

from tests.conftest import PROJECT


def test_bench_fsync_quick_run_measures_both_policies(tmp_path):
    output = tmp_path / "fsync.json"
    run = subprocess.run([sys.executable, "bench/bench_fsync.py", "--quick", "--dir", str(tmp_path / "data"),
                          "--output", str(output)], cwd=PROJECT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["failures"] == 0
    for policy in ("always", "everysec"):
        result = document["results"][policy]
        assert result["redis"]["appendfsync"] == policy and result["redis"]["aof_enabled"] == 1
        assert result["webhook"]["requests"] > 0 and result["webhook"]["p99_ms"] is not None
        assert result["accept_one_at_a_time"]["requests"] > 0
        assert result["ingress_log_errors"]["errors"] == 0
    assert "webhook ack p99_ms" in run.stdout
    assert list((tmp_path / "data").iterdir()) == []  # its Redis directories removed
