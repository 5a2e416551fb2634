"""Base vs student on IFEval: the same prompts, the same decoding and stop rule, every answer kept and
resumed, the four accuracies per model, and every difference with a paired bootstrap interval.

An item where either model failed (the backend refused the prompt, ...) is left out for both and counted:
the two models are always compared on one set of items. Scoring is `selfinstruct.ifeval`'s; this module
only pairs, sums up and resamples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from selfinstruct.errors import SelfInstructError
from selfinstruct.evaluation.answers import Answer, AnswerBook, ModelRef
from selfinstruct.evaluation.items import ifeval_items, load_ifeval
from selfinstruct.evaluation.stats import RESAMPLES, Interval, bootstrap_mean, paired_difference
from selfinstruct.llm.base import Backend, Sampling

if TYPE_CHECKING:
    from selfinstruct.ifeval import IFEvalPrompt

METRICS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")


class ItemScore(BaseModel):
    """One answer's IFEval result: was every instruction followed (prompt level), and how many were."""

    model_config = ConfigDict(extra="forbid")

    prompt_strict: bool
    prompt_loose: bool
    instructions: int
    followed_strict: int
    followed_loose: int


class ModelIFEval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    fingerprint: str
    mode: str = Field(description="How it was prompted: chat template or raw plain template.")
    failed: int = Field(description="Items this model could not answer.")
    mean_tokens: float
    accuracy: dict[str, Interval] = Field(description="The four IFEval accuracies over the compared items.")


class IFEvalReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str
    items: int = Field(description="Prompts asked.")
    compared: int = Field(description="Prompts both models answered (the accuracies' denominator).")
    left_out: int = Field(description="Prompts left out of both because either model failed.")
    max_tokens: int
    answers_path: str
    generated: int = Field(description="Answers generated in this call (0 on a rerun that resumed all).")
    base: ModelIFEval | None
    student: ModelIFEval
    difference: dict[str, Interval] = Field(
        default_factory=dict, description="student - base per accuracy, paired bootstrap 95% interval."
    )


def score_items(prompts: list[IFEvalPrompt], texts: list[str]) -> list[ItemScore]:
    """IFEval's verdict for each (prompt, answer) pair, from `selfinstruct.ifeval`."""
    from selfinstruct.ifeval import score_item

    out = []
    for p, text in zip(prompts, texts, strict=True):
        r = score_item(p, text)
        out.append(
            ItemScore(
                prompt_strict=r.strict,
                prompt_loose=r.loose,
                instructions=len(r.instructions),
                followed_strict=sum(i.strict for i in r.instructions),
                followed_loose=sum(i.loose for i in r.instructions),
            )
        )
    return out


def _columns(scores: list[ItemScore]) -> dict[str, tuple[list[float], list[float] | None]]:
    """Per-item numerator and weights of each accuracy (instruction level weighs items by instruction count)."""
    weights = [float(s.instructions) for s in scores]
    return {
        "prompt_strict": ([float(s.prompt_strict) for s in scores], None),
        "prompt_loose": ([float(s.prompt_loose) for s in scores], None),
        "instruction_strict": ([float(s.followed_strict) for s in scores], weights),
        "instruction_loose": ([float(s.followed_loose) for s in scores], weights),
    }


def evaluate_ifeval(
    student: ModelRef,
    base: ModelRef | None,
    *,
    start: Callable[[str], Backend],
    out_dir: str | Path,
    data: str | Path | None = None,
    limit: int | None = None,
    max_tokens: int = 512,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> IFEvalReport:
    """Answer IFEval's prompts with `base` then `student` (one engine at a time, answers on disk reused),
    score both on the prompts both answered, and pair the differences."""
    rows = load_ifeval(data, limit)
    items = ifeval_items(rows)
    book = AnswerBook(Path(out_dir) / "answers.jsonl")
    # Greedy: the comparison should not hinge on one sampling draw. The same settings for both models.
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens, seed=seed)
    refs = [r for r in (base, student) if r is not None]
    answers = {r.fingerprint + r.path: book.answer(r, items, sampling, start) for r in refs}
    got = [answers[r.fingerprint + r.path] for r in refs]
    ok = [i for i, it in enumerate(items) if all(isinstance(g[it.id], Answer) for g in got)]
    if not ok:
        first = next(g[it.id] for g in got for it in items if not isinstance(g[it.id], Answer))
        raise SelfInstructError(f"no IFEval prompt was answered by every model (first error: {first})")
    kept_rows = [rows[i] for i in ok]

    per_model: list[tuple[ModelRef, list[ItemScore], list[Answer]]] = []
    for r, g in zip(refs, got, strict=True):
        ans = [g[items[i].id] for i in ok]
        per_model.append((r, score_items(kept_rows, [a.text for a in ans]), ans))

    def summary(r: ModelRef, scores: list[ItemScore], ans: list[Answer], g: dict) -> ModelIFEval:
        cols = _columns(scores)
        return ModelIFEval(
            model=r.path,
            fingerprint=r.fingerprint,
            mode=r.mode,
            failed=sum(not isinstance(v, Answer) for v in g.values()),
            mean_tokens=sum(a.tokens for a in ans) / len(ans),
            accuracy={m: bootstrap_mean(v, w, resamples=resamples, seed=seed) for m, (v, w) in cols.items()},
        )

    reports = [summary(r, s, a, g) for (r, s, a), g in zip(per_model, got, strict=True)]
    diff: dict[str, Interval] = {}
    if base is not None:
        b_cols, s_cols = _columns(per_model[0][1]), _columns(per_model[1][1])
        for m in METRICS:
            diff[m] = paired_difference(
                b_cols[m][0], s_cols[m][0], b_cols[m][1], resamples=resamples, seed=seed
            )
    return IFEvalReport(
        data=str(data) if data is not None else "ifeval_input_data.jsonl",
        items=len(items),
        compared=len(ok),
        left_out=len(items) - len(ok),
        max_tokens=max_tokens,
        answers_path=str(book.path),
        generated=book.generated,
        base=reports[0] if base is not None else None,
        student=reports[-1],
        difference=diff,
    )
