"""`selfinstruct train`: masked SFT of a student on a run directory or an alpaca/messages file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from selfinstruct.cli.app import app, console, err_console, plain, print_json


def _load_config(path: Path | None) -> tuple[dict, dict[str, int]]:
    """The SFT fields in a YAML file (a whole recipe or just its sft section), and each field's line."""
    if path is None:
        return {}, {}
    from selfinstruct.errors import InputError
    from selfinstruct.yamlfile import read_yaml

    data, lines = read_yaml(path, "SFT config")
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of SFT config fields", line=1)
    if "sft" not in data:
        return data, lines
    if not isinstance(data["sft"], dict):
        raise InputError(path, "must be a mapping of SFT config fields", line=lines.get("sft"), field="sft")
    return data["sft"], {k.removeprefix("sft."): v for k, v in lines.items() if k.startswith("sft.")}


@app.command()
def train(
    data: Path = typer.Option(
        ..., "--data", "-d", help="Run directory, or a JSON/JSONL file (alpaca or messages)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output directory: checkpoint, metrics.jsonl, sft.json."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Student checkpoint (default: the embedded model)."
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop after this many optimizer steps."
    ),
    epochs: float | None = typer.Option(None, "--epochs", help="Epochs, above 0 (default 3)."),
    lora: bool = typer.Option(
        False, "--lora", help="Train LoRA adapters (merged on save) instead of all weights."
    ),
    max_length: int | None = typer.Option(
        None, "--max-length", min=8, help="Most tokens per example (1024)."
    ),
    template: str | None = typer.Option(None, "--template", help="auto | chat | plain."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML of SFT config fields (or a recipe)."
    ),
    fresh: bool = typer.Option(
        False,
        "--fresh",
        help="Start over: remove the checkpoints and files earlier runs wrote in --out (nothing else).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Resume or overwrite a run in --out even if its data or settings differ."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fine-tune a student with the loss on response tokens only; resumes the same run from a checkpoint in
    --out. On several GPUs: torchrun --nproc_per_node N -m selfinstruct train ..."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from selfinstruct.errors import SelfInstructError
    from selfinstruct.jsonl import first_error
    from selfinstruct.sft.config import LoraSettings, SFTConfig, TrainerFieldError
    from selfinstruct.sft.identity import is_main_process
    from selfinstruct.sft.train import train as run_train

    fields, lines = _load_config(config)
    flags = {"model": model, "max_length": max_length, "template": template}
    flags_set = {k for k, v in flags.items() if v is not None} | ({"lora"} if lora else set())
    fields.update({k: v for k, v in flags.items() if v is not None})
    if lora and fields.get("lora") is None:
        fields["lora"] = flags["lora"] = LoraSettings().model_dump()
    try:
        cfg = SFTConfig.model_validate(fields)
    except ValidationError as e:
        where, msg = first_error(e)
        if isinstance(bad := e.errors()[0].get("ctx", {}).get("error"), TrainerFieldError):
            where, msg = bad.field, bad.detail  # the key's own line, not the `trainer:` block's
        if config is not None and where.split(".")[0] in fields and where.split(".")[0] not in flags_set:
            raise _at(config, lines, where, msg) from None
        raise SelfInstructError(f"sft config: {where}: {msg}") from None

    main = is_main_process()  # under torchrun, one process speaks for all
    if not as_json and main:
        _print_config(cfg, config, flags)
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=as_json,
    )
    task = progress.add_task("train", total=None, loss="-")

    def on_step(step: int, total: int, logs: dict) -> None:
        if not main:
            return
        if not progress.live.is_started:  # drawn once training runs, not while data and model load
            progress.start()
        fields = {"loss": f"{logs['loss']:.4f}"} if "loss" in logs else {}
        progress.update(task, completed=step, total=total or None, **fields)

    try:
        result = run_train(
            cfg,
            data,
            out,
            max_steps=max_steps,
            epochs=epochs,
            fresh=fresh,
            force=force,
            progress=on_step,
            show=None if as_json else _show,
        )
    except TrainerFieldError as e:  # an unknown key, found once transformers has loaded
        if config is None or "trainer" not in fields:
            raise
        raise _at(config, lines, e.field, e.detail) from None
    finally:
        progress.stop()
    if not main:
        return
    if as_json:
        print_json(result.model_dump())
        return
    loss = "n/a" if result.final_loss is None else round(result.final_loss, 4)
    skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result.skipped.items()) or "none"
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    console.print(
        Text("trained ", style="bold green").append(
            plain(
                f"{result.out}: {result.used}/{result.examples} examples used (skipped: {skipped}), "
                f"{result.tokens_trained:,} tokens trained ({result.response_tokens:,} supervised per epoch), "
                f"{result.steps} steps, final loss {loss}{resumed}",
                None,
            )
        ),
        soft_wrap=True,
    )


def _at(config: Path, lines: dict[str, int], field: str, msg: str) -> Exception:
    """A config field's error as one line naming the file and the field's line."""
    from selfinstruct.errors import InputError
    from selfinstruct.yamlfile import line_of

    return InputError(config, msg, line=line_of(lines, field), field=field)


def _show(text) -> None:
    err_console.print(Text.assemble(("first example", "dim"), " (", ("green", "green"), " = supervised):"))
    err_console.print(text)


def _print_config(cfg, config_path: Path | None, flags: dict) -> None:
    """Every value that differs from the default, and where it came from (STYLE rule 11)."""
    from selfinstruct.sft.config import SFTConfig

    default = SFTConfig().model_dump()
    for key, value in cfg.model_dump().items():
        if value != default[key]:
            source = "flag" if flags.get(key) is not None else (str(config_path) if config_path else "flag")
            err_console.print(plain(f"sft.{key} = {value!r}  ({source})", None, "dim"), soft_wrap=True)
