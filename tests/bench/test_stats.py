"""The benchmarks' statistics (bench/stats.py)."""
import pytest

from bench.stats import percentile, rnd


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def test_percentile_interpolates_between_the_two_nearest_ranks():
    assert percentile([0.0, 10.0], 25) == pytest.approx(2.5)
    assert percentile([5.0, 1.0, 4.0, 2.0, 3.0], 50) == 3.0  # sorted first
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)


def test_percentile_ends_are_the_minimum_and_the_maximum():
    values = [7.0, 3.0, 9.0]
    assert percentile(values, 0) == 3.0
    assert percentile(values, 100) == 9.0
    assert percentile([42.0], 99) == 42.0


def test_rnd_passes_none_through():
    assert rnd(None) is None
    assert rnd(None, 2) is None
    assert rnd(1.26) == 1.3
    assert rnd(1.2345, 2) == 1.23
