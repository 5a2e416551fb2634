"""`selfinstruct eval`: base vs student on held-out instructions, through vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from selfinstruct.cli.app import app, console, err_console, plain


@app.command("eval")
def eval_(
    model: Path = typer.Option(
        ..., "--model", "-m", help="The trained student (a `selfinstruct train` --out)."
    ),
    base: str | None = typer.Option(
        None, "--base", help="Base model (default: the one the student came from)."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        "-d",
        help="Held-out instructions (default: Self-Instruct's user-oriented set in ../shared/data/external).",
    ),
    limit: int | None = typer.Option(50, "--limit", "-n", min=1, help="First N instructions."),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="Most new tokens per answer."),
    max_model_len: int = typer.Option(2048, "--max-model-len", min=64, help="vLLM context length."),
    answers: Path | None = typer.Option(
        None, "--answers", help="Answers JSONL (default MODEL/eval_answers.jsonl)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Generate answers with the base model and the student (one engine at a time) and compare them."""
    from selfinstruct.sft.eval import evaluate, vllm_factory

    def starting(path: str) -> None:
        err_console.print(plain(f"starting vLLM on {path}", None, "dim"), highlight=False)

    report = evaluate(
        model,
        backend_factory=vllm_factory(max_model_len, on_start=starting),
        base=base,
        data=data,
        limit=limit,
        max_tokens=max_tokens,
        answers=answers,
    )
    if as_json:
        print(json.dumps(report.model_dump()))
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
