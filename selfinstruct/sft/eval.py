"""Student vs base on held-out instructions: does the student stop, how long are its answers, how close are
they to the references (ROUGE-L)?

The models run through the project's LLM layer, one engine at a time (a `backend_factory(model_path)` makes
each, so tests and other backends plug in). This module knows nothing of training beyond reading sft.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.jsonl import dumps, iter_json_objects
from selfinstruct.llm.base import Backend, Request, Sampling
from selfinstruct.modeldir import refuse_unservable
from selfinstruct.models import default_model_dir
from selfinstruct.sft.render import inference_prompt, load_tokenizer
from selfinstruct.sft.train import read_summary
from selfinstruct.store import atomic_file, check_output

# Evaluation only: never train on it (see shared/data/external/PROVENANCE.md).
DEFAULT_DATA = Path("../shared/data/external/self_instruct_user_oriented_instructions.jsonl")


class EvalItem(BaseModel):
    id: str
    instruction: str
    input: str = ""
    reference: str


class ModelScore(BaseModel):
    """Figures for one model over the same items."""

    role: Literal["base", "student"]
    model: str
    template: str
    answers: int
    errors: int = Field(description="Requests the backend could not serve (prompt too long, ...).")
    stop_share: float = Field(description="Share of answers that ended with the stop token.")
    length_share: float = Field(description="Share of answers cut off at max_tokens.")
    mean_tokens: float
    mean_chars: float
    rouge_l: float = Field(description="Mean ROUGE-L F-measure against the reference outputs.")


class EvalReport(BaseModel):
    data: str
    items: int
    max_tokens: int
    answers_path: str
    base: ModelScore
    student: ModelScore


def default_data() -> Path:
    """The held-out file beside the checkout: from the working directory, else from the package's checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / DEFAULT_DATA).is_file():
            return (root / DEFAULT_DATA).resolve()
    raise SelfInstructError(
        f"no evaluation data at {DEFAULT_DATA} (relative to the repository); pass `--data`"
    )


def load_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Self-instruct records ({instruction, instances: [{input, output}]}, first instance) or alpaca records
    ({instruction, input, output}). Other keys are ignored: evaluation files come from elsewhere."""
    items: list[EvalItem] = []
    for line, obj in iter_json_objects(path):
        instruction = obj.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(path, "must be a non-empty string", line=line, field="instruction")
        if "instances" in obj:
            inst = obj["instances"]
            if not isinstance(inst, list) or not inst or not isinstance(inst[0], dict):
                raise InputError(
                    path, "must be a non-empty list of {input, output}", line=line, field="instances"
                )
            inp, ref, where = inst[0].get("input", ""), inst[0].get("output"), "instances.0"
        else:
            inp, ref, where = obj.get("input", ""), obj.get("output"), ""
        if not isinstance(ref, str) or not isinstance(inp, str):
            raise InputError(path, "input and output must be strings", line=line, field=where or "output")
        items.append(
            EvalItem(id=str(obj.get("id", f"line{line}")), instruction=instruction, input=inp, reference=ref)
        )
        if limit is not None and len(items) >= limit:
            break
    return items


def prompt_mode(model_dir: str | Path, summary: dict | None) -> str:
    """How a model wants prompts: the template it was trained with (`summary`, its sft.json), else chat if
    it has a chat template."""
    if summary is not None:
        return summary["result"]["template"]
    return "chat" if getattr(load_tokenizer(str(model_dir)), "chat_template", None) else "plain"


def evaluate(
    student: str | Path,
    *,
    backend_factory: Callable[[str], Backend],
    base: str | Path | None = None,
    data: str | Path | None = None,
    limit: int | None = None,
    max_tokens: int = 256,
    answers: str | Path | None = None,
    force: bool = False,
) -> EvalReport:
    """Generate greedy answers with the base model, then the student (never both engines alive at once),
    write every answer to `answers` (JSONL; default STUDENT/eval_answers.jsonl) and score both. `answers` is
    checked before any engine starts (`answers_path`); `force` lets it replace a file that holds other lines."""
    from selfinstruct.filters.rouge import rouge_l

    student = Path(student)
    summary = read_summary(student)
    if base is None:
        base = summary["result"]["base_model"] if summary else default_model_dir()
    answers = answers_path(answers, (student, Path(base)), data, force=force)
    if not (student / "config.json").is_file():
        raise SelfInstructError(f"`--model` {student} is not a Hugging Face checkpoint (no config.json)")
    refuse_unservable(str(student))  # before the base's engine runs, not after
    data = Path(data) if data is not None else default_data()
    items = load_items(data, limit)
    if not items:
        raise InputError(data, "no evaluation items")
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens, seed=0)

    scores, rows = {}, []
    for role, path, trained in (("base", str(base), read_summary(base)), ("student", str(student), summary)):
        mode = prompt_mode(path, trained)
        requests = [
            Request(id=it.id, sampling=sampling, **inference_prompt(mode, it.instruction, it.input))
            for it in items
        ]
        backend = backend_factory(path)
        try:
            completions = backend.generate(requests)
        finally:
            backend.close()  # the next engine needs the memory
        served = [(it, c) for it, c in zip(items, completions, strict=True) if c.ok]
        rouge = [rouge_l(it.reference, c.text) for it, c in served]
        for (it, c), r in zip(served, rouge, strict=True):
            rows.append(
                {
                    "id": it.id,
                    "role": role,
                    "model": path,
                    "instruction": it.instruction,
                    "input": it.input,
                    "reference": it.reference,
                    "answer": c.text,
                    "finish_reason": c.finish_reason,
                    "tokens": c.completion_tokens,
                    "rouge_l": round(r, 4),
                }
            )
        n = len(served) or 1
        scores[role] = ModelScore(
            role=role,
            model=path,
            template=mode,
            answers=len(served),
            errors=len(items) - len(served),
            stop_share=sum(c.finish_reason == "stop" for _, c in served) / n,
            length_share=sum(c.finish_reason == "length" for _, c in served) / n,
            mean_tokens=sum(c.completion_tokens for _, c in served) / n,
            mean_chars=sum(len(c.text) for _, c in served) / n,
            rouge_l=sum(rouge) / n,
        )

    answers.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(answers) as f:
        f.writelines(dumps(r) + "\n" for r in rows)
    return EvalReport(
        data=str(data),
        items=len(items),
        max_tokens=max_tokens,
        answers_path=str(answers),
        base=scores["base"],
        student=scores["student"],
    )


# The fields of every line `evaluate` writes: how a file is told to be its answers.
_ROW = {"id", "role", "model", "instruction", "input", "reference", "answer", "finish_reason", "tokens"}


def answers_path(
    answers: str | Path | None, models: tuple[Path, Path], data: str | Path | None, *, force: bool
) -> Path:
    """Where `evaluate` may write its answers (default STUDENT/eval_answers.jsonl; `models` is the student and
    its base), checked before any engine starts: the file is replaced whole, so never an input (the data, a
    model's files), a link or a device, and an existing file only when it holds earlier answers of `evaluate`
    (a rerun) or with `force`."""
    out = Path(answers) if answers is not None else models[0] / "eval_answers.jsonl"
    inputs: list[Path] = []
    if data is not None:
        inputs.append(Path(data))
    else:
        try:
            inputs.append(default_data())
        except SelfInstructError:
            pass  # evaluate says so, after it has checked the model
    for d in models:
        if d.is_dir():
            inputs += [f for f in d.iterdir() if f.is_file()]
    ours = out.is_file() and not out.is_symlink() and _answers_file(out)
    return check_output(out, inputs=inputs, replace=force or ours)


def _answers_file(path: Path) -> bool:
    """Whether `path` holds what `evaluate` wrote: nothing (no item was answered), or lines of its rows."""
    if path.stat().st_size == 0:
        return True
    try:
        _, first = next(iter_json_objects(path))
    except (InputError, StopIteration):
        return False
    return _ROW <= first.keys()


def vllm_factory(
    max_model_len: int | None, *, enforce_eager: bool = True, on_start: Callable[[str], None] | None = None
) -> Callable[[str], Backend]:
    """Backend factory for `evaluate`: an in-process vLLM engine per model, its context clamped to the model's."""

    def start(path: str) -> Backend:
        from selfinstruct.evaluation.backends import fit_context
        from selfinstruct.llm.vllm_engine import VLLMBackend

        if on_start:
            on_start(path)
        return VLLMBackend(
            path, enforce_eager=enforce_eager, max_model_len=fit_context(path, max_model_len), seed=0
        )

    return start
