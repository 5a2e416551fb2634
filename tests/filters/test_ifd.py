"""IFD with the real embedded model: an answer the instruction gives away scores low, one it does not, high.

Run: .venv/bin/pytest -q tests/filters/test_ifd.py
Each constructed pair shares one answer, so ppl(answer alone) is the same and only the instruction differs.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.filters.config import FilterConfig, IFDConfig
from selfinstruct.filters.ifd import IFDScorer, select
from selfinstruct.filters.scoring import score_and_select
from selfinstruct.schema import Instance, Task

ANSWER_1 = "The quick brown fox jumps over the lazy dog near the old river bank."
ANSWER_2 = "Lemons, oranges, limes and grapefruits are all citrus fruits."
TRIPLES = [
    (f"Repeat this sentence exactly: {ANSWER_1}", "", ANSWER_1),  # predictable from the instruction
    ("Name a famous painter from Spain.", "", ANSWER_1),  # not predictable
    ("Copy the text given as input.", ANSWER_2, ANSWER_2),  # predictable from the input
    ("What is the boiling point of water in Kelvin?", "", ANSWER_2),  # not predictable
]


@pytest.fixture(scope="module")
def scores(embedded_model):
    return IFDScorer(IFDConfig(model=str(embedded_model), batch_size=3)).score_texts(TRIPLES)


def test_ifd_is_low_when_the_instruction_gives_the_answer_away(scores):
    given, unrelated, copied, unrelated_2 = (s["ifd"] for s in scores)
    assert given < 0.5 * unrelated, scores
    assert copied < 0.5 * unrelated_2, scores
    # Same answer, so the unconditioned perplexity is the same whatever the instruction (batching included).
    assert scores[0]["ppl_answer"] == pytest.approx(scores[1]["ppl_answer"], rel=1e-3)
    for s in scores:
        assert s["ifd"] == pytest.approx(s["ppl_conditioned"] / s["ppl_answer"], rel=1e-2)


def _scored(tid: str, ifd: float | None) -> Task:
    return Task(id=tid, instruction=f"Task {tid}", instances=[Instance(output="x")], meta={"ifd": ifd})


def test_select_rules_and_evidence():
    tasks = [_scored("a", 0.9), _scored("b", 0.2), _scored("c", 1.3), _scored("d", 0.5), _scored("e", None)]
    kept, rejects = select(tasks, IFDConfig(threshold=0.3, top_share=0.5))
    # c: IFD >= 1; b: under the threshold; of a and d the top half is a; e has no score and stays.
    assert [t.id for t in kept] == ["a", "e"]
    by_id = {r.record["id"]: r for r in rejects}
    assert by_id["c"].reason == "ifd_above_one" and by_id["c"].evidence == {"ifd": 1.3, "cutoff": 1.0}
    assert by_id["b"].reason == "ifd_below_threshold" and by_id["b"].evidence["cutoff"] == 0.3
    assert by_id["d"].reason == "ifd_not_in_top_share"
    assert by_id["d"].evidence == {"ifd": 0.5, "cutoff": 0.9, "top_share": 0.5}
    kept, rejects = select(tasks, IFDConfig(drop_above_one=False))
    assert len(kept) == 5 and not rejects


def test_score_and_select_stores_scores_in_meta(embedded_model):
    tasks = [
        Task(id=f"t{i}", instruction=i_, instances=[Instance(input=x, output=o)])
        for i, (i_, x, o) in enumerate(TRIPLES[:2])
    ]
    config = FilterConfig(ifd=IFDConfig(model=str(embedded_model), top_share=0.5, drop_above_one=False))
    kept, rejects = score_and_select(tasks, config)
    assert [t.id for t in kept] == ["t1"]  # the unpredictable answer has the higher IFD
    assert kept[0].meta["ifd"] == kept[0].instances[0].meta["ifd"]["ifd"]
    assert (
        rejects[0].reason == "ifd_not_in_top_share" and rejects[0].evidence["cutoff"] == kept[0].meta["ifd"]
    )


def test_filter_command_keeps_the_top_share(tmp_path, embedded_model):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"instruction": i, "input": x, "output": o}) + "\n" for i, x, o in TRIPLES)
    )
    out = tmp_path / "o"
    args = ["filter", str(src), "--out", str(out), "--filters", "rouge", "--json"]
    res = CliRunner().invoke(app, [*args, "--ifd-top-share", "0.5", "--ifd-model", str(embedded_model)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["kept"] == 2 and summary["reasons"] == {"ifd_not_in_top_share": 2}
    kept = [json.loads(line) for line in (out / "kept.jsonl").read_text().splitlines()]
    assert [k["instruction"] for k in kept] == [TRIPLES[1][0], TRIPLES[3][0]]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["record"]["instruction"] for r in rejects} == {TRIPLES[0][0], TRIPLES[2][0]}
    assert all(r["evidence"]["ifd"] < r["evidence"]["cutoff"] for r in rejects)


def test_export_keeps_the_top_share_by_ifd(tmp_path, embedded_model):
    from selfinstruct.export import export

    run = tmp_path / "tasks.jsonl"
    tasks = [
        Task(id=f"t{i}", instruction=i_, instances=[Instance(input=x, output=o)])
        for i, (i_, x, o) in enumerate(TRIPLES)
    ]
    # t3 was scored by the run already: its stored score is used, not recomputed.
    tasks[3] = tasks[3].model_copy(update={"meta": {"ifd": 0.99}})
    run.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    dropped = []
    ifd = IFDConfig(model=str(embedded_model), top_share=0.5)
    n = export(run, "alpaca", tmp_path / "out.jsonl", ifd=ifd, dropped=dropped)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert n == 2 and [r["instruction"] for r in rows] == [TRIPLES[1][0], TRIPLES[3][0]]
    assert {r.record["id"] for r in dropped} == {"t0", "t2"}
    assert all(
        r.reason == "ifd_not_in_top_share" and r.evidence["ifd"] < r.evidence["cutoff"] for r in dropped
    )


def test_filter_keeps_scores_in_task_shaped_records(tmp_path, embedded_model):
    src = tmp_path / "tasks.jsonl"
    tasks = [Task(id=f"t{i}", instruction=i_, instances=[Instance(input=x, output=o)], meta={"round": 1})
             for i, (i_, x, o) in enumerate(TRIPLES[:2])]  # fmt: skip
    src.write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    config = FilterConfig(heuristics=None, minhash=None, rouge=None, ifd=IFDConfig(model=str(embedded_model)))
    from selfinstruct.audit import audit
    from selfinstruct.filters.dataset import filter_file

    filter_file(src, tmp_path / "o", config)
    kept = [json.loads(line) for line in (tmp_path / "o" / "kept.jsonl").read_text().splitlines()]
    assert [k["id"] for k in kept] == ["t0", "t1"]
    assert all(0 < k["meta"]["ifd"] < 1 and k["meta"]["round"] == 1 for k in kept)
    # The audit of the filter directory draws the IFD distribution from those scores.
    assert audit(tmp_path / "o")["coverage"]["scores"]["ifd"]["accepted"]["n"] == 2
