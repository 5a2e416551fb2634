"""`selfinstruct eval score-ifeval RESPONSES`: IFEval's four accuracies for a file of answers.

A plain function, registered by the `eval` command group (`eval_app.command("score-ifeval")(score_ifeval)`);
importing this module registers nothing and loads nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selfinstruct.cli.app import console, print_json
from selfinstruct.ifeval.data import INPUTS_ENV


def score_ifeval(
    responses: Annotated[
        Path,
        typer.Argument(
            help='Answers, one {"prompt", "response"} object per line (IFEval\'s response format).'
        ),
    ],
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            envvar=INPUTS_ENV,
            help="IFEval's input_data.jsonl (default: $SELFINSTRUCT_IFEVAL_INPUTS, else data/ifeval/input_data.jsonl).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: the four accuracies as fractions, plus per_type.",
        ),
    ] = False,
) -> None:
    """Score every answer with IFEval's 25 instruction checks: prompt- and instruction-level, strict and loose."""
    from selfinstruct.ifeval import read_answers, read_inputs, resolve_inputs, score_responses

    prompts = read_inputs(resolve_inputs(inputs))
    scores = score_responses(prompts, read_answers(responses, prompts))
    if as_json:
        per_type = {k: v.model_dump() for k, v in scores.per_type.items()}
        print_json({**scores.accuracies(), "prompts": scores.prompts, "per_type": per_type})
        return
    from rich.table import Table

    console.print(f"IFEval: {scores.prompts} prompts, {scores.instructions} instructions", highlight=False)
    table = Table()
    table.add_column("level")
    table.add_column("strict", justify="right")
    table.add_column("loose", justify="right")
    table.add_row("prompt", f"{scores.prompt_strict:.2%}", f"{scores.prompt_loose:.2%}")
    table.add_row("instruction", f"{scores.instruction_strict:.2%}", f"{scores.instruction_loose:.2%}")
    console.print(table)
