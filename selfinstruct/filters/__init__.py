"""Filters for generated tasks: quality heuristics, MinHash near-duplicates, exact ROUGE-L novelty.

`FilterChain(config)` is what the rest of the package calls; the indexes are usable on their own.
"""

from selfinstruct.filters.chain import FilterChain, Verdict
from selfinstruct.filters.config import (
    FilterConfig,
    HeuristicsConfig,
    MinHashConfig,
    RedisStorage,
    RougeConfig,
)
from selfinstruct.filters.heuristics import HeuristicsFilter
from selfinstruct.filters.minhash import MinHashFilter, MinHashIndex
from selfinstruct.filters.rouge import RougeIndex, fmeasure, rouge_l, tokenize
from selfinstruct.filters.rouge_filter import RougeFilter

__all__ = [
    "FilterChain", "FilterConfig", "HeuristicsConfig", "HeuristicsFilter", "MinHashConfig", "MinHashFilter",
    "MinHashIndex", "RedisStorage", "RougeConfig", "RougeFilter", "RougeIndex", "Verdict", "fmeasure",
    "rouge_l", "tokenize",
]  # fmt: skip
