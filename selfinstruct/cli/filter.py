"""`selfinstruct filter`: run the filter chain over an existing dataset, writing kept and rejected records."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from selfinstruct.cli.app import app, console, err_console, plain, print_json
from selfinstruct.errors import SelfInstructError

if TYPE_CHECKING:
    from selfinstruct.filters import FilterConfig


@app.command("filter")
def filter_command(
    input: Annotated[
        Path, typer.Argument(help="Alpaca JSON array, JSONL of examples, or Self-Instruct tasks.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for kept.jsonl and rejects.jsonl.")],
    # No default string here: the stage names come from FilterConfig, whose package is too slow to import
    # just to build the help (datasketch alone takes about 0.4 s).
    filters: Annotated[
        str | None, typer.Option(help="Comma-separated stages to run, in chain order; all when omitted.")
    ] = None,
    rouge_threshold: Annotated[
        float | None, typer.Option(help="Reject when ROUGE-L F > this (default: 0.7).")
    ] = None,
    minhash_threshold: Annotated[
        float | None, typer.Option(help="Near-duplicate at estimated Jaccard >= this (default: 0.8).")
    ] = None,
    semantic_threshold: Annotated[
        float | None,
        typer.Option(
            help="Semantic near-duplicate at embedding cosine > this (default: 0.8; stage off unless "
            "named in --filters or given a threshold)."
        ),
    ] = None,
    ifd_top_share: Annotated[
        float | None, typer.Option(help="Score kept records by IFD and keep this top share (0, 1].")
    ] = None,
    ifd_threshold: Annotated[
        float | None, typer.Option(help="Score kept records by IFD and reject those below this.")
    ] = None,
    ifd_model: Annotated[
        Path | None, typer.Option(help="Causal LM directory for IFD (default: the embedded model).")
    ] = None,
    rating_threshold: Annotated[
        float | None,
        typer.Option(help="Rate kept records 0-5 with an LLM judge and reject those below this."),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            help="The judge: a checkpoint directory (in process) or, with --judge-base-url, a served "
            "model name (default: the embedded 135M model, which is weak)."
        ),
    ] = None,
    judge_base_url: Annotated[
        str | None, typer.Option(help="An OpenAI-compatible server for the judge (needs --judge-model).")
    ] = None,
    skip_bad_lines: Annotated[
        bool, typer.Option(help="Record malformed lines as `malformed` rejects instead of stopping.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the counts.")] = False,
) -> None:
    """Filter a dataset in input order: heuristics, MinHash near-duplicates, exact ROUGE-L novelty."""
    from pydantic import ValidationError

    from selfinstruct.filters import FilterConfig
    from selfinstruct.filters.dataset import KEPT, REJECTS, filter_file
    from selfinstruct.jsonl import first_error

    config = _config(filters, rouge_threshold, minhash_threshold, semantic_threshold)
    if ifd_top_share is not None or ifd_threshold is not None or ifd_model is not None:
        config["ifd"] = {
            "top_share": ifd_top_share,
            "threshold": ifd_threshold,
            "model": None if ifd_model is None else str(ifd_model),
        }
    if rating_threshold is not None or judge_model is not None or judge_base_url is not None:
        config["rating"] = {"threshold": rating_threshold, "backend": _judge(judge_model, judge_base_url)}
    try:
        resolved = FilterConfig.model_validate(config)
    except ValidationError as e:
        raise SelfInstructError("filter config: {}: {}".format(*first_error(e))) from None
    if not as_json:
        notes = _notes(resolved, rouge_threshold, minhash_threshold, semantic_threshold)
        console.print(Text("filters", style="bold").append(": " + ", ".join(notes)))
        if resolved.rating is not None:
            from selfinstruct.filters.rating import WEAK_JUDGE_NOTE, weak_judge
            from selfinstruct.models import default_model_dir

            if weak_judge(judge_model or str(default_model_dir())):
                err_console.print(plain(WEAK_JUDGE_NOTE, None, "yellow"))
    bar = progress = None
    if not as_json and err_console.is_terminal:
        from rich.progress import Progress

        bar = Progress(console=err_console, transient=True)
        job = bar.add_task("filtering", total=None)
        bar.start()

        def progress(n: int) -> None:
            bar.update(job, completed=n)

    try:
        summary = filter_file(input, out, resolved, skip_bad_lines=skip_bad_lines, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    if as_json:
        print_json({"input": str(input), "out": str(out), **summary.as_dict(), "config": config})
        return
    title = f"{summary.records} records: {summary.kept} kept, {summary.rejected} rejected"
    table = Table(title=title + (f", {summary.malformed} malformed" if summary.malformed else ""))
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, n in summary.reasons.most_common():
        table.add_row(reason, str(n))
    console.print(table)
    console.print(plain(f"wrote {out / KEPT} and {out / REJECTS}", None))


def _config(filters: str | None, rouge: float | None, minhash: float | None, semantic: float | None) -> dict:
    """The FilterConfig as a dict: the chosen stages, with the thresholds given on the command line."""
    from selfinstruct.filters import FilterConfig

    # ifd and rating score a whole set after the chain and have options of their own.
    stages = tuple(s for s in FilterConfig.model_fields if s not in ("ifd", "rating"))
    # The semantic stage loads an embedding model: it runs when named, or when given a threshold.
    default = [s for s in stages if s != "semantic"] + (["semantic"] if semantic is not None else [])
    names = default if filters is None else [s.strip() for s in filters.split(",") if s.strip()]
    if not names or any(s not in stages for s in names):
        raise SelfInstructError(
            f"`--filters` must be a comma-separated subset of {', '.join(stages)}, got {filters!r}"
        )
    for flag, value, stage in (
        ("--rouge-threshold", rouge, "rouge"),
        ("--minhash-threshold", minhash, "minhash"),
        ("--semantic-threshold", semantic, "semantic"),
    ):
        if value is not None and stage not in names:
            raise SelfInstructError(f"`{flag}` needs the {stage} filter, but --filters is {filters!r}")
    config: dict = dict.fromkeys(stages)
    if "heuristics" in names:
        config["heuristics"] = {}
    if "minhash" in names:
        config["minhash"] = {} if minhash is None else {"threshold": minhash}
    if "rouge" in names:
        # kept.jsonl keeps input records as they are: rouge_max has nowhere to go, so skip its wider search.
        config["rouge"] = {"report_floor": None} | ({} if rouge is None else {"threshold": rouge})
    if "semantic" in names:
        config["semantic"] = {} if semantic is None else {"threshold": semantic}
    return config


def _notes(
    resolved: FilterConfig, rouge: float | None, minhash: float | None, semantic: float | None
) -> list[str]:
    """One note per stage run, saying whether its threshold came from the command line."""
    notes = ["heuristics (defaults)"] if resolved.heuristics is not None else []
    for name, flag in (("minhash", minhash), ("rouge", rouge), ("semantic", semantic)):
        if (section := getattr(resolved, name)) is not None:
            notes.append(f"{name} threshold={section.threshold} ({'default' if flag is None else 'set'})")
    if resolved.ifd is not None:
        i = resolved.ifd
        notes.append(f"ifd top_share={i.top_share} threshold={i.threshold} drop_above_one={i.drop_above_one}")
    if resolved.rating is not None:
        notes.append(f"rating threshold={resolved.rating.threshold}")
    return notes


def _judge(model: str | None, base_url: str | None) -> dict:
    """The judge's backend section from the flags."""
    if base_url is None:
        return {"kind": "vllm", "model": model}
    if model is None:
        raise SelfInstructError(
            "`--judge-base-url` needs `--judge-model`, the name the server knows the model by"
        )
    return {"kind": "openai", "base_urls": [base_url], "model": model}
