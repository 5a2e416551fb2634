"""One comparison as a recipe's `eval:` section describes it (IFEval, and a judge when asked), used by
`selfinstruct run`'s eval stage and bench/paper.py. Answers already on disk are reused, so an interrupted
comparison resumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from selfinstruct.config import EvalConfig, Recipe
from selfinstruct.evaluation.answers import ModelRef, model_ref
from selfinstruct.evaluation.backends import EngineSlot
from selfinstruct.llm.config import VLLMConfig
from selfinstruct.store import write_json_atomic


def compare(
    student: ModelRef,
    base: ModelRef,
    cfg: EvalConfig,
    *,
    slot: EngineSlot,
    out: Path,
    note: Callable[[str], None] = lambda msg: None,
) -> dict:
    """IFEval (OUT/ifeval/, report OUT/report.json) and, with `cfg.judge`, the judge (OUT/judge/, OUT/judge.json).
    Returns the reports as JSON-ready dicts under "ifeval" and "judge"."""
    from selfinstruct.evaluation.ifeval_paired import evaluate_ifeval
    from selfinstruct.models import default_model_dir

    ifeval = evaluate_ifeval(
        student,
        base,
        start=slot,
        out_dir=out / "ifeval",
        data=cfg.ifeval_data,
        limit=cfg.ifeval_limit,
        max_tokens=cfg.max_tokens,
        resamples=cfg.resamples,
        seed=cfg.seed,
    )
    write_json_atomic(out / "report.json", ifeval)
    result = {"ifeval": ifeval.model_dump(mode="json")}
    if cfg.judge:
        from selfinstruct.evaluation.judge import WEAK_JUDGE, evaluate_judge

        judge_cfg = cfg.judge_backend
        if judge_cfg is None or (isinstance(judge_cfg, VLLMConfig) and judge_cfg.model is None):
            note(f"warning: {WEAK_JUDGE}")
        # An in-process judge shares the slot: one engine in memory at a time.
        in_process = judge_cfg is None or isinstance(judge_cfg, VLLMConfig)
        judge_start = slot if in_process else EngineSlot(judge_cfg)
        judge = model_ref((judge_cfg.model if judge_cfg else None) or str(default_model_dir()))
        verdicts = evaluate_judge(
            student,
            base,
            judge,
            start=slot,
            judge_start=judge_start,
            out_dir=out / "judge",
            data=cfg.data,
            limit=cfg.limit,
            max_tokens=cfg.max_tokens,
            resamples=cfg.resamples,
            seed=cfg.seed,
            constrained=in_process,
        )
        write_json_atomic(out / "judge.json", verdicts)
        result["judge"] = verdicts.model_dump(mode="json", exclude={"verdicts"})
    return result


def evaluate_run(recipe: Recipe, root: Path, note: Callable[[str], None]) -> dict:
    """Evaluate RUN/student against the model it was trained from; returns the figures pipeline.json keeps."""
    from selfinstruct.models import default_model_dir
    from selfinstruct.sft.train import read_summary

    student = root / "student"
    summary = read_summary(student)
    base = summary["result"]["base_model"] if summary else (recipe.sft.model or str(default_model_dir()))
    # The student exists only here, so it runs in process; a recipe that generated on servers evaluates on the
    # in-process engine with default settings.
    engine = recipe.backend if isinstance(recipe.backend, VLLMConfig) else VLLMConfig(enforce_eager=True)
    with EngineSlot(engine, on_start=lambda path: note(f"eval: starting vLLM on {path}")) as slot:
        res = compare(
            model_ref(student), model_ref(base), recipe.eval, slot=slot, out=root / "eval", note=note
        )
    ife = res["ifeval"]
    out = {
        "ifeval_compared": ife["compared"],
        "ifeval_left_out": ife["left_out"],
    }
    for m in ("prompt_strict", "instruction_loose"):
        out[f"base_{m}"] = round(ife["base"]["accuracy"][m]["estimate"], 4)
        out[f"student_{m}"] = round(ife["student"]["accuracy"][m]["estimate"], 4)
        d = ife["difference"][m]
        out[f"diff_{m}"] = f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
    if "judge" in res and res["judge"]["win_rate"]:
        w = res["judge"]["win_rate"]
        out["judge_win_rate"] = f"{w['estimate']:.3f} [{w['low']:.3f}, {w['high']:.3f}]"
    return {**out, "out": str(root / "eval")}
