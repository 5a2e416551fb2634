"""`selfinstruct run`: the whole pipeline from one recipe."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from selfinstruct.cli.app import app, console, err_console, plain, print_json


@app.command()
def run(
    recipe_path: Path = typer.Argument(
        ..., metavar="RECIPE", help="A recipe YAML, e.g. pipelines/quickstart.yaml."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default: data/runs/<recipe name>)."),
    stages: str = typer.Option(
        ",".join(("generate", "filter", "export", "train", "eval")),
        "--stages",
        help="Comma-separated stages to run, in pipeline order.",
    ),
    num_instructions: int = typer.Option(
        None, "--num-instructions", "-n", help="Target number of accepted tasks."
    ),
    force: bool = typer.Option(
        False, "--force", help="Continue generation even though data-changing settings differ."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print pipeline.json as one JSON object."),
) -> None:
    """Generate, filter, export, train and evaluate; finished stages are skipped on rerun unless their
    settings changed."""
    from selfinstruct.cli.generate import print_settings
    from selfinstruct.config import load_recipe
    from selfinstruct.pipeline import run as run_pipeline
    from selfinstruct.sft.config import TrainerFieldError

    overrides = {"loop.target": num_instructions} if num_instructions is not None else {}
    recipe = load_recipe(recipe_path, overrides)
    out = out or Path("data/runs") / recipe.name
    print_settings(recipe, overrides)
    try:
        state = run_pipeline(
            recipe,
            out,
            stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
            force=force,
            note=lambda m: err_console.print(plain(m, None, "dim")),
        )
    except TrainerFieldError as e:  # a bad `sft.trainer` key, found before any stage ran: its own line
        from selfinstruct.errors import InputError
        from selfinstruct.yamlfile import line_of, read_yaml

        _, lines = read_yaml(recipe_path, "recipe")
        field = f"sft.{e.field}"
        raise InputError(recipe_path, e.detail, line=line_of(lines, field), field=field) from None
    if as_json:
        print_json(state)
        return
    table = Table(title=f"pipeline {recipe.name} in {out}", title_justify="left")
    for col in ("stage", "status", "seconds", "produced", "where"):
        table.add_column(col)
    for name, st in state["stages"].items():
        produced = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in st.items()
            if k not in ("finished", "seconds", "out", "fingerprint") and not isinstance(v, dict)
        )
        status = "skipped (done earlier)" if name in state["skipped"] else "done"
        table.add_row(
            name,
            status if st.get("finished") else "not finished",
            str(st.get("seconds", "")),
            plain(produced, None),
            plain(st.get("out", ""), None),
        )
    console.print(table)
    from selfinstruct.errors import InputError
    from selfinstruct.seeds import iter_tasks
    from selfinstruct.store import TASKS

    try:  # any record shape the filter stage takes; not the whole file for five lines
        sample = [task for _, _, task in islice(iter_tasks(out / TASKS), 5)]
    except InputError:
        sample = []  # a bad line there is the filter stage's to report, not this courtesy's
    if sample:
        console.print("a few accepted tasks:", style="bold")
        for task in sample:
            inst = task.instances[0] if task.instances else None
            console.print(Text("- ").append(plain(task.instruction, None)), highlight=False)
            if inst:
                shown = (inst.input + " -> " if inst.input else "") + inst.output
                console.print(Text("    ").append(plain(shown, 160)), highlight=False)
