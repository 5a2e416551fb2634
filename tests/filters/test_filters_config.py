"""FilterConfig refuses unknown keys and out-of-range values with "`field` must be ..., got X"."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from selfinstruct.filters import FilterConfig


def test_defaults_and_disabling():
    c = FilterConfig()
    assert c.rouge.threshold == 0.7 and c.minhash.threshold == 0.8 and c.heuristics.min_instruction_words == 4
    assert FilterConfig(rouge=None).rouge is None
    assert all(
        f.description
        for m in (FilterConfig, type(c.rouge), type(c.minhash), type(c.heuristics))
        for f in m.model_fields.values()
    )


@pytest.mark.parametrize(
    "data, message",
    [
        ({"rouge": {"threshold": 1.5}}, "`threshold` must be in [0, 1], got 1.5"),
        ({"minhash": {"threshold": 0}}, "`threshold` must be in (0, 1], got 0"),
        ({"minhash": {"num_perm": 1}}, "`num_perm` must be at least 2, got 1"),
        ({"minhash": {"redis": {"port": 0}}}, "`port` must be in 1..65535, got 0"),
        (
            {"heuristics": {"min_instruction_words": 0}},
            "`min_instruction_words` must be a positive integer, got 0",
        ),
        ({"heuristics": {"blacklist": ["ok", " "]}}, "`blacklist` must be a list of non-empty strings"),
        ({"rouge": {"treshold": 0.7}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_field(data, message):
    with pytest.raises(ValidationError) as e:
        FilterConfig.model_validate(data)
    assert message in str(e.value)
