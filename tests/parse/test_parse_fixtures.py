"""The parser on real completions of the embedded model (SmolLM2-135M-Instruct), for every prompt the loop sends,
in raw and chat style: tests/data/completions/*.jsonl, recorded by tests/data/completions/collect.py.
Run: pytest tests/parse/test_parse_fixtures.py

Every result is either verbatim text (each value a substring of the completion) or an unparseable outcome with
its problem line. The counts per stage and style are pinned, so a parser change that loses (or gains) records
shows here; update them on purpose, together with the shares in docs/parsing.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from selfinstruct.parse import read_examples, read_instances, read_list, read_yes_no

DATA = Path(__file__).resolve().parents[1] / "data" / "completions"


def rows(stage: str) -> list[dict]:
    with (DATA / f"{stage}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read(stage: str, row: dict):
    """(text the values must come from, Reading) for one recorded completion, as the loop would parse it."""
    cut = row["finish"] == "length"
    text = row.get("prefix", "") + row["text"]  # raw Alpaca prompts end with "Instruction:"
    if stage == "instructions":
        return text, read_list(text, first_number=row.get("first_number"), truncated=cut)
    if stage == "instances":
        return text, read_instances(text, output_first=row["output_first"], truncated=cut)
    return text, read_examples(text, truncated=cut)


def values(stage: str, item) -> list[str]:
    if stage == "instructions":
        return [item.text]
    if stage == "instances":
        return [item.input, item.output]
    instruction, inst = item
    return [instruction, inst.input, inst.output]


# completions with at least one record, and records, per style: (raw, chat)
EXPECTED = {
    "instructions": {"read": (100, 89), "records": (590, 610)},
    "instances": {"read": (55, 2), "records": (79, 2)},
    "examples": {"read": (86, 63), "records": (119, 102)},
}


@pytest.mark.parametrize("stage", ["instructions", "instances", "examples"])
def test_every_result_is_verbatim_or_unparseable(stage):
    counts: Counter = Counter()
    recorded = rows(stage)
    assert len(recorded) >= 200 and {r["style"] for r in recorded} == {"raw", "chat"}
    for row in recorded:
        text, got = read(stage, row)
        for item in got.items:
            for v in values(stage, item):
                assert v == "" or v in text, (v, text)
                assert v == v.strip()
        if got.items:
            counts[row["style"], "read"] += 1
            counts[row["style"], "records"] += len(got.items)
        else:
            assert got.problem and got.problem.startswith("expected "), row
        for u in got.unparsed:
            assert u.problem and u.text in text
    seen = {k: (counts["raw", k], counts["chat", k]) for k in ("read", "records")}
    assert seen == EXPECTED[stage]


def test_real_yes_no_answers():
    recorded = rows("classify")
    assert len(recorded) >= 200
    got = Counter((r["style"], read_yes_no(r["text"]).value) for r in recorded)
    assert dict(got) == {
        ("raw", False): 97, ("raw", True): 1, ("raw", None): 2,
        ("chat", False): 53, ("chat", True): 6, ("chat", None): 41,
    }  # fmt: skip


def shares() -> str:
    """The table for docs/parsing.md: completions that gave at least one record, per stage and style."""
    lines = [
        "| stage | style | completions | read | share | records | skipped blocks |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in ("instructions", "classify", "instances", "examples"):
        for style in ("raw", "chat"):
            recorded = [r for r in rows(stage) if r["style"] == style]
            if stage == "classify":
                got = [read_yes_no(r["text"]).value for r in recorded]
                ok, records, skipped = sum(v is not None for v in got), sum(v is not None for v in got), 0
            else:
                reads = [read(stage, r)[1] for r in recorded]
                ok = sum(bool(g.items) for g in reads)
                records, skipped = sum(len(g.items) for g in reads), sum(len(g.unparsed) for g in reads)
            lines.append(
                f"| {stage} | {style} | {len(recorded)} | {ok} | {ok / len(recorded):.0%} | {records} | {skipped} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(shares())
