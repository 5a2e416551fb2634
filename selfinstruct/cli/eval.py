"""`selfinstruct eval ...`: base vs student, paired, with intervals (IFEval, a judge) and the older ROUGE-L check."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from selfinstruct.cli.app import app, console, err_console, plain, print_json
from selfinstruct.cli.eval_ifeval import score_ifeval

eval_app = typer.Typer(
    help="Base vs student on the same items: IFEval accuracies and a judge's win rate, with paired intervals."
)
app.add_typer(eval_app, name="eval")
eval_app.command("score-ifeval")(score_ifeval)

_MODEL = typer.Option(
    ..., "--model", "-m", help="The student (a checkpoint dir; a served name with --server)."
)
_BASE = typer.Option(
    None, "--base", help="Base model (default: the one the student was trained from, per its sft.json)."
)
_SERVER = typer.Option(
    None,
    "--server",
    help="OpenAI-compatible server URL(s) serving both models under their names (default: in-process vLLM).",
)
_MAX_LEN = typer.Option(2048, "--max-model-len", min=64, help="vLLM context length (in-process engine).")
_RESAMPLES = typer.Option(10_000, "--resamples", min=100, help="Bootstrap resamples per interval.")
_SEED = typer.Option(0, "--seed", help="Seeds decoding and the bootstrap.")
_JSON = typer.Option(False, "--json", help="Print one JSON object.")


def _starting(path: str) -> None:
    err_console.print(plain(f"starting a backend for {path}", None, "dim"), highlight=False)


def _slot(server: list[str] | None, max_model_len: int):
    """One backend at a time: in-process vLLM (default), or the given OpenAI-compatible servers."""
    from selfinstruct.evaluation.backends import EngineSlot
    from selfinstruct.llm.config import OpenAIConfig, VLLMConfig

    if server:
        return EngineSlot(OpenAIConfig(base_urls=server, model="-"), on_start=_starting)
    return EngineSlot(VLLMConfig(enforce_eager=True, max_model_len=max_model_len), on_start=_starting)


def _refs(model: str, base: str | None, *, need_base: bool):
    """The student's and base's ModelRefs; the base defaults to the student's own, from its sft.json."""
    from selfinstruct.errors import SelfInstructError
    from selfinstruct.evaluation.answers import model_ref
    from selfinstruct.modeldir import refuse_unservable
    from selfinstruct.sft.train import read_summary

    if Path(model).is_dir() and not (Path(model) / "config.json").is_file():
        raise SelfInstructError(f"`--model` {model} is not a Hugging Face checkpoint (no config.json)")
    if Path(model).is_dir():
        refuse_unservable(model)  # before the base's engine runs, not after
    if base is None and Path(model).is_dir():
        summary = read_summary(model)
        base = summary["result"]["base_model"] if summary else None
    if base is None and need_base:
        raise SelfInstructError(f"`--base` is needed: {model} carries no sft.json naming its base model")
    return model_ref(model), (model_ref(base) if base is not None else None)


def _out(out: Path | None, model: str, kind: str) -> Path:
    if out is not None:
        return out
    if Path(model).is_dir():
        return Path(model) / "eval" / kind
    from selfinstruct.errors import SelfInstructError

    raise SelfInstructError(f"`--out` is needed for a served model ({model})")


def _cell(iv) -> str:
    return f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


@eval_app.command("ifeval")
def ifeval(
    model: str = _MODEL,
    base: str | None = _BASE,
    out: Path | None = typer.Option(None, "--out", "-o", help="Eval directory (default MODEL/eval/ifeval)."),
    data: Path | None = typer.Option(None, "--data", help="IFEval input JSONL (default: the 541 prompts)."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="First N prompts (default: all)."),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1, help="Most new tokens per answer."),
    server: list[str] | None = _SERVER,
    max_model_len: int = _MAX_LEN,
    resamples: int = _RESAMPLES,
    seed: int = _SEED,
    as_json: bool = _JSON,
) -> None:
    """IFEval's four accuracies for base and student on the same prompts, and student - base with paired
    bootstrap 95% intervals. Answers are kept in OUT/answers.jsonl; a rerun resumes."""
    from selfinstruct.evaluation.ifeval_paired import METRICS, evaluate_ifeval

    student_ref, base_ref = _refs(model, base, need_base=False)
    with _slot(server, max_model_len) as slot:
        report = evaluate_ifeval(
            student_ref,
            base_ref,
            start=slot,
            out_dir=_out(out, model, "ifeval"),
            data=data,
            limit=limit,
            max_tokens=max_tokens,
            resamples=resamples,
            seed=seed,
        )
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    from rich.table import Table

    table = Table(
        title=f"IFEval: {report.compared} prompts compared ({report.left_out} left out), "
        f"max {report.max_tokens} tokens, 95% intervals"
    )
    table.add_column("accuracy")
    if report.base:
        table.add_column("base")
    table.add_column("student")
    if report.base:
        table.add_column("student - base")
    for m in METRICS:
        row = [m.replace("_", " ")]
        if report.base:
            row.append(_cell(report.base.accuracy[m]))
        row.append(_cell(report.student.accuracy[m]))
        if report.base:
            row.append(str(report.difference[m]))
        table.add_row(*row)
    console.print(table)
    console.print(
        plain(f"answers: {report.answers_path} ({report.generated} generated now)", None), highlight=False
    )


@eval_app.command("judge")
def judge(
    model: str = _MODEL,
    base: str | None = _BASE,
    out: Path | None = typer.Option(None, "--out", "-o", help="Eval directory (default MODEL/eval/judge)."),
    data: Path | None = typer.Option(
        None, "--data", help="Open-ended instructions (default: Self-Instruct's 252 user-oriented ones)."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="First N instructions."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Most new tokens per answer."),
    judge_url: list[str] | None = typer.Option(
        None, "--judge-url", help="OpenAI-compatible server(s) of the judge (default: the embedded model)."
    ),
    judge_model: str | None = typer.Option(
        None, "--judge-model", help="The judge: its served name with --judge-url, else a checkpoint dir."
    ),
    server: list[str] | None = _SERVER,
    max_model_len: int = _MAX_LEN,
    resamples: int = _RESAMPLES,
    seed: int = _SEED,
    as_json: bool = _JSON,
) -> None:
    """A judge compares the student's and the base's answers, in both orders; win rate with its interval."""
    from selfinstruct.errors import SelfInstructError
    from selfinstruct.evaluation.answers import model_ref
    from selfinstruct.evaluation.judge import WEAK_JUDGE, evaluate_judge
    from selfinstruct.models import default_model_dir

    student_ref, base_ref = _refs(model, base, need_base=True)
    if judge_url and not judge_model:
        raise SelfInstructError("`--judge-model` is needed with --judge-url (the judge's served name)")
    if judge_model is None:
        err_console.print(Text("warning: ", style="yellow").append(WEAK_JUDGE), soft_wrap=True)
    judge_ref = model_ref(judge_model or str(default_model_dir()))
    with _slot(server, max_model_len) as slot, _slot(judge_url, max_model_len) as judge_slot:
        report = evaluate_judge(
            student_ref,
            base_ref,
            judge_ref,
            start=slot,
            # An in-process judge shares the models' slot: one engine in memory at a time.
            judge_start=judge_slot if judge_url else slot,
            out_dir=_out(out, model, "judge"),
            data=data,
            limit=limit,
            max_tokens=max_tokens,
            resamples=resamples,
            seed=seed,
            constrained=not judge_url,  # our engine can hold the judge to A, B or tie
        )
    if as_json:
        print_json(report.model_dump(mode="json", exclude={"verdicts"}))
        return
    wr = report.win_rate
    console.print(
        plain(
            f"judge {report.judge}: {report.compared} of {report.items} compared "
            f"(unparseable {report.unparseable}, failed {report.failed}); student wins {report.wins}, "
            f"ties {report.ties}, loses {report.losses}; win rate "
            + (_cell(wr) if wr else "-")
            + f"; position A picked {report.position_a_share:.0%}",
            None,
        ),
        highlight=False,
    )


@eval_app.command("rouge")
def rouge(
    model: Path = typer.Option(
        ..., "--model", "-m", help="The trained student (a `selfinstruct train` --out)."
    ),
    base: str | None = _BASE,
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Held-out instructions with references (default: the user-oriented set)."
    ),
    limit: int | None = typer.Option(50, "--limit", "-n", min=1, help="First N instructions."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Most new tokens per answer."),
    max_model_len: int = _MAX_LEN,
    answers: Path | None = typer.Option(
        None, "--answers", help="Answers JSONL (default MODEL/eval_answers.jsonl)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing --answers file that is not this command's answers."
    ),
    as_json: bool = _JSON,
) -> None:
    """Stop share, answer length and ROUGE-L against references (a smoke check, not evidence: no intervals)."""
    from selfinstruct.sft.eval import evaluate, vllm_factory

    report = evaluate(
        model,
        backend_factory=vllm_factory(max_model_len, on_start=_starting),
        base=base,
        data=data,
        limit=limit,
        max_tokens=max_tokens,
        answers=answers,
        force=force,
    )
    if as_json:
        print_json(report.model_dump())
        return
    from rich.table import Table

    table = Table(title=f"{report.items} instructions from {Path(report.data).name}, max {max_tokens} tokens")
    table.add_column("")
    table.add_column("base")
    table.add_column("student")
    b, s = report.base, report.student
    for label, key, fmt in [
        ("template", "template", "{}"),
        ("answers", "answers", "{}"),
        ("errors", "errors", "{}"),
        ("ended with stop token", "stop_share", "{:.0%}"),
        ("hit max_tokens", "length_share", "{:.0%}"),
        ("mean tokens", "mean_tokens", "{:.1f}"),
        ("mean chars", "mean_chars", "{:.0f}"),
        ("ROUGE-L F", "rouge_l", "{:.3f}"),
    ]:
        table.add_row(label, fmt.format(getattr(b, key)), fmt.format(getattr(s, key)))
    console.print(table)
    console.print(plain(f"answers: {report.answers_path}", None), highlight=False)
