"""Paired bootstrap intervals: the same items resampled for both models, so item difficulty cancels out.

A difference between two models measured on the same items is only worth reporting with its uncertainty.
Resampling items (not answers) keeps each item's pair together (Efron & Tibshirani 1993, ch. 16; the
percentile interval). Everything is seeded, so a report is reproducible to the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

RESAMPLES = 10_000


class Interval(BaseModel):
    """An estimate with its percentile bootstrap interval."""

    model_config = ConfigDict(extra="forbid")

    estimate: float = Field(description="The statistic on the items as they are.")
    low: float = Field(description="Lower end of the interval.")
    high: float = Field(description="Upper end of the interval.")
    confidence: float = Field(0.95, description="Coverage of [low, high].")
    n: int = Field(description="Items the statistic was computed over.")
    resamples: int = Field(description="Bootstrap resamples drawn.")
    seed: int = Field(description="Seed of the resampling.")

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _ratio(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """sum(num)/sum(den) over each resample (rows of `idx`); an empty denominator counts as 0."""
    n, d = num[idx].sum(axis=1), den[idx].sum(axis=1)
    return np.divide(n, d, out=np.zeros_like(n, dtype=float), where=d > 0)


def _interval(point: float, draws: np.ndarray, n: int, resamples: int, seed: int, confidence: float):
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(
        estimate=float(point),
        low=float(low),
        high=float(high),
        confidence=confidence,
        n=n,
        resamples=resamples,
        seed=seed,
    )


def _check(*arrays: Sequence[float]) -> int:
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"paired values must have one length per item, got lengths {sorted(sizes)}")
    (n,) = sizes
    if n == 0:
        raise ValueError("the bootstrap needs at least one item, got 0")
    return n


def paired_difference(
    base: Sequence[float],
    student: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """student - base of a ratio statistic sum(x)/sum(weights) (the mean when `weights` is None), with items
    resampled together for both models.

    Per-item `base`/`student` are what each model earned on an item (1/0 for a followed prompt; the number
    of followed instructions for instruction-level accuracy, with `weights` the item's instruction count).
    """
    w = np.ones(len(base)) if weights is None else np.asarray(weights, dtype=float)
    n = _check(base, student, w)
    b, s = np.asarray(base, dtype=float), np.asarray(student, dtype=float)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    draws = _ratio(s, w, idx) - _ratio(b, w, idx)
    point = s.sum() / w.sum() - b.sum() / w.sum() if w.sum() > 0 else 0.0
    return _interval(point, draws, n, resamples, seed, confidence)


def bootstrap_mean(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """sum(values)/sum(weights) (the mean when `weights` is None) with its bootstrap interval over items."""
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=float)
    n = _check(values, w)
    v = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    point = v.sum() / w.sum() if w.sum() > 0 else 0.0
    return _interval(point, _ratio(v, w, idx), n, resamples, seed, confidence)
