"""Small statistics for compare reports: mean ± std over seeds and paired per-seed deltas with a 95% t
interval (no scipy: Student t quantiles are tabulated)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (beyond: the normal 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"df={df}: expected >= 1")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for one value); nan for no values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def paired_delta(a: dict[int, float], b: dict[int, float]) -> dict[str, float | int | list[int] | None]:
    """a - b over the seeds both have: mean delta, its 95% t interval (None with fewer than 2 pairs)."""
    seeds = sorted(set(a) & set(b))
    deltas = [a[s] - b[s] for s in seeds]
    mean, std = mean_std(deltas)
    out: dict[str, float | int | list[int] | None] = {"seeds": seeds, "n": len(seeds), "mean": mean}
    if len(seeds) >= 2:
        half = t975(len(seeds) - 1) * std / math.sqrt(len(seeds))
        out.update(low=mean - half, high=mean + half)
    else:
        out.update(low=None, high=None)
    return out
