"""`selfinstruct export`: a run's accepted tasks in a training format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.text import Text

from selfinstruct.cli.app import app, console, fail, plain, print_json
from selfinstruct.export import FORMATS


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run directory (or a tasks.jsonl)."),
    fmt: str = typer.Option("alpaca", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.json or .jsonl)."),
    force: bool = typer.Option(
        False, "--force", help="Replace OUT if it exists (never the run's own files)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ifd_top_share: float | None = typer.Option(
        None, help="Keep the tasks with the highest IFD, this share (0, 1]; scores tasks not yet scored."
    ),
    ifd_threshold: float | None = typer.Option(None, help="Leave out tasks with IFD below this."),
    ifd_model: Path | None = typer.Option(
        None, help="Causal LM directory for IFD (default: the embedded model)."
    ),
) -> None:
    """Export accepted tasks as alpaca, messages (chat) or self-instruct records."""
    from selfinstruct.export import export as do_export

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    ifd = None
    if ifd_top_share is not None or ifd_threshold is not None or ifd_model is not None:
        from pydantic import ValidationError

        from selfinstruct.filters.config import IFDConfig
        from selfinstruct.jsonl import first_error

        try:
            ifd = IFDConfig(top_share=ifd_top_share, threshold=ifd_threshold,
                            model=None if ifd_model is None else str(ifd_model))  # fmt: skip
        except ValidationError as e:
            fail("ifd: {}: {}".format(*first_error(e)))
    dropped: list = []
    empty: list[str] = []
    n = do_export(run, fmt, out, replace=force, ifd=ifd, dropped=dropped, empty=empty)
    left_out = {"left_out": len(dropped), "reasons": dict(Counter(r.reason for r in dropped))} if ifd else {}
    if empty:
        left_out["without_instances"] = len(empty)
    if as_json:
        print_json({"rows": n, "format": fmt, "out": str(out), **left_out})
    else:
        console.print(Text(f"wrote {n} {fmt} rows to ").append(plain(out, None, "bold")))
        if empty:
            console.print(plain(f"{len(empty)} tasks without instances wrote no rows (e.g. {empty[0]})", 200))
        if ifd is not None:
            cut = next(
                (r.evidence.get("cutoff") for r in dropped if r.reason == "ifd_not_in_top_share"), None
            )
            console.print(plain(f"IFD left out {len(dropped)} tasks {left_out['reasons']}"
                                + (f", top-share cut-off {cut}" if cut is not None else "")))  # fmt: skip
