"""The statistics the benchmarks report: percentiles and rounding (no I/O, no project imports)."""
from typing import List, Optional


def percentile(values: List[float], q: float) -> Optional[float]:
    """The q-th percentile (0 to 100), interpolated between the two nearest ranks; None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rnd(value: Optional[float], digits: int = 1) -> Optional[float]:
    """`round`, passing None through (a percentile of nothing)."""
    return None if value is None else round(value, digits)

