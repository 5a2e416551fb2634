"""`run`: generate -> filter -> export -> train -> eval, stage by stage, into one run directory.

    RUN/                 the generation run (tasks.jsonl, rejects.jsonl, manifest.json)
    RUN/filter/          a final pass of the whole filter chain over the accepted tasks (kept.jsonl, rejects.jsonl)
    RUN/export/          the training file (messages format)
    RUN/student/         the trained checkpoint (+ metrics.jsonl, checkpoint-N/)
    RUN/eval/            base vs student report and answers
    RUN/pipeline.json    which stages finished, what they produced, how long they took

A stage recorded as finished is skipped on rerun; an interrupted one resumes (generation and training resume
natively, the others are cheap and start over into fresh files). pipeline.json is replaced atomically after
every stage, so it never claims a stage that did not finish.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfinstruct.config import Recipe
from selfinstruct.errors import SelfInstructError
from selfinstruct.store import write_json_atomic

STAGES = ("generate", "filter", "export", "train", "eval")
STATE = "pipeline.json"


def _load_state(root: Path) -> dict[str, Any]:
    path = root / STATE
    if not path.exists():
        return {"stages": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SelfInstructError(f"{path}: not valid JSON ({e.msg}); delete it to rerun every stage") from None


def _generate(recipe: Recipe, root: Path, note) -> dict:
    from selfinstruct.generate import generate

    m = generate(
        recipe,
        root,
        on_note=note,
        on_round=lambda r: note(
            f"round {r.round}: accepted {r.accepted_total}/{r.target}, "
            f"{r.completion_tokens / max(r.generate_s, 1e-9):.0f} tok/s"
        ),
    )
    if m.counts.get("accepted", 0) == 0:
        raise SelfInstructError(
            f"{root}: generation accepted no tasks ({m.stop_reason}); nothing to train on"
        )
    return {
        "accepted": m.counts.get("accepted", 0),
        "rejected": m.counts.get("rejected", 0),
        "stop_reason": m.stop_reason,
        "out": str(root),
    }


def _filter(recipe: Recipe, root: Path, note) -> dict:
    from selfinstruct.filters.dataset import filter_file

    out = root / "filter"
    shutil.rmtree(out, ignore_errors=True)  # an interrupted pass starts over: it takes seconds
    res = filter_file(root / "tasks.jsonl", out, recipe.filters)
    return {"kept": res.kept, "rejected": res.rejected, "out": str(out)}


def _export(recipe: Recipe, root: Path, note) -> dict:
    from selfinstruct.export import export

    out = root / "export" / "train.jsonl"
    rows = export(root / "filter" / "kept.jsonl", "messages", out)
    if rows == 0:
        raise SelfInstructError(f"{out}: the export is empty; nothing to train on")
    return {"rows": rows, "out": str(out)}


def _train(recipe: Recipe, root: Path, note) -> dict:
    from selfinstruct.sft.train import train

    def progress(step: int, total: int, logs: dict) -> None:
        if "loss" in logs:
            note(f"train step {step}/{total}: loss {logs['loss']:.4f}")

    res = train(recipe.sft, root / "export" / "train.jsonl", root / "student", progress=progress)
    return {
        "used": res.used,
        "skipped": res.skipped,
        "steps": res.steps,
        "final_loss": res.final_loss,
        "tokens_trained": res.tokens_trained,
        "out": res.out,
    }


def _eval(recipe: Recipe, root: Path, note) -> dict:
    from selfinstruct.evaluation.pipeline_stage import evaluate_run

    return evaluate_run(recipe, root, note)


RUNNERS: dict[str, Callable[[Recipe, Path, Callable[[str], None]], dict]] = {
    "generate": _generate,
    "filter": _filter,
    "export": _export,
    "train": _train,
    "eval": _eval,
}


def run(
    recipe: Recipe,
    root: str | Path,
    *,
    stages: tuple[str, ...] = STAGES,
    note: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run the stages in order, skipping finished ones. Returns pipeline.json's content plus `skipped`."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SelfInstructError(f"`stages` must be a subset of {', '.join(STAGES)}, got {', '.join(unknown)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    state = _load_state(root)
    skipped = []
    for name in STAGES:
        if name not in stages:
            continue
        done = state["stages"].get(name, {})
        if done.get("finished"):
            note(f"{name}: finished earlier, skipped")
            skipped.append(name)
            continue
        note(f"{name}: starting")
        t0 = time.perf_counter()
        result = RUNNERS[name](recipe, root, note)
        state["stages"][name] = {"finished": True, "seconds": round(time.perf_counter() - t0, 1), **result}
        write_json_atomic(root / STATE, state)
    return {**state, "skipped": skipped}
