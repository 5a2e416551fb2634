"""The Self-Instruct experiment in miniature (Wang et al. 2022, arXiv 2212.10560), for real, on CPU.

Self-Instruct's claim: a *base* model can bootstrap instruction data from its own generations and, fine-tuned
on it, follow instructions better. Here the base is Gemma 3 270M (`make gemma`), prompted with plain text as
the paper prompted GPT-3:

  1. generate   the base writes tasks from the 175 seeds through our loop and filters (pipelines/paper.yaml)
  2. train      the same base, fine-tuned on the accepted tasks                         -> student-filtered
  3. ablation   the same base, fine-tuned on as many *unfiltered* candidates: every rejected candidate that
                has instances, topped up with accepted tasks to the same count      -> student-unfiltered
  4. eval       base vs each student on IFEval (four accuracies, paired bootstrap intervals) and by a judge
                (both orders, win rate with interval); the base answers once, both comparisons reuse them

Every step resumes: rerun the same command after an interruption. `--smoke` runs every step at tiny sizes in
a few minutes (its figures prove the machinery, not the claim). The table goes to OUT/paper.md and OUT/paper.json.

    .venv/bin/python bench/paper.py --smoke          # a few minutes
    .venv/bin/python bench/paper.py                  # about an hour on a quiet 2-core machine
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfinstruct.config import Recipe, load_recipe  # noqa: E402
from selfinstruct.evaluation.ifeval_paired import METRICS  # noqa: E402

SMOKE = {
    "loop.target": 4,
    "loop.round_size": 16,
    "loop.max_rounds": 4,
    "loop.patience": 4,
    "sampling.instructions.max_tokens": 128,
    "sampling.instances.max_tokens": 64,
    "sft.max_length": 256,
    "eval.ifeval_limit": 8,
    "eval.limit": 4,
    "eval.max_tokens": 32,
    "eval.resamples": 1000,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- 1. generate ------------------------------------------------------------------------------------------


def step_generate(recipe: Recipe, out: Path) -> dict:
    from selfinstruct.generate import generate

    manifest = out / "run" / "manifest.json"
    if manifest.is_file():  # a finished run is not resumed: that would start an engine to do nothing
        done = json.loads(manifest.read_text(encoding="utf-8"))
        if done.get("stop_reason") and done.get("counts", {}).get("accepted", 0) >= recipe.loop.target:
            counts = done["counts"]
            return {
                "accepted": counts["accepted"],
                "rejected": counts.get("rejected", 0),
                "stop_reason": done["stop_reason"],
            }
    m = generate(
        recipe,
        out / "run",
        on_note=log,
        on_round=lambda r: log(f"round {r.round}: accepted {r.accepted_total}/{r.target}"),
    )
    accepted = m.counts.get("accepted", 0)
    if accepted == 0:
        raise SystemExit(f"generation accepted no tasks ({m.stop_reason}); nothing to train on")
    return {"accepted": accepted, "rejected": m.counts.get("rejected", 0), "stop_reason": m.stop_reason}


# ---- 3. the unfiltered candidates -------------------------------------------------------------------------


def unfiltered_sample(run: Path, n: int, seed: int) -> tuple[list[dict], dict]:
    """`n` candidates as if the filters had been off: every rejected candidate that reached the instance stage
    (its record holds an instruction and instances), topped up with accepted tasks drawn at random (seeded).

    Rejects come first because they are what the filters change; candidates refused before they had instances
    (ROUGE-L, instruction heuristics) cannot be trained on and are left out, which makes this ablation a lower
    bound on what the filters do. The drawn mix is reported.
    """
    from selfinstruct.jsonl import iter_json_objects
    from selfinstruct.schema import Task

    rejected: list[tuple[str, Task]] = []
    rejects = run / "rejects.jsonl"
    if rejects.is_file() and rejects.stat().st_size:
        for _, obj in iter_json_objects(rejects):
            rec = obj.get("record") or {}
            if not (isinstance(rec, dict) and rec.get("instruction") and rec.get("instances")):
                continue
            try:
                task = Task.model_validate(
                    {"id": obj["id"], "instruction": rec["instruction"], "instances": rec["instances"]}
                )
            except ValueError:
                continue
            if any(i.output.strip() for i in task.instances):
                rejected.append((f"rejected:{obj.get('reason')}", task))
    accepted = [("accepted", Task.model_validate(obj)) for _, obj in iter_json_objects(run / "tasks.jsonl")]
    rng = random.Random(seed)
    rng.shuffle(rejected)
    picked = rejected[:n]
    picked += rng.sample(accepted, min(n - len(picked), len(accepted)))
    origin: dict[str, int] = {}
    for where, _ in picked:
        origin[where] = origin.get(where, 0) + 1
    rows = [
        {"instruction": t.instruction, "input": inst.input, "output": inst.output}
        for _, t in picked
        for inst in t.instances
        if inst.output.strip()
    ]
    return rows, {"rejects_with_instances": len(rejected), "picked": len(picked), "origin": origin}


# ---- 2/3. train -------------------------------------------------------------------------------------------


def step_train(recipe: Recipe, data: Path, out: Path, max_steps: int | None) -> dict:
    from selfinstruct.sft.train import read_summary, train

    if read_summary(out) is not None:  # finished earlier
        return read_summary(out)["result"]
    res = train(
        recipe.sft,
        data,
        out,
        max_steps=max_steps,
        progress=lambda s, t, logs: (
            log(f"train {out.name} {s}/{t} loss {logs['loss']:.3f}") if "loss" in logs else None
        ),
    )
    return res.model_dump(mode="json")


# ---- 4. eval ----------------------------------------------------------------------------------------------


def step_eval(recipe: Recipe, out: Path, student: Path, slot) -> dict:
    """Both students share OUT/eval: the base's answers are generated once and reused for the second."""
    from selfinstruct.evaluation.answers import model_ref
    from selfinstruct.evaluation.pipeline_stage import compare

    return compare(
        model_ref(student), model_ref(recipe.sft.model), recipe.eval, slot=slot, out=out / "eval", note=log
    )


# ---- the table --------------------------------------------------------------------------------------------


def _iv(iv: dict | None, signed: bool = False) -> str:
    if not iv:
        return "–"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(iv['estimate'])} [{f.format(iv['low'])}, {f.format(iv['high'])}]"


def table(results: dict, smoke: bool) -> str:
    label = (
        "SMOKE (tiny sizes: proves every step runs, says nothing about the claim)" if smoke else "full run"
    )
    evals = results["eval"]
    first = next(iter(evals.values()))["ifeval"]
    lines = [
        f"Self-Instruct in miniature, {label}: Gemma 3 270M base; IFEval on {first['compared']} prompts "
        f"({first['left_out']} left out), max {first['max_tokens']} tokens; 95% paired bootstrap intervals.",
        "",
        "| model | " + " | ".join(m.replace("_", " ") for m in METRICS) + " | judge win rate vs base |",
        "|---|" + "---|" * (len(METRICS) + 1),
        "| base | " + " | ".join(_iv(first["base"]["accuracy"][m]) for m in METRICS) + " | – |",
    ]
    for name, ev in evals.items():
        ife = ev["ifeval"]
        cells = [
            f"{_iv(ife['student']['accuracy'][m])}<br>Δ {_iv(ife['difference'][m], True)}" for m in METRICS
        ]
        judge = ev.get("judge") or {}
        win = _iv(judge.get("win_rate")) + (f" ({judge['compared']} items)" if judge else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {win} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "pipelines" / "paper.yaml"))
    ap.add_argument("--out", default=None, help="default data/runs/paper (paper-smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: every step in a few minutes")
    args = ap.parse_args(argv)

    recipe = load_recipe(args.recipe, SMOKE if args.smoke else None)
    out = Path(args.out or ROOT / "data" / "runs" / ("paper-smoke" if args.smoke else "paper"))
    out.mkdir(parents=True, exist_ok=True)
    from selfinstruct.models import is_prepared

    if not is_prepared(Path(recipe.sft.model)):
        raise SystemExit(f"{recipe.sft.model} is not prepared: run `make gemma` first")
    max_steps = 2 if args.smoke else None
    results: dict = {"smoke": args.smoke, "recipe": recipe.model_dump(mode="json"), "seconds": {}}

    t = time.perf_counter()
    results["generate"] = step_generate(recipe, out)
    results["seconds"]["generate"] = round(time.perf_counter() - t, 1)
    log(f"generate: {results['generate']}")

    t = time.perf_counter()
    results["train"] = {"filtered": step_train(recipe, out / "run", out / "student-filtered", max_steps)}
    rows, drawn = unfiltered_sample(out / "run", results["generate"]["accepted"], recipe.loop.seed)
    unfiltered = out / "unfiltered.json"
    unfiltered.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    results["unfiltered"] = drawn
    log(f"unfiltered sample: {drawn}")
    results["train"]["unfiltered"] = step_train(recipe, unfiltered, out / "student-unfiltered", max_steps)
    results["seconds"]["train"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    from selfinstruct.evaluation.backends import EngineSlot

    with EngineSlot(recipe.backend, on_start=lambda p: log(f"starting vLLM on {p}")) as slot:
        results["eval"] = {
            "student, filtered data": step_eval(recipe, out, out / "student-filtered", slot),
            "student, unfiltered data": step_eval(recipe, out, out / "student-unfiltered", slot),
        }
        results["engine_starts_eval"] = slot.starts
    results["seconds"]["eval"] = round(time.perf_counter() - t, 1)

    (out / "paper.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    md = table(results, args.smoke)
    (out / "paper.md").write_text(md, encoding="utf-8")
    print(md)
    log(f"seconds: {results['seconds']}; results in {out}/paper.json")


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
