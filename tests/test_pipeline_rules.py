"""`selfinstruct run`'s rules on a scripted model over the real HTTP backend (no engine): a finished stage is
skipped only while its settings are unchanged, a grown budget continues generation, data-changing settings need
--force, readmitted tasks survive the final filter, and no user file is deleted.

Run: .venv/bin/pytest -q tests/test_pipeline_rules.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from scripted import ScriptedServer
from typer.testing import CliRunner

from selfinstruct.cli import app

ROOT = Path(__file__).resolve().parents[1]
STAGES = "generate,filter,export"


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.close()


def recipe(tmp: Path, url: str, **loop) -> Path:
    data = {
        "name": "rules",
        "seeds": str(ROOT / "seeds"),
        "backend": {"kind": "openai", "base_urls": [url], "model": "scripted", "max_retries": 0},
        "loop": {"prompt_style": "chat", "target": 12, "round_size": 8, "max_rounds": 40, "seed": 5, **loop},
    }
    path = tmp / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(path: Path, out: Path, *extra: str) -> tuple[int, dict | str]:
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--stages", STAGES, "--json", *extra])
    if res.exit_code:
        return res.exit_code, res.output
    return 0, json.loads(res.stdout.strip().splitlines()[-1])


def test_skips_only_unchanged_stages_and_continues_a_grown_budget(tmp_path, server):
    out = tmp_path / "run"
    code, state = run(recipe(tmp_path, server.url), out)
    assert code == 0, state
    first = state["stages"]["generate"]["accepted"]
    assert first >= 12 and state["stages"]["export"]["rows"] >= 12

    code, state = run(recipe(tmp_path, server.url), out)
    assert state["skipped"] == ["generate", "filter", "export"]

    code, state = run(recipe(tmp_path, server.url, target=30), out)  # the budget grew: generation goes on
    assert code == 0, state
    assert state["skipped"] == []
    assert state["stages"]["generate"]["accepted"] >= 30 > first
    assert state["stages"]["export"]["rows"] >= 30

    path = recipe(tmp_path, server.url, target=30)
    data = yaml.safe_load(path.read_text())
    data["filters"] = {"rouge": {"threshold": 0.6}}
    path.write_text(yaml.safe_dump(data))
    code, output = run(path, out)
    assert code == 1 and "filters.rouge.threshold: 0.7 -> 0.6" in output and "--force" in output
    code, state = run(path, out, "--force")
    assert code == 0, state
    assert state["skipped"] == []


def test_readmitted_tasks_survive_the_final_filter_and_user_files_stay(tmp_path, server):
    out = tmp_path / "run"
    code, state = run(recipe(tmp_path, server.url), out)
    assert code == 0, state
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    chosen = next(r for r in rejects if r["reason"] == "rouge_too_similar")
    res = CliRunner().invoke(app, ["readmit", str(out), "--ids", chosen["id"]])
    assert res.exit_code == 0, res.output
    (out / "filter" / "notes.txt").write_text("mine")

    # One more task wanted: the queued readmission is classified, given instances and accepted.
    code, state = run(recipe(tmp_path, server.url, target=state["stages"]["generate"]["accepted"] + 1), out)
    assert code == 0, state
    tasks = [json.loads(x) for x in (out / "tasks.jsonl").read_text().splitlines()]
    readmitted = [t for t in tasks if t["provenance"] == "readmitted"]
    assert [t["meta"]["completes"] for t in readmitted] == [chosen["record"]["id"]]
    kept = [json.loads(x) for x in (out / "filter" / "kept.jsonl").read_text().splitlines()]
    assert readmitted[0]["id"] in {k["id"] for k in kept}  # not re-rejected by the final pass
    filter_rejects = (out / "filter" / "rejects.jsonl").read_text()
    assert readmitted[0]["id"] not in filter_rejects
    assert (out / "filter" / "notes.txt").read_text() == "mine"


def test_later_stages_refuse_a_run_another_process_is_writing(tmp_path, server):
    """`run --stages filter,export` filtered and exported a half-written run and marked both stages finished."""
    import subprocess
    import sys

    out = tmp_path / "run"
    code, state = run(recipe(tmp_path, server.url), out)
    assert code == 0, state
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from selfinstruct.store import RunStore; s = RunStore.open({str(out)!r}); "
         "print('locked', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = (out / "pipeline.json").read_text()
        res = CliRunner().invoke(app, ["run", str(recipe(tmp_path, server.url)), "--out", str(out),
                                       "--stages", "filter,export", "--force"])  # fmt: skip
        assert res.exit_code == 1 and f"pid {holder.pid}) is writing this run" in res.stderr, res.output
        assert (out / "pipeline.json").read_text() == before
    finally:
        holder.kill()
        holder.wait()


def _users_file_stays(tmp_path: Path, path: Path, name: str, rel: str) -> Path:
    """A folder no pipeline wrote (a Self-Instruct seed file as its tasks.jsonl) holding a file of the user's
    where a stage writes: `run --stages filter,export` refuses it, in one line naming it, and leaves it."""
    folder = tmp_path / name
    (folder / rel).parent.mkdir(parents=True)
    (folder / "tasks.jsonl").write_text((ROOT / "seeds" / "seed_tasks.jsonl").read_text())
    (folder / rel).write_text("MINE\n")
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(folder), "--stages", "filter,export"])
    assert res.exit_code == 1 and Path(rel).name in res.stderr and "Traceback" not in res.output, res.output
    assert (folder / rel).read_text() == "MINE\n"
    return folder


def test_a_folder_no_pipeline_wrote_keeps_the_users_files(tmp_path):
    """`run --stages filter,export` deleted the user's filter/kept.jsonl and replaced export/train.jsonl in a
    folder that had no pipeline.json, then failed on the seed-format tasks.jsonl it had just filtered."""
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    _users_file_stays(tmp_path, path, "mine", "filter/kept.jsonl")
    other = _users_file_stays(tmp_path, path, "other", "export/train.jsonl")
    (other / "export" / "train.jsonl").rename(tmp_path / "moved.jsonl")  # moved away: the stage runs
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(other), "--stages", "filter,export"])
    assert res.exit_code == 0, res.output
    assert "a few accepted tasks" in res.stdout and "haiku" in res.stdout  # the sample reads seed records too
    assert (other / "export" / "train.jsonl").read_text().count("\n") >= 3


def test_changed_seeds_are_a_data_change(tmp_path, server):
    """`run` skipped generation after the seed file changed (by path or content): the old data and student
    stayed as if made from the new seeds."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "seed_tasks.jsonl").write_text((ROOT / "seeds" / "seed_tasks.jsonl").read_text())
    path = recipe(tmp_path, server.url)
    data = yaml.safe_load(path.read_text())
    data["seeds"] = str(seeds)
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    code, state = run(path, out)
    assert code == 0, state
    lines = (seeds / "seed_tasks.jsonl").read_text().splitlines()
    (seeds / "seed_tasks.jsonl").write_text("\n".join(lines[1:]) + "\n")  # one seed fewer
    code, output = run(path, out)
    assert code == 1 and "seeds" in output and "--force" in output, output


@pytest.mark.parametrize("text", ["{}", "[]", '{"stages": []}', "null", '{"stages": {"filter": 3}}'])
def test_a_damaged_pipeline_record_is_one_line(tmp_path, text):
    out = tmp_path / "run"
    out.mkdir()
    (out / "pipeline.json").write_text(text)
    res = CliRunner().invoke(
        app, ["run", str(recipe(tmp_path, "http://127.0.0.1:9/v1")), "--out", str(out), "--stages", "export"]
    )
    last = res.stderr.strip().splitlines()[-1]  # after the recipe's settings
    assert res.exit_code == 1 and last.startswith("error: ") and "pipeline.json" in last, res.output
    assert "Traceback" not in res.output


@pytest.mark.vllm  # the embedded model (trained here, not served)
def test_an_interrupted_train_whose_settings_changed_starts_over(tmp_path, embedded_model):
    """A train stage stopped before it finished, then rerun with other `sft:` settings, ended in train's advice
    to pass --fresh, an option `run` does not have; the only way on was deleting RUN/student by hand."""
    out = tmp_path / "run"
    (out / "export").mkdir(parents=True)
    rows = [
        {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}."}]}
        for i in range(8)
    ]
    (out / "export" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")

    def train(learning_rate: float) -> tuple[int, str]:
        data = yaml.safe_load(path.read_text())
        data["sft"] = {"model": str(embedded_model), "max_length": 64,
                       "trainer": {"max_steps": 1, "save_steps": 1, "learning_rate": learning_rate}}  # fmt: skip
        path.write_text(yaml.safe_dump(data))
        res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--stages", "train", "--json"])
        return res.exit_code, res.output

    code, output = train(1e-4)
    assert code == 0, output
    state = json.loads((out / "pipeline.json").read_text())
    state["stages"]["train"]["finished"] = (
        False  # as a kill after its checkpoint, before the record, leaves it
    )
    (out / "pipeline.json").write_text(json.dumps(state))
    code, output = train(2e-4)
    assert code == 0 and "settings changed since it started: starting over" in output, output
    summary = json.loads((out / "student" / "sft.json").read_text())
    assert summary["trainer"]["learning_rate"] == 2e-4 and summary["result"]["resumed_from"] is None


def test_no_stage_or_no_run_folder_is_said_and_nothing_is_created(tmp_path):
    """`--stages ,` ran nothing and exited 0; `--stages filter` on a missing folder created it, then failed."""
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "a"), "--stages", ","])
    assert res.exit_code == 1 and "names no stage" in res.stderr, res.output
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "b"), "--stages", "filter"])
    assert res.exit_code == 1 and "no such run folder" in res.stderr, res.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _lines(path: Path) -> int:
    return path.read_text().count("\n")


@pytest.mark.vllm  # the embedded model (trained here, not served)
def test_a_stage_whose_input_changed_since_it_finished_runs_again(tmp_path, server, embedded_model):
    """`run --stages generate` with a grown target, then `run --stages filter,export,train`, skipped all three:
    `upstream_ran` only saw stages run in the same invocation, so the student stayed trained on the old export.
    Likewise after `selfinstruct generate -n N` on the run. A stage reruns when its inputs or outputs differ
    from those it finished with."""

    def rec(**loop) -> Path:
        path = recipe(tmp_path, server.url, **loop)
        data = yaml.safe_load(path.read_text())
        data["sft"] = {"model": str(embedded_model), "max_length": 64, "trainer": {"max_steps": 1}}
        path.write_text(yaml.safe_dump(data))
        return path

    def trained_on() -> int:  # the examples the student was trained from
        return json.loads((out / "student" / "sft.json").read_text())["result"]["examples"]

    out = tmp_path / "run"
    code, state = run(rec(), out, "--stages", "generate,filter,export,train")
    assert code == 0, state
    first = _lines(out / "export" / "train.jsonl")
    assert trained_on() == first
    first_kept, more = state["stages"]["filter"]["kept"], state["stages"]["generate"]["accepted"] + 5

    code, state = run(rec(target=more), out, "--stages", "generate")
    assert code == 0 and state["stages"]["generate"]["accepted"] >= more, state
    code, state = run(rec(target=more), out, "--stages", "filter,export,train")
    assert code == 0, state
    assert state["skipped"] == []
    assert state["stages"]["filter"]["kept"] == _lines(out / "filter" / "kept.jsonl") > first_kept
    assert trained_on() == _lines(out / "export" / "train.jsonl") > first
    code, state = run(rec(target=more), out, "--stages", "generate,filter,export,train")
    assert code == 0 and state["skipped"] == ["generate", "filter", "export", "train"], state

    # generation outside the pipeline grows the run: every stage after it runs again, and the record is true
    most = state["stages"]["generate"]["accepted"] + 5
    res = CliRunner().invoke(app, ["generate", str(rec()), "--out", str(out), "-n", str(most)])
    assert res.exit_code == 0, res.output
    code, state = run(rec(target=more), out, "--stages", "generate,filter,export,train")
    assert code == 0, state
    assert state["skipped"] == []
    assert state["stages"]["generate"]["accepted"] == _lines(out / "tasks.jsonl") >= most
    assert trained_on() == _lines(out / "export" / "train.jsonl") == state["stages"]["export"]["rows"]

    # a hand-edited output: the stage that wrote it runs again, and the stages after it
    kept = (out / "filter" / "kept.jsonl").read_text().splitlines(keepends=True)
    (out / "filter" / "kept.jsonl").write_text("".join(kept[:-3]))
    code, state = run(rec(target=more), out, "--stages", "filter,export,train")
    assert code == 0 and state["skipped"] == [], state
    assert _lines(out / "filter" / "kept.jsonl") == len(kept)  # written again from the run's tasks
    assert trained_on() == _lines(out / "export" / "train.jsonl")
    # touched but the same bytes: still skipped
    os.utime(out / "export" / "train.jsonl")
    code, state = run(rec(target=more), out, "--stages", "filter,export,train")
    assert code == 0 and state["skipped"] == ["filter", "export", "train"], state


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("learnin_rate", 0.003, "not a transformers.TrainingArguments field"),
        ("lr_scheduler_type", "bogus", "bogus"),
        ("warmup_steps", -5, "warmup_steps"),
        ("per_device_train_batch_size", 0, "positive integer"),
    ],
)
def test_a_bad_trainer_setting_is_refused_before_any_stage(tmp_path, key, value, said):
    """A typo under `sft.trainer:` surfaced only after generate, filter and export had run, and without the
    recipe's file or line; `run` now checks it first, as `train -c` does."""
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    data = yaml.safe_load(path.read_text())
    data["sft"] = {"max_length": 64, "trainer": {"num_train_epochs": 1, key: value}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    line = next(i for i, x in enumerate(path.read_text().splitlines(), 1) if x.strip().startswith(f"{key}:"))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
    last = res.stderr.strip().splitlines()[-1]
    assert res.exit_code == 1 and last.startswith(f"error: {path}:{line}: sft.trainer.{key}: "), res.output
    assert said in last and "Traceback" not in res.output, res.output
    assert not out.exists()  # nothing started
