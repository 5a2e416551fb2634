"""Paired bootstrap on constructed cases whose answer is known. Run: .venv/bin/pytest -q tests/evaluation/test_stats.py"""

import math

import pytest

from selfinstruct.evaluation.stats import bootstrap_mean, paired_difference


def test_constant_shift_has_a_zero_width_interval():
    base = [0.1 * (i % 7) for i in range(50)]
    d = paired_difference(base, [b + 0.25 for b in base])
    assert d.estimate == pytest.approx(0.25)
    assert d.low == pytest.approx(0.25) and d.high == pytest.approx(0.25)


def test_difference_of_a_proportion_matches_the_binomial_interval():
    # Student gains one point on half of 400 items: the mean difference resamples as Binomial(400, 0.5) / 400,
    # whose 95% interval is 0.5 +- 1.96 * sqrt(0.25 / 400) = [0.451, 0.549].
    n = 400
    base = [0.0] * n
    student = [1.0 if i % 2 else 0.0 for i in range(n)]
    d = paired_difference(base, student, resamples=20_000, seed=1)
    half = 1.96 * math.sqrt(0.25 / n)
    assert d.estimate == 0.5
    assert d.low == pytest.approx(0.5 - half, abs=0.006) and d.high == pytest.approx(0.5 + half, abs=0.006)
    assert d.n == n and d.resamples == 20_000 and d.seed == 1


def test_pairing_finds_a_small_gain_that_unpaired_intervals_would_miss():
    # Hard and easy items alternate (item variance 0.25); the student fixes 12 of the 200 hard ones.
    n = 400
    base = [float(i % 2) for i in range(n)]
    student = [1.0 if (i % 2 or i < 24) else 0.0 for i in range(n)]
    d = paired_difference(base, student)
    assert d.estimate == pytest.approx(12 / n)
    assert d.low > 0 and d.excludes_zero()
    # The unpaired 95% half-width of a difference of two means near 0.5 is about 0.069: it would include 0.
    b, s = bootstrap_mean(base), bootstrap_mean(student)
    assert s.low < b.high


def test_ratio_weights_give_instruction_level_accuracy():
    # Two prompts with 2 and 3 instructions; base follows 1 and 3, student 2 and 3: 4/5 vs 5/5.
    d = paired_difference([1, 3], [2, 3], [2, 3], resamples=500)
    assert d.estimate == pytest.approx(0.2)
    m = bootstrap_mean([1, 3], [2, 3], resamples=500)
    assert m.estimate == pytest.approx(0.8) and 0.5 <= m.low <= m.high <= 1.0


def test_seeded_and_checked():
    a, b = [0, 1, 1, 0, 1], [1, 1, 0, 1, 1]
    assert paired_difference(a, b, seed=3) == paired_difference(a, b, seed=3)
    assert paired_difference(a, b, seed=3) != paired_difference(a, b, seed=4)
    with pytest.raises(ValueError, match="one length per item"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="at least one item"):
        bootstrap_mean([])
