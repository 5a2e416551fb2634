"""Cyclic garbage collection for a long-running command: rarer, since most of what a run allocates lives long.

A run holds tens of thousands of records (tasks, rejects, parsed JSON) and allocates dozens of objects per
candidate. At CPython's default thresholds (a young collection every 700 net allocations, an older one every
10 of those) the collector walked the surviving records so often that it took most of the ROUGE-L stage's time
on a reject-heavy stream (`filter_file` on bench/filters.py's 7,700-text near-copy stream, warm: `rouge` timer
0.31 s, 0.12 s with these thresholds) and a fifth of the loop's CPU (`bench/journal.py`: 16.0 µs per generated
token, 12.7 µs with them; peak memory 732 and 770 MiB). Objects without reference cycles are still freed at
once; cycles wait a little longer.
"""

from __future__ import annotations

import gc

THRESHOLDS = (10_000, 10, 10)


def collect_less() -> None:
    """Set this process's collection thresholds for a long run (the CLI does, for every command)."""
    gc.set_threshold(*THRESHOLDS)
