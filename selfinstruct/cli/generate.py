"""`selfinstruct generate`: run or resume the bootstrap loop from a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from selfinstruct.cli.app import app, console, err_console, plain, print_json


def recipe_overrides(
    num_instructions: int | None,
    backend: str | None,
    base_urls: list[str] | None,
    model: str | None,
    max_rounds: int | None,
    round_size: int | None,
) -> dict:
    """Flags -> dotted recipe keys. --base-url implies the openai backend."""
    ov: dict = {}
    if num_instructions is not None:
        ov["loop.target"] = num_instructions
    if max_rounds is not None:
        ov["loop.max_rounds"] = max_rounds
    if round_size is not None:
        ov["loop.round_size"] = round_size
    if base_urls and backend is None:
        backend = "openai"
    if backend is not None:
        ov["backend"] = {"kind": backend}
        if base_urls:
            ov["backend"]["base_urls"] = base_urls
        if model:
            ov["backend"]["model"] = model
    elif model:
        ov["backend.model"] = model
    return ov


def print_settings(recipe, overrides: dict) -> None:
    """Every non-default setting and where it came from (STYLE rule 11)."""
    from selfinstruct.config import changed_settings

    table = Table(
        title=plain(f"recipe {recipe.name}: settings that differ from defaults", None), title_justify="left"
    )
    for col in ("setting", "value", "from"):
        table.add_column(col)
    for key, value, source in changed_settings(recipe, overrides):
        table.add_row(key, plain(json.dumps(value, ensure_ascii=False), None), source)
    err_console.print(table)


def print_summary(manifest, out: Path) -> None:
    c = manifest.counts
    table = Table(title=f"run {manifest.name}: {manifest.stop_reason}", title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    total = c.get("accepted", 0) + c.get("rejected", 0)
    table.add_row("accepted", str(c.get("accepted", 0)), f"{c.get('accepted', 0) / max(total, 1):.1%}")
    for key, n in sorted(((k, v) for k, v in c.items() if k.startswith("rejected_")), key=lambda kv: -kv[1]):
        table.add_row(key.removeprefix("rejected_"), str(n), f"{n / max(total, 1):.1%}")
    console.print(table)
    gen = manifest.timings.get("generate", 0.0)
    toks = manifest.tokens.get("completion_tokens", 0)
    console.print(
        f"{manifest.rounds} rounds, {c.get('requests', 0)} requests, {toks} tokens generated "
        f"({toks / gen if gen else 0:.0f} tok/s while generating); files in {out}"
    )


@app.command()
def generate(
    recipe_path: Path = typer.Argument(
        ..., metavar="RECIPE", help="A recipe YAML, e.g. pipelines/quickstart.yaml."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default: data/runs/<recipe name>)."),
    num_instructions: int = typer.Option(
        None, "--num-instructions", "-n", help="Target number of accepted tasks."
    ),
    backend: str = typer.Option(None, "--backend", help="vllm (in process) or openai (HTTP servers)."),
    base_url: list[str] = typer.Option(
        None, "--base-url", help="OpenAI-compatible base URL; repeat for replicas."
    ),
    model: str = typer.Option(None, "--model", help="Checkpoint (vllm) or served model name (openai)."),
    max_rounds: int = typer.Option(None, "--max-rounds", help="Stop after this many rounds."),
    round_size: int = typer.Option(None, "--round-size", help="Requests per round."),
    force: bool = typer.Option(False, "--force", help="Resume even though data-changing settings differ."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the final manifest's counts as one JSON object."
    ),
) -> None:
    """Grow tasks from the seeds until the target, a budget, or no progress; resumes an existing run."""
    from selfinstruct.config import load_recipe
    from selfinstruct.generate import generate as run_generate

    overrides = recipe_overrides(num_instructions, backend, base_url, model, max_rounds, round_size)
    recipe = load_recipe(recipe_path, overrides)
    out = out or Path("data/runs") / recipe.name
    print_settings(recipe, overrides)
    progress = Progress(
        TextColumn("[bold]accepted"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    bar = progress.add_task("generate", total=recipe.loop.target, info="starting the engine")

    def on_round(r) -> None:
        shares = ", ".join(
            f"{k} {v / max(r.rejected, 1):.0%}"
            for k, v in sorted(r.rejects_by_reason.items(), key=lambda kv: -kv[1])[:3]
        )
        info = f"round {r.round}: +{r.accepted}, {r.completion_tokens / max(r.generate_s, 1e-9):.0f} tok/s, rejects: {shares or '-'}"
        progress.update(bar, completed=min(r.accepted_total, r.target), info=info)

    with progress:
        manifest = run_generate(
            recipe,
            out,
            force=force,
            on_round=on_round,
            on_note=lambda m: err_console.print(plain(m, None, "yellow")),
        )
    if as_json:
        print_json(
            {
                "out": str(out),
                "stop_reason": manifest.stop_reason,
                "rounds": manifest.rounds,
                "counts": manifest.counts,
                "tokens": manifest.tokens,
            }
        )
    else:
        print_summary(manifest, out)
