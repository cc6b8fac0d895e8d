"""`make test`'s test run: the fault drills beside the rest of the suite, as two pytest sessions.

The drills (tests/faults/) spend most of their time waiting: for a stopped Redis, a frozen
server, a retry's back-off, a deadline. Run after the rest, as one session, they were about
half of `make test`. Here they run in a second pytest session at the same time as the rest, so
their waiting overlaps the suite's CPU work. Each session starts its own servers on free
loopback ports (tests/stack.py, tests/conftest.py): nothing is shared between them.

    python scripts/run_tests.py            both sessions at once (what `make test` runs)
    python scripts/run_tests.py --serial   one after the other (a loaded machine, a bisect)

Each session's output is written to var/test-results/<session>.log while it runs; the output of
the first is shown live, the others' when they finish. The exit status is the first non-zero
one of the sessions (a failed session never hides behind a passing one).
"""
import argparse
import configparser
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Dict, List, Sequence

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "var" / "test-results"
DRILLS = "tests/faults"



def _testpaths() -> List[str]:
    config = configparser.ConfigParser()
    config.read(PROJECT / "pytest.ini")
    return config["pytest"]["testpaths"].split()


# name -> pytest arguments (pytest.ini's options and plugins apply to both). The suite names its
# paths: pytest's --ignore does not apply to testpaths, which are collected like paths given on the
# command line, so `--ignore=tests/faults` ran every drill in both sessions at once.
SESSIONS: Dict[str, List[str]] = {
    "suite": [path for path in _testpaths() if path != DRILLS],
    "drills": [DRILLS],
}


def _command(arguments: Sequence[str], extra: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "pytest", *arguments, *extra]


def _copy(source: IO[bytes], log: IO[bytes], echo: bool) -> None:
    for line in iter(source.readline, b""):
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


def _start(name: str, extra: Sequence[str], echo: bool) -> "Run":
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / f"{name}.log", "wb")
    process = subprocess.Popen(_command(SESSIONS[name], extra), cwd=PROJECT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    copier = threading.Thread(target=_copy, args=(process.stdout, log, echo), daemon=True)
    copier.start()
    return Run(name, process, copier, log, echo, time.monotonic())


class Run:
    def __init__(self, name: str, process: subprocess.Popen, copier: threading.Thread,
                 log: IO[bytes], echo: bool, started: float) -> None:
        self.name, self.process, self.copier, self.log = name, process, copier, log
        self.echo, self.started = echo, started

    def finish(self) -> int:
        status = self.process.wait()
        self.copier.join()
        self.log.close()
        seconds = time.monotonic() - self.started
        if not self.echo:
            print(f"\n===== pytest session '{self.name}' ({' '.join(SESSIONS[self.name])}) =====",
                  flush=True)
            sys.stdout.buffer.write((RESULTS / f"{self.name}.log").read_bytes())
        print(f"===== session '{self.name}': exit {status} after {seconds / 60:.1f} min "
              f"(log: {(RESULTS / f'{self.name}.log').relative_to(PROJECT)}) =====", flush=True)
        return status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()


def run(names: Sequence[str], serial: bool, extra: Sequence[str]) -> int:
    statuses: List[int] = []
    if serial:
        for name in names:
            statuses.append(_start(name, extra, echo=True).finish())
        return next((status for status in statuses if status), 0)
    runs = [_start(name, extra, echo=index == 0) for index, name in enumerate(names)]
    try:
        statuses = [each.finish() for each in runs]
    except KeyboardInterrupt:
        for each in runs:
            each.stop()
        raise
    return next((status for status in statuses if status), 0)


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", action="store_true", help="run the sessions one after the other")
    parser.add_argument("--only", choices=sorted(SESSIONS), action="append",
                        help="run only this session (repeatable)")
    options, extra = parser.parse_known_args(argv)
    names = options.only or list(SESSIONS)
    return run(names, options.serial, extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
