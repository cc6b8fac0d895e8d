"""scripts/run_tests.py (`make test`'s run): the sessions run at the same time, each logged, the
live one echoed and the other shown when it ends, and a failing session fails the whole run
whichever one it is."""
import pytest

from scripts import run_tests

WAITS_FOR_THE_OTHER = """
import pathlib, time

def test_waits_for_the_other_session():
    marker = pathlib.Path({marker!r})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the other session never ran beside this one"
        time.sleep(0.05)
"""
FAILS_AFTER_MARKING = """
import pathlib

def test_broken():
    pathlib.Path({marker!r}).touch()
    assert 1 == 2, "the drill failed"
"""
PASSES = "def test_quick():\n    assert True\n"


@pytest.fixture
def write(tmp_path, monkeypatch):
    monkeypatch.setattr(run_tests, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run_tests, "PROJECT", tmp_path)

    def write(name: str, body: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"test_{name}.py").write_text(body.format(marker=str(tmp_path / "marker")))
        return str(folder)
    return write


def test_both_sessions_run_at_once_and_a_failing_second_one_fails_the_run(write, tmp_path,
                                                                          monkeypatch, capsys):
    # the first session's test passes only if the second session runs while it waits
    monkeypatch.setattr(run_tests, "SESSIONS", {
        "suite": [write("waiting", WAITS_FOR_THE_OTHER)],
        "drills": [write("broken", FAILS_AFTER_MARKING)],
    })
    status = run_tests.run(["suite", "drills"], serial=False, extra=["-q"])
    assert status != 0
    shown = capsys.readouterr().out
    assert "1 passed" in shown and "the drill failed" in shown
    assert "session 'suite': exit 0" in shown and "session 'drills': exit 1" in shown
    assert "1 passed" in (tmp_path / "results" / "suite.log").read_text()
    assert "the drill failed" in (tmp_path / "results" / "drills.log").read_text()


def test_serial_runs_each_session_and_passes_when_both_pass(write, monkeypatch, capsys):
    monkeypatch.setattr(run_tests, "SESSIONS", {
        "suite": [write("one", PASSES)],
        "drills": [write("two", PASSES)],
    })
    assert run_tests.run(["suite", "drills"], serial=True, extra=["-q"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("1 passed") == 2
    assert "session 'suite': exit 0" in shown and "session 'drills': exit 0" in shown


def test_only_picks_sessions_and_passes_pytest_options_through(write, monkeypatch, capsys):
    monkeypatch.setattr(run_tests, "SESSIONS", {
        "suite": [write("one", PASSES)],
        "drills": [write("broken", FAILS_AFTER_MARKING)],
    })
    assert run_tests.main(["--only", "suite", "-q", "-k", "quick"]) == 0
    assert "1 passed" in capsys.readouterr().out


def test_the_sessions_split_the_configured_test_paths_and_the_drills_run_once():
    # pytest's --ignore does not reach testpaths: the suite must name its paths, or every drill
    # runs in both sessions at once (CI ran each drill twice, side by side, and one timed out)
    configured = run_tests._testpaths()
    suite, drills = run_tests.SESSIONS["suite"], run_tests.SESSIONS["drills"]
    assert drills == [run_tests.DRILLS] and run_tests.DRILLS in configured
    assert not any(path.startswith(run_tests.DRILLS) for path in suite)
    assert sorted(suite + drills) == sorted(configured)
