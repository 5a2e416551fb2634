"""Readmit: chosen rejects move into the accepted set, on the record, once.

Run: pytest tests/test_readmit.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.audit import KEPT, audit
from selfinstruct.cli import app
from selfinstruct.errors import SelfInstructError
from selfinstruct.readmit import as_task, default_by, readmit, split_ids
from selfinstruct.schema import Instance, Readmission, Reject, RunManifest, Task
from selfinstruct.store import JsonlAppender, RunStore, read_jsonl


def _candidate(cid: str, text: str, rnd: int, **extra) -> dict:
    return Task(id=cid, instruction=text, provenance="generated", round=rnd,
                meta={"raw": "1. " + text, "finish_reason": "stop"}, **extra).model_dump()  # fmt: skip


def build_run(root: Path) -> Path:
    with RunStore.open(root) as store:
        store.append(
            [Task(id="t-1", instruction="List three uses of a paperclip.", provenance="generated", round=1,
                  instances=[Instance(output="a, b, c")])],
            [
                Reject(id="r-rouge", stage="rouge", reason="rouge_too_similar", round=1,
                       record=_candidate("t-2", "List three uses for a paperclip at work.", 1),
                       evidence={"score": 0.78, "neighbour_id": "t-1", "threshold": 0.7,
                                 "neighbour": "List three uses of a paperclip."}),
                Reject(id="r-flight", stage="loop", reason="loop_stopped_in_flight", round=2,
                       record=_candidate("t-3", "Translate the sentence into French.", 2,
                                         instances=[{"input": "Good morning", "output": "Bonjour"}]),
                       evidence={"stop": "max_rounds"}),
                Reject(id="r-parse", stage="parse", reason="unparseable", round=2, raw="<<garbled>>",
                       evidence={"expected": "numbered list"}),
                Reject(id="r-heur", stage="heuristics", reason="heuristics_blacklisted_word", round=2,
                       record=_candidate("t-4", "Draw a map of the town.", 2), evidence={"word": "map"}),
                Reject(id="r-bad", stage="heuristics", reason="heuristics_too_short", round=2,
                       record={"id": "t-5", "instruction": ""}, evidence={"words": 0}),
                Reject(id="r-dupe", stage="minhash", reason="minhash_near_duplicate", round=2,
                       record=_candidate("t-1", "List three uses of a paperclip.", 2),
                       evidence={"neighbour_id": "t-1", "jaccard": 1.0, "threshold": 0.8}),
            ],
        )  # fmt: skip
        store.write_manifest(RunManifest(
            name="readmit-test", created="2026-01-01T00:00:00+00:00", updated="2026-01-01T00:00:00+00:00",
            config={}, config_hash="x", model="m", backend="vllm", counts=dict(store.counts), rounds=2,
        ))  # fmt: skip
    return root


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_round_trip(tmp_path):
    run = build_run(tmp_path / "run")
    before_tasks, before_rejects = (run / "tasks.jsonl").read_bytes(), (run / "rejects.jsonl").read_bytes()
    res = CliRunner().invoke(
        app, ["readmit", str(run), "--ids", "r-rouge", "--ids", "r-flight", "--by", "ana"]
    )
    assert res.exit_code == 0, res.output
    assert "r-rouge" in res.stdout and "r-flight" in res.stdout and "taken in" in res.stdout

    # append-only: old lines untouched, rejects.jsonl not touched at all
    assert (run / "tasks.jsonl").read_bytes().startswith(before_tasks)
    assert (run / "rejects.jsonl").read_bytes() == before_rejects
    tasks = [Task.model_validate(t) for t in lines(run / "tasks.jsonl")]
    manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
    # t-3 had instances: accepted as it is. t-2 is an instruction alone: it joins the pool and is queued for
    # classification and instances under its own id, so it is not in tasks.jsonl yet.
    assert [t.id for t in tasks] == ["t-1", "t-3"]
    t3 = tasks[1]
    assert t3.provenance == "readmitted" and t3.instances == [
        Instance(input="Good morning", output="Bonjour")
    ]
    assert "raw" not in t3.meta and t3.meta["readmitted"]["reject_id"] == "r-flight"
    [event] = [e for e in lines(run / "journal.jsonl") if e["ev"] == "readmit"]
    assert [q["id"] for q in event["queued"]] == ["t-2+c"] and event["queued"][0]["meta"][
        "completes"
    ] == "t-2"
    assert event["queued"][0]["instruction"] == "List three uses for a paperclip at work."
    assert [a["id"] for a in event["admitted"]] == ["t-2", "t-3"]
    assert [(r.reject_id, r.task_id, r.stage, r.reason, r.by) for r in manifest.readmitted] == [
        ("r-rouge", "t-2", "rouge", "rouge_too_similar", "ana"),
        ("r-flight", "t-3", "loop", "loop_stopped_in_flight", "ana"),
    ]
    assert all(r.time.endswith("+00:00") for r in manifest.readmitted)
    assert manifest.counts["accepted"] == 2 and manifest.counts["readmitted"] == 2

    s = audit(run)  # shown as readmitted, not as rejected
    assert s["totals"] == {
        "accepted": 2, "rejected": 4, "readmitted": 2, "instances_dropped": 0, "records": 6,
        "acceptance": 2 / 6,
    }  # fmt: skip
    rouge = next(r for r in s["by_reason"] if r["reason"] == "rouge_too_similar")
    assert rouge == {
        "stage": "rouge",
        "reason": "rouge_too_similar",
        "count": 0,
        "share": 0.0,
        "readmitted": 1,
    }
    assert not any(x["id"] == "r-rouge" for g in s["samples"] for x in g["rejects"])
    assert [r["reject_id"] for r in s["readmitted"]] == ["r-rouge", "r-flight"]
    assert s["readmitted"][0]["instruction"] == "List three uses for a paperclip at work."

    again = CliRunner().invoke(app, ["readmit", str(run), "--ids", "r-rouge"])
    assert again.exit_code == 1
    assert "already readmitted by ana" in again.stderr and "Traceback" not in again.output
    assert len(lines(run / "tasks.jsonl")) == 2


def test_ids_comma_separated_and_default_user(tmp_path, monkeypatch):
    run = build_run(tmp_path / "run")
    monkeypatch.setenv("USER", "bo")
    res = CliRunner().invoke(app, ["readmit", str(run), "--ids", "r-heur,r-rouge", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(e["reject_id"], e["by"]) for e in out["readmitted"]] == [("r-heur", "bo"), ("r-rouge", "bo")]
    monkeypatch.setenv("USER", "bo\x1b[2J\x07")  # not ours to trust: recorded, then shown by audit
    assert readmit(run, ["r-flight"])[0][0].by == "bo[2J"
    monkeypatch.setenv("USER", "\x1b")
    assert default_by() == "unknown"
    monkeypatch.delenv("USER")
    assert default_by() == "unknown"
    assert split_ids(["a,b", " c ", "a", ","]) == ["a", "b", "c"]


@pytest.mark.parametrize("ids, message", [
    (["r-nope"], "no reject with id 'r-nope'"),
    (["r-parse"], "has no record to readmit (it holds only raw model text)"),
    (["r-bad"], "its record is not a task (instruction: `instruction` must be a non-empty string)"),
    (["r-dupe"], "task t-1 is already in the accepted set"),
    (["r-rouge", "r-nope"], "no reject with id 'r-nope'"),  # all or nothing
    ([",", " "], "no reject ids given"),
])  # fmt: skip
def test_refusals_write_nothing(tmp_path, ids, message):
    run = build_run(tmp_path / "run")
    snapshot = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(SelfInstructError, match=message.replace("(", r"\(").replace(")", r"\)")):
        readmit(run, ids, by="ana")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == snapshot
    res = CliRunner().invoke(app, ["readmit", str(run), *[a for i in ids for a in ("--ids", i)]])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_refuses_filter_directories_and_runs_without_manifest(tmp_path):
    out = tmp_path / "filtered"
    out.mkdir()
    with JsonlAppender(out / KEPT) as f:
        f.write({"instruction": "Kept.", "output": "x"})
    with JsonlAppender(out / "rejects.jsonl") as f:
        f.write(
            Reject(id="f1", stage="heuristics", reason="heuristics_too_short", record={"instruction": "Hi"})
        )
    with pytest.raises(SelfInstructError, match="is a `filter` output directory"):
        readmit(out, ["f1"])
    assert not (out / "tasks.jsonl").exists()

    bare = tmp_path / "bare"
    with RunStore.open(bare) as store:
        store.append([], [Reject(id="b1", stage="rouge", reason="rouge_too_similar",
                                 record=_candidate("t-9", "Name a river.", 1))])  # fmt: skip
    with pytest.raises(SelfInstructError, match="no manifest"):
        readmit(bare, ["b1"])
    assert (bare / "tasks.jsonl").read_text() == ""


def test_an_interrupted_readmit_is_completed_not_duplicated(tmp_path):
    """Fault injection: the request reached readmissions.jsonl, then the process died before taking it in.
    The next writer (here the next readmit) takes it in once."""
    run = build_run(tmp_path / "run")
    from selfinstruct.readmit import _append

    rej = next(r for r in read_jsonl(run / "rejects.jsonl", Reject) if r.id == "r-flight")
    entry = Readmission(
        reject_id=rej.id, task_id="t-3", stage=rej.stage, reason=rej.reason, by="ana", time="t0"
    )
    _append(run, [{"readmission": entry.model_dump(), "task": as_task(rej, entry).model_dump()}])
    assert audit(run)["totals"]["readmitted"] == 0
    # asked again: it was requested, and now it is taken in (it once stayed a request no writer would take in)
    with pytest.raises(SelfInstructError, match="already readmitted by ana"):
        readmit(run, ["r-flight"])
    assert [t["id"] for t in lines(run / "tasks.jsonl")] == ["t-1", "t-3"]
    assert [r.reject_id for r in _manifest(run).readmitted] == ["r-flight"]
    readmit(run, ["r-heur"], by="ana")
    assert [t["id"] for t in lines(run / "tasks.jsonl")] == ["t-1", "t-3"]
    assert [r.reject_id for r in _manifest(run).readmitted] == ["r-flight", "r-heur"]
    readmit(run, ["r-rouge"], by="ana")
    assert len([e for e in lines(run / "journal.jsonl") if e["ev"] == "readmit"]) == 3


def _manifest(run: Path) -> RunManifest:
    return RunManifest.model_validate_json((run / "manifest.json").read_text())


def test_a_manifest_a_full_disk_kept_from_listing_a_readmission_is_completed(tmp_path):
    """The journal took the readmission in, then writing the manifest failed (a full disk): the journal is the
    record, so the next readmit lists it in the manifest, and audit counts it."""
    run = build_run(tmp_path / "run")
    before = (run / "manifest.json").read_bytes()
    readmit(run, ["r-flight"], by="ana")
    (run / "manifest.json").write_bytes(before)  # as if the manifest's write had failed
    assert audit(run)["totals"]["readmitted"] == 0
    with pytest.raises(SelfInstructError, match="already readmitted by ana"):
        readmit(run, ["r-flight"], by="bo")
    assert [(r.reject_id, r.by) for r in _manifest(run).readmitted] == [("r-flight", "ana")]
    assert audit(run)["totals"]["readmitted"] == 1
    assert [t["id"] for t in lines(run / "tasks.jsonl")] == ["t-1", "t-3"]


def test_readmits_at_once_on_a_stopped_run_are_all_taken_in(tmp_path):
    """Several `readmit` processes on one stopped run at the same time: each request is taken in once, by
    whichever of them holds the run; none is left waiting for a writer that already looked."""
    run = build_run(tmp_path / "run")
    ids = [f"r-h{i}" for i in range(8)]
    with RunStore.open(run) as store:
        store.append(rejects=[
            Reject(id=rid, stage="heuristics", reason="heuristics_too_long", round=2,
                   record=_candidate(f"t-h{i}", f"Describe the island number {i} in a long way.", 2,
                                     instances=[{"input": "", "output": f"island {i}"}]),
                   evidence={"words": 99})
            for i, rid in enumerate(ids)
        ])  # fmt: skip
    script = (  # imported, then all asked at the same moment
        "import sys; from selfinstruct.readmit import readmit; print(flush=True); sys.stdin.readline(); "
        "readmit(sys.argv[1], [sys.argv[2]], by='p')"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(run), rid], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        for rid in ids
    ]  # fmt: skip
    for p in procs:
        p.stdout.readline()
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    assert [p.wait(timeout=120) for p in procs] == [0] * len(ids)
    assert sorted(r.reject_id for r in _manifest(run).readmitted) == ids
    assert sorted(t["id"] for t in lines(run / "tasks.jsonl")) == ["t-1"] + [f"t-h{i}" for i in range(8)]
    assert audit(run)["totals"]["readmitted"] == len(ids)


def test_a_wrong_id_leaves_a_newline_less_last_line_alone(tmp_path):
    """A complete last record without its final newline is a record, not a torn tail: nothing is cut."""
    run = build_run(tmp_path / "run")
    text = (run / "tasks.jsonl").read_bytes()
    (run / "tasks.jsonl").write_bytes(text.rstrip(b"\n"))
    with pytest.raises(SelfInstructError, match="no reject with id"):
        readmit(run, ["r-nope"])
    assert (run / "tasks.jsonl").read_bytes() == text.rstrip(b"\n")
    assert not (run / "torn.log").exists()
    readmit(run, ["r-flight"])  # the writer completes the line instead of cutting it
    assert [t["id"] for t in lines(run / "tasks.jsonl")] == ["t-1", "t-3"]
    assert not (run / "torn.log").exists()


def test_a_readmissions_file_that_is_a_link_is_refused_not_written_through(tmp_path):
    run = build_run(tmp_path / "run")
    (run / "readmissions.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")  # dangling: appending created it
    with pytest.raises(SelfInstructError, match="readmissions.jsonl: is not a regular file"):
        readmit(run, ["r-rouge"], by="ana")
    assert not (tmp_path / "elsewhere.jsonl").exists()
    assert [t["id"] for t in lines(run / "tasks.jsonl")] == ["t-1"]


def test_the_manifest_counts_what_is_on_disk_after_a_torn_line_is_cut(tmp_path):
    """Opening the run cuts a torn last reject into torn.log; the manifest kept counting it."""
    run = build_run(tmp_path / "run")
    data = (run / "rejects.jsonl").read_bytes()
    (run / "rejects.jsonl").write_bytes(data[:-30])  # the last reject (r-dupe, minhash) torn by a crash
    readmit(run, ["r-rouge"], by="ana")
    counts = RunManifest.model_validate_json((run / "manifest.json").read_text()).counts
    assert len(lines(run / "rejects.jsonl")) == 5 and "rejected_minhash_near_duplicate" not in counts
    assert (counts["rejected"], counts["accepted"], counts["readmitted"]) == (5, 1, 1), counts
