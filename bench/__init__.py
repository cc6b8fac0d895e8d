"""Benchmarks, one per file (bench_*.py, each its own scenario and CLI), run as scripts:
`.venv/bin/python bench/bench_turns.py --help`. What more than one uses is in harness.py
(processes, the baseline, REST conversations, the fake WAHA) and stats.py (percentiles); no
benchmark imports another. bench/README.md has the latest numbers.
"""
