"""A stop the loop did not choose (SIGINT, SIGTERM, every replica down) leaves every candidate on record exactly
once, on a scripted model (tests/scripted.py) over the real HTTP backend, in real processes:

- the answers a round had already got when it was cut short are settled, not dropped;
- kill -9 while the stop writes its records (the SIGTERM-then-SIGKILL of `docker stop`), then a resume, ends
  exactly where the clean stop followed by a resume ends: nothing both accepted and `loop_unfinished`;
- the schedule of a run cannot change on resume, not even with --force.

Run: .venv/bin/pytest -q tests/test_stop_records.py
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from scripted import ScriptedBackend, ScriptedServer
from test_journal import recipe_file, records, start

from selfinstruct import parse
from selfinstruct.config import load_recipe
from selfinstruct.errors import SelfInstructError
from selfinstruct.generate import generate

# SIGINT comes while the K-th request waits: in round 1 (eight instruction requests, four answered) or in
# round 3 of 8-request rounds (instances and classification, three answered).
K = 20


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()


def _recipe(tmp: Path, server: ScriptedServer, schedule: str) -> Path:
    # One request at a time (streaming: one in flight, else the order of arrival is the server's): which
    # answers are in when the signal comes is the same in every run.
    window = 1 if schedule == "stream" else 8
    return recipe_file(tmp, server.url, concurrency=1, target=60, round_size=window, schedule=schedule)


def _signal_at(server: ScriptedServer, proc, n: int, then=None) -> None:
    """SIGINT the run while the n-th request (from now) waits for its answer; `then` runs after the signal."""
    base = len(server.calls)

    def on_call(i: int) -> None:
        if i == base + n:
            threading.Timer(0.3, os.kill, (proc.pid, signal.SIGINT)).start()
            if then is not None:
                threading.Timer(0.4, then).start()
            time.sleep(1.5)  # this answer comes after the stop

    server.on_call = on_call


def _stopped_run(
    recipe: Path, out: Path, server: ScriptedServer, fault: str | None = None, k: int = K
) -> int:
    proc = start(recipe, out, fault=fault)
    _signal_at(server, proc, k)
    proc.communicate(timeout=120)
    server.on_call = None
    return proc.returncode


def _resume(recipe: Path, out: Path) -> None:
    proc = start(recipe, out)
    log = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, log[-3000:]


def _on_record_once(out: Path) -> None:
    """Every candidate of every journaled instruction answer is a task or a whole-task reject, once; the
    manifest counts the lines."""
    tasks, rejects = records(out / "tasks.jsonl"), records(out / "rejects.jsonl")
    where = Counter(t["id"] for t in tasks)
    where.update(
        r["record"]["id"]
        for r in rejects
        if r.get("record") and not {"instance", "block"} & set(r["evidence"])
    )
    answers = [
        e
        for e in records(out / "journal.jsonl")
        if e["ev"] == "completion" and e["kind"] == "instructions" and e["error"] is None
    ]
    assert answers
    for e in answers:
        reading = parse.read_list(e["texts"][0], truncated=e["finish_reasons"][0] == "length")
        for j in range(len(reading.items)):
            assert where[f"t-{e['request']}.{j}"] == 1, (e["round"], e["request"], j, e["texts"][0][:200])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == len(tasks) and manifest["counts"]["rejected"] == len(rejects)


@pytest.mark.parametrize(("schedule", "k"), [("rounds", 5), ("rounds", K), ("stream", 5), ("stream", K)])
def test_answers_in_when_a_signal_comes_are_settled(tmp_path, server, schedule, k):
    out = tmp_path / "run"
    assert _stopped_run(_recipe(tmp_path, server, schedule), out, server, k=k) == 130
    journal = records(out / "journal.jsonl")
    assert journal[-1]["ev"] == "round" and journal[-1]["stop"] == "stopped: SIGINT"
    assert sum(e["ev"] == "completion" for e in journal) == k - 1  # the answers in before the signal
    _on_record_once(out)  # the cut round's instructions too: rejected, or admitted and then loop_unfinished


def test_answers_in_when_every_replica_goes_down_are_settled(tmp_path):
    server = ScriptedServer()
    try:
        out, recipe = tmp_path / "run", _recipe(tmp_path, server, "rounds")
        recipe.write_text(
            recipe.read_text().replace("max_retries: 0", "max_retries: 0, all_down_timeout_s: 0.001")
        )
        proc = start(recipe, out)
        # Gone after five answers of round 1: its next requests fail, and the second failure stops the run.
        server.on_call = lambda i: threading.Thread(target=server.close).start() if i == 5 else None
        log = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == 1 and "Traceback" not in log, log[-3000:]
        assert json.loads((out / "manifest.json").read_text())["stop_reason"].startswith("error: ")
        _on_record_once(out)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("schedule", "k", "fault"),
    [
        ("rounds", 5, "after:rejects:1"),  # the cut round's records written, loop_unfinished not yet
        ("rounds", K, "after:rejects:3"),  # the same after two whole rounds
        ("rounds", K, "after:unfinished"),  # loop_unfinished written, the stop's checkpoint not yet
        ("stream", K, f"after:rejects:{K}"),  # K - 1 answers settled (an append each), then loop_unfinished
        ("stream", K, "after:unfinished"),
    ],
)
def test_kill_nine_inside_a_stop_then_resume_ends_as_the_clean_stop_does(
    tmp_path, server, schedule, k, fault
):
    recipe = _recipe(tmp_path, server, schedule)
    clean = tmp_path / "clean"
    assert _stopped_run(recipe, clean, server, k=k) == 130
    _resume(recipe, clean)

    killed = tmp_path / "killed"
    assert _stopped_run(recipe, killed, server, fault=fault, k=k) == -signal.SIGKILL
    unfinished = {
        r["record"]["id"] for r in records(killed / "rejects.jsonl") if r["reason"] == "loop_unfinished"
    }
    _resume(recipe, killed)
    tasks = records(killed / "tasks.jsonl")
    assert not unfinished & {t["id"] for t in tasks}  # never both loop_unfinished and accepted
    assert tasks == records(clean / "tasks.jsonl")
    assert records(killed / "rejects.jsonl") == records(clean / "rejects.jsonl")
    _on_record_once(killed)


def test_a_readmit_between_a_kill_inside_a_stop_and_the_resume_ends_as_after_a_clean_stop(tmp_path, server):
    """Someone auditing the rejects readmits one of a run killed while it wrote its stop, before anyone resumes
    it: readmit acts as the writer of a run nobody holds, and the resume then finishes the stop as decided and
    takes the readmitted instruction in, ending where the clean stop, the same readmit and a resume end."""
    from selfinstruct.readmit import readmit

    recipe = _recipe(tmp_path, server, "rounds")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert _stopped_run(recipe, clean, server, k=K) == 130
    # killed inside the stop: the cut round's records written, loop_unfinished not yet
    assert _stopped_run(recipe, killed, server, fault="after:rejects:3", k=K) == -signal.SIGKILL
    pick = next(
        r["id"]
        for r in records(killed / "rejects.jsonl")
        if r["stage"] in ("heuristics", "rouge") and r.get("record", {}).get("instruction")
    )
    for run in (clean, killed):
        entries, writer = readmit(run, [pick], by="ana", now="2026-12-01T00:00:00+00:00")
        assert writer is None and [e.reject_id for e in entries] == [pick]
        _resume(recipe, run)
    tasks = records(killed / "tasks.jsonl")
    assert tasks == records(clean / "tasks.jsonl")
    assert records(killed / "rejects.jsonl") == records(clean / "rejects.jsonl")
    readmitted = [json.loads((r / "manifest.json").read_text())["readmitted"] for r in (clean, killed)]
    assert readmitted[0] == readmitted[1] and [r["reject_id"] for r in readmitted[1]] == [pick]
    # an instruction alone: it joined the pool, then got its classification and instances as a task of its own
    done = [t for t in tasks if t.get("meta", {}).get("completes") == readmitted[1][0]["task_id"]]
    assert [t["provenance"] for t in done] == ["readmitted"] and done[0]["instances"]
    _on_record_once(killed)


def test_a_readmit_during_a_runs_last_round_is_taken_in_by_its_stop(tmp_path, server):
    """`readmit` while the run's writer waits on its last round's answers: the writer said it would take the
    request in at its next round, and there is none; its stop takes it in (it once stayed a request forever)."""
    from selfinstruct.readmit import readmit

    recipe = recipe_file(tmp_path, server.url, concurrency=1, target=400, round_size=8, max_rounds=2)
    out, said = tmp_path / "run", []

    def on_call(i: int) -> None:
        if i == 12:  # round 2 (in rounds of 8 requests)
            pick = next(r["id"] for r in records(out / "rejects.jsonl")
                        if r["stage"] in ("heuristics", "rouge") and r.get("record", {}).get("instruction"))  # fmt: skip
            said.append((pick, *readmit(out, [pick], by="ana")))

    server.on_call = on_call
    proc = start(recipe, out)
    log = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, log[-3000:]
    [(pick, entries, writer)] = said
    assert writer == proc.pid and [e.reject_id for e in entries] == [pick]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stop_reason"] == "max_rounds"
    assert [r["reject_id"] for r in manifest["readmitted"]] == [pick]
    # an instruction alone: queued for its classification and instances, which a resume asks for
    _resume(recipe_file(tmp_path, server.url, concurrency=1, target=400, round_size=8, max_rounds=3), out)
    done = [t for t in records(out / "tasks.jsonl") if t.get("meta", {}).get("completes")]
    rejected = [
        r for r in records(out / "rejects.jsonl") if (r.get("record") or {}).get("meta", {}).get("completes")
    ]
    assert len(done) + len(rejected) == 1


def test_the_schedule_cannot_change_on_resume_even_with_force(tmp_path):
    stream = load_recipe(
        recipe_file(
            tmp_path, "http://127.0.0.1:9/v1", target=400, round_size=8, schedule="stream", max_rounds=2
        )
    )
    generate(stream, tmp_path / "run", backend=ScriptedBackend())
    rounds = stream.model_copy(update={"loop": stream.loop.model_copy(update={"schedule": "rounds"})})
    with pytest.raises(SelfInstructError, match="loop.schedule stream; it cannot change on resume") as e:
        generate(rounds, tmp_path / "run", force=True, backend=ScriptedBackend())
    assert "\n" not in str(e.value)
