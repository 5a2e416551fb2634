"""`run`: generate -> filter -> export -> train -> eval, stage by stage, into one run directory.

    RUN/                 the generation run (tasks.jsonl, rejects.jsonl, manifest.json)
    RUN/filter/          a final pass of the whole filter chain over the accepted tasks (kept.jsonl, rejects.jsonl)
    RUN/export/          the training file (messages format)
    RUN/student/         the trained checkpoint (+ metrics.jsonl, checkpoint-N/)
    RUN/eval/            base vs student report and answers
    RUN/pipeline.json    which stages finished, what they produced, how long they took

A stage recorded as finished is skipped on rerun, unless the recipe settings it depends on changed (each
stage records a fingerprint of them; generation's covers the seed files' contents and the prompts too), its
input or output files differ from those it finished with (each stage records their size, mtime_ns and sha256:
a run grown by `generate`, or a stage run on its own, reruns what reads it), or a stage before it ran again;
an interrupted one resumes (generation and training resume natively, the others are cheap and start over into
their own files), unless its settings or inputs changed since it started: then training starts over. A grown
budget (`loop.target`, `max_rounds`, `max_requests`) continues generation; changed data settings need `force`,
as for `generate`. Tasks a person readmitted pass the final filter unchecked.

pipeline.json records each stage as started before it runs and as finished after, replaced atomically each
time, so it never claims a stage that did not finish. A stage replaces only files of its own, from a start it
recorded: in a folder no pipeline wrote, an existing filter or export output is refused, never replaced.
With `train` among the stages, its `sft.trainer` settings are checked before any stage starts.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfinstruct.config import Recipe
from selfinstruct.errors import SelfInstructError
from selfinstruct.schema import sha256, stable_json
from selfinstruct.store import (
    KEPT,
    PIPELINE,
    REJECTS,
    refuse_live_writer,
    refuse_unless_plain,
    write_json_atomic,
)

STAGES = ("generate", "filter", "export", "train", "eval")

# What each stage reads and writes, relative to the run folder; a folder stands for its top-level files.
# Generation's inputs are its settings and seeds (in its fingerprint) and the run itself (its output).
INPUTS = {
    "generate": (),
    "filter": ("tasks.jsonl",),
    "export": ("filter/kept.jsonl",),
    "train": ("export/train.jsonl",),
    "eval": ("student",),
}
OUTPUTS = {
    "generate": ("tasks.jsonl",),
    "filter": ("filter/kept.jsonl", "filter/rejects.jsonl"),
    "export": ("export/train.jsonl",),
    "train": ("student",),
    "eval": ("eval/report.json", "eval/judge.json"),
}


def _files(root: Path, rels: tuple[str, ...]) -> list[str]:
    found = []
    for rel in rels:
        path = root / rel
        if path.is_dir():
            found += sorted(f"{rel}/{p.name}" for p in path.iterdir() if p.is_file())
        elif path.is_file():
            found.append(rel)
    return found


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def files_identity(root: Path, rels: tuple[str, ...]) -> dict[str, list]:
    """{file: [size, mtime_ns, sha256]} for the files at `rels` (missing ones are left out)."""
    out = {}
    for rel in _files(root, rels):
        st = (root / rel).stat()
        out[rel] = [st.st_size, st.st_mtime_ns, _sha256_file(root / rel)]
    return out


def _same_files(root: Path, rels: tuple[str, ...], recorded: Any) -> bool:
    """Whether the files at `rels` are those `recorded` (by files_identity): the same size and mtime_ns, or
    else the same bytes. A record without them (an older pipeline.json) is not trusted."""
    if not rels:
        return True
    if not isinstance(recorded, dict) or sorted(recorded) != _files(root, rels):
        return False
    for rel, was in recorded.items():
        st = (root / rel).stat()
        if not isinstance(was, list) or len(was) != 3 or st.st_size != was[0]:
            return False
        if st.st_mtime_ns != was[1] and _sha256_file(root / rel) != was[2]:
            return False
    return True


def check_train_settings(recipe: Recipe) -> None:
    """Refuse, before any stage runs, what training would refuse only after the stages before it: an unknown
    `sft.trainer` key, or a value TrainingArguments rejects (`lr_scheduler_type: bogus`). Raises a
    TrainerFieldError naming the key: the first whose addition, in the recipe's order, makes them fail."""
    from unittest import mock

    from selfinstruct.sft.config import TrainerFieldError, check_trainer_keys
    from selfinstruct.sft.train import check_transformers

    check_transformers()
    import transformers.training_args as training_args

    check_trainer_keys(recipe.sft)

    def refused(trainer: dict[str, Any]) -> str | None:
        config = recipe.sft.model_copy(update={"trainer": trainer})
        kwargs = config.trainer_kwargs(output_dir="unused", cuda=False, bf16=False)
        # without torch in view, the arguments skip setting up a device: no CUDA context or process-wide
        # accelerate state before generation; device checks stay the train stage's own
        with mock.patch.object(training_args, "is_torch_available", lambda: False):
            try:
                training_args.TrainingArguments(**kwargs)
            except (TypeError, ValueError) as e:
                return str(e).splitlines()[0] if str(e) else type(e).__name__
        return None

    if refused(recipe.sft.trainer) is None:
        return
    keys = list(recipe.sft.trainer)
    for i, key in enumerate(keys):
        if (why := refused({k: recipe.sft.trainer[k] for k in keys[: i + 1]})) is not None:
            raise TrainerFieldError(key, why)
    raise SelfInstructError(f"`sft`: {refused(recipe.sft.trainer)}")


def _why(done: dict, same: bool, same_in: bool, same_out: bool, upstream_ran: bool) -> str | None:
    """Why a stage runs, from its record, whether its settings, input files and output files are those
    recorded, and whether a stage before it ran now; None: it is skipped."""
    if not done:
        return "starting"
    if not done.get("finished"):
        if not same:
            return "settings changed since it started: starting over"
        return "resuming" if same_in else "input changed since it started: starting over"
    if not same:
        return "settings changed"
    if upstream_ran or not same_in:
        return "input changed"
    return None if same_out else "output changed since it finished"


def _load_state(root: Path) -> dict[str, Any]:
    path = root / PIPELINE
    if not path.exists():
        return {"stages": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SelfInstructError(f"{path}: not valid JSON ({e.msg}); delete it to rerun every stage") from None
    stages = state.get("stages") if isinstance(state, dict) else None
    if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
        raise SelfInstructError(
            f"{path}: not a pipeline record (an object whose `stages` maps each stage to an object); "
            "delete it to rerun every stage"
        )
    return state


def _generation_identity(recipe: Recipe) -> dict:
    """What generation checks on resume (settings, seed files, prompts); missing seeds are its own error to
    report, only if it runs."""
    from selfinstruct.generate import data_identity, seed_hashes

    try:
        hashes = seed_hashes(recipe)
    except SelfInstructError:
        hashes = {"missing": str(recipe.seeds)}
    return data_identity(recipe, hashes)


def fingerprints(recipe: Recipe) -> dict[str, str]:
    """Per stage, a hash of the recipe settings it depends on: a changed one makes the stage run again."""
    r = recipe.model_dump(mode="json")
    parts = {
        "generate": {
            **_generation_identity(recipe),
            "budget": {k: r["loop"][k] for k in ("target", "max_rounds", "max_requests")},
        },
        "filter": r["filters"],
        "export": {},
        "train": r["sft"],
        "eval": {"eval": r["eval"], "backend": r["backend"]},
    }
    return {name: sha256(stable_json(part))[:16] for name, part in parts.items()}


def _generate(recipe: Recipe, root: Path, note, force: bool = False) -> dict:
    from selfinstruct.generate import generate

    m = generate(
        recipe,
        root,
        force=force,
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


def _filter(recipe: Recipe, root: Path, note, *, own: bool) -> dict:
    """`own`: this pipeline started the stage before, so the outputs there are its own to replace; otherwise
    filter_file refuses existing ones."""
    from selfinstruct.filters.dataset import filter_file

    out = root / "filter"
    if own:  # our own outputs only; anything else in the folder is left alone
        for name in (KEPT, REJECTS):
            refuse_unless_plain(out / name, "move it away")
            (out / name).unlink(missing_ok=True)
    res = filter_file(
        root / "tasks.jsonl",
        out,
        recipe.filters,
        trusted=lambda record: record.get("provenance") == "readmitted",  # a person's word stands
    )
    return {"kept": res.kept, "rejected": res.rejected, "out": str(out)}


def _export(recipe: Recipe, root: Path, note, *, own: bool) -> dict:
    from selfinstruct.export import export

    out = root / "export" / "train.jsonl"
    if out.exists() and not own:
        raise SelfInstructError(
            f"{out}: exists, and no pipeline wrote it here; move it away or choose another --out"
        )
    rows = export(root / "filter" / "kept.jsonl", "messages", out, replace=own)
    if rows == 0:
        raise SelfInstructError(f"{out}: the export is empty; nothing to train on")
    return {"rows": rows, "out": str(out)}


def _train(recipe: Recipe, root: Path, note, *, fresh: bool = False, force: bool = False) -> dict:
    from selfinstruct.sft.train import train

    def progress(step: int, total: int, logs: dict) -> None:
        if "loss" in logs:
            note(f"train step {step}/{total}: loss {logs['loss']:.4f}")

    # fresh: the stage finished before and runs again (its data or settings changed), so the old student
    # in RUN/student is this pipeline's own output to replace; an interrupted stage resumes instead.
    res = train(
        recipe.sft,
        root / "export" / "train.jsonl",
        root / "student",
        progress=progress,
        fresh=fresh,
        force=force,
    )
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


def run(
    recipe: Recipe,
    root: str | Path,
    *,
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
    note: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run the stages in order, skipping finished ones. Returns pipeline.json's content plus `skipped`."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SelfInstructError(f"`stages` must be a subset of {', '.join(STAGES)}, got {', '.join(unknown)}")
    if not stages:
        raise SelfInstructError(f"`stages` names no stage; choose from {', '.join(STAGES)}")
    root = Path(root)
    if "generate" not in stages and not root.is_dir():
        raise SelfInstructError(
            f"{root}: no such run folder; its stages after generate read what generate wrote"
        )
    if "train" in stages:
        check_train_settings(recipe)
    refuse_live_writer(root)  # generate takes the lock itself; later stages must not read a half-written run
    root.mkdir(parents=True, exist_ok=True)
    state = _load_state(root)
    skipped = []
    prints = fingerprints(recipe)
    upstream_ran = False
    for name in STAGES:
        if name not in stages:
            continue
        done = state["stages"].get(name, {})
        same = done.get("fingerprint") == prints[name]
        same_in = _same_files(root, INPUTS[name], done.get("inputs"))
        same_out = _same_files(root, OUTPUTS[name], done.get("outputs"))
        why = _why(done, same, same_in, same_out, upstream_ran)
        if why is None:
            note(f"{name}: finished earlier, skipped")
            skipped.append(name)
            continue
        same = same and same_in  # an interrupted stage resumes only onto the inputs it started from
        note(f"{name}: {why}")
        t0 = time.perf_counter()
        inputs = files_identity(root, INPUTS[name])
        state["stages"][name] = {"finished": False, "fingerprint": prints[name], "inputs": inputs}
        write_json_atomic(root / PIPELINE, state)
        if name == "generate":
            result = _generate(recipe, root, note, force=force)
        elif name == "train":
            # our own student, finished or not, is replaced when the run is not the same one continued
            again = bool(done) and (bool(done.get("finished")) or not same)
            result = _train(recipe, root, note, fresh=again, force=force)
        elif name in ("filter", "export"):
            result = (_filter if name == "filter" else _export)(recipe, root, note, own=bool(done))
        else:
            result = _eval(recipe, root, note)
        upstream_ran = True
        state["stages"][name] = {
            "finished": True,
            "fingerprint": prints[name],
            "seconds": round(time.perf_counter() - t0, 1),
            **result,
            "inputs": inputs,
            "outputs": files_identity(root, OUTPUTS[name]),
        }
        write_json_atomic(root / PIPELINE, state)
    return {**state, "skipped": skipped}
