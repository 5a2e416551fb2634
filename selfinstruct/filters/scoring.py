"""Scoring stages over a kept set: IFD, then the judge's rating, each turning scores into rejects.

These run after the chain because a top share needs every score first, and a judge is best asked in one large
batch. The bootstrap loop and `filter` call `score_and_select` on what the chain kept; each reject carries its
score and cut-off. No files here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from selfinstruct.filters import ifd, rating
from selfinstruct.filters.config import FilterConfig
from selfinstruct.schema import Reject, Task
from selfinstruct.stats import Stats


def score_and_select(
    tasks: Sequence[Task],
    config: FilterConfig,
    *,
    judge: Any = None,
    scorer: ifd.IFDScorer | None = None,
    stats: Stats | None = None,
) -> tuple[list[Task], list[Reject]]:
    """(kept tasks with meta["ifd"] / meta["rating"], rejects). `judge` is a backend for the rating (the loop
    passes its own); without one, the one `config.rating.backend` names is started and closed here."""
    stats = stats if stats is not None else Stats()
    kept, rejects = list(tasks), []
    if config.ifd is not None and kept:
        with stats.timer("ifd"):
            kept = (scorer or ifd.IFDScorer(config.ifd)).score(kept)
            kept, r = ifd.select(kept, config.ifd)
        rejects += r
    if config.rating is not None and kept:
        own = judge is None
        if own:  # the judge the config names (default: the embedded model in process), closed when done
            from selfinstruct.llm import make_backend

            judge = make_backend(config.rating.backend or {"kind": "vllm"})
        try:
            with stats.timer("rating"):
                kept = rating.rate(kept, judge, config.rating)
                kept, r = rating.select(kept, config.rating)
        finally:
            if own:
                judge.close()
        rejects += r
    for r in rejects:
        stats.reject(r.reason)
    return kept, rejects
