"""`selfinstruct run`'s eval stage: the run's student against its base on IFEval (and by a judge when the
recipe asks), written to RUN/eval/. Answers already there are reused, so an interrupted stage resumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from selfinstruct.config import Recipe
from selfinstruct.evaluation.answers import model_ref
from selfinstruct.evaluation.backends import backend_factory
from selfinstruct.llm.config import VLLMConfig
from selfinstruct.store import write_json_atomic


def evaluate_run(recipe: Recipe, root: Path, note: Callable[[str], None]) -> dict:
    """Evaluate RUN/student against the model it was trained from; returns the figures pipeline.json keeps."""
    from selfinstruct.evaluation.ifeval_paired import evaluate_ifeval
    from selfinstruct.models import default_model_dir
    from selfinstruct.sft.train import read_summary

    cfg = recipe.eval
    student = root / "student"
    summary = read_summary(student)
    base = summary["result"]["base_model"] if summary else (recipe.sft.model or str(default_model_dir()))
    # The student exists only here, so it runs in process; a recipe that generated on servers evaluates on the
    # in-process engine with default settings.
    engine = recipe.backend if isinstance(recipe.backend, VLLMConfig) else VLLMConfig(enforce_eager=True)
    start = backend_factory(engine, on_start=lambda path: note(f"eval: starting vLLM on {path}"))
    out = root / "eval"
    student_ref, base_ref = model_ref(student), model_ref(base)
    report = evaluate_ifeval(
        student_ref,
        base_ref,
        start=start,
        out_dir=out / "ifeval",
        data=cfg.ifeval_data,
        limit=cfg.ifeval_limit,
        max_tokens=cfg.max_tokens,
        resamples=cfg.resamples,
        seed=cfg.seed,
    )
    write_json_atomic(out / "report.json", report)
    result = {
        "ifeval_compared": report.compared,
        "ifeval_left_out": report.left_out,
        "base_prompt_strict": round(report.base.accuracy["prompt_strict"].estimate, 4),
        "student_prompt_strict": round(report.student.accuracy["prompt_strict"].estimate, 4),
        "diff_prompt_strict": str(report.difference["prompt_strict"]),
        "base_instruction_loose": round(report.base.accuracy["instruction_loose"].estimate, 4),
        "student_instruction_loose": round(report.student.accuracy["instruction_loose"].estimate, 4),
        "diff_instruction_loose": str(report.difference["instruction_loose"]),
    }
    if cfg.judge:
        from selfinstruct.evaluation.judge import WEAK_JUDGE, evaluate_judge

        if cfg.judge_backend is None:
            note(f"warning: {WEAK_JUDGE}")
            judge_ref, judge_start = model_ref(default_model_dir()), start
        else:
            judge_ref = model_ref(cfg.judge_backend.model or str(default_model_dir()))
            judge_start = backend_factory(cfg.judge_backend)
        verdicts = evaluate_judge(
            student_ref,
            base_ref,
            judge_ref,
            start=start,
            judge_start=judge_start,
            out_dir=out / "judge",
            data=cfg.data,
            limit=cfg.limit,
            max_tokens=cfg.max_tokens,
            resamples=cfg.resamples,
            seed=cfg.seed,
        )
        write_json_atomic(out / "judge.json", verdicts)
        result["judge_win_rate"] = str(verdicts.win_rate) if verdicts.win_rate else None
    return {**result, "out": str(out)}
