"""metrics.jsonl: every Trainer log as one JSON line, written by the main process as it happens, so the loss
curve survives a crash; on resume, rows after the checkpoint are cut (those steps are trained again)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfinstruct import signals
from selfinstruct.errors import naming
from selfinstruct.store import atomic_file, repair_torn_tail


def callbacks(metrics_path: Path, progress: Callable[[int, int, dict], None] | None) -> list[Any]:
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Appends every log (loss, grad norm, lr) as one JSON line: the loss curve survives a crash."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row = {"step": state.global_step, "epoch": state.epoch, **logs, "time": round(time.time(), 3)}
            with signals.critical(), naming(metrics_path), open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            if progress is not None:
                progress(state.global_step, state.max_steps, logs)

        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None and state.is_world_process_zero:
                progress(state.global_step, state.max_steps, {})

    return [MetricsCallback()]


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint: those steps are trained again."""
    if not path.is_file():
        return
    repair_torn_tail(path)  # a kill mid-append leaves a half row
    keep = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln).get("step", 0) <= step
    ]
    with atomic_file(path) as f:
        f.writelines(ln + "\n" for ln in keep)
