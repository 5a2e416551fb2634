"""What a training run is, and what it left in its output directory.

A run's fingerprint (the examples' hash, the base model, the resolved settings, the process count and the
library versions) is written into the output directory when it starts. A later `train` into the same directory
resumes only when its fingerprint is the same, because the Trainer would otherwise restore one run's weights and
optimizer onto another's data or base without a word. `clear` (`--fresh`) removes exactly what runs of ours
wrote there: checkpoint-N directories, our own files and the model files our last save listed, never anything else.

No torch or transformers here: the checks run before the heavy libraries load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.schema import Example

FINGERPRINT = "fingerprint.json"  # written when a run starts
SUMMARY = "sft.json"  # written last: its presence marks a finished student
METRICS = "metrics.jsonl"
CARD = "README.md"
CARD_MARK = "<!-- model card written by selfinstruct train -->"
ADAPTER = "adapter"  # LoRA adapters, when they are merged into the saved weights
TRAINER_STATE = "trainer_state.json"  # the Trainer's, in each checkpoint; written last
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # the Trainer's name for its checkpoint directories
# The names a save of ours writes at the top of `out`: transformers' weights (whole or sharded, with their
# index), config, generation config, tokenizer and chat template files, the Trainer's training_args.bin, and
# peft's adapter files. Only such names are listed in sft.json or removed by `clear`: a file that merely
# changed during the save (a log the user redirects into `out`) is not ours, and `--fresh` must keep it.
_SAVED = re.compile(
    r"^(?:config\.json|generation_config\.json|training_args\.bin"
    r"|(?:model|pytorch_model|adapter_model)(?:-\d+-of-\d+)?\.(?:safetensors|bin)"
    r"|(?:model|pytorch_model)\.(?:safetensors|bin)\.index\.json|adapter_config\.json"
    r"|tokenizer(?:_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json"
    r"|chat_template\.(?:jinja|json)|vocab\.(?:json|txt)|merges\.txt|spiece\.model|[\w.-]*\.tiktoken"
    r"|(?:pre)?processor_config\.json)$"
)

# Trainer settings that change how a run is logged, saved or shown, not what it trains: they may differ on
# resume. Everything else in the resolved `trainer:` block is part of the run's identity.
NOT_IDENTITY = {
    "output_dir",
    "logging_steps",
    "logging_strategy",
    "logging_first_step",
    "logging_dir",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "save_only_model",
    "eval_steps",
    "eval_strategy",
    "per_device_eval_batch_size",
    "disable_tqdm",
    "report_to",
    "run_name",
    "dataloader_num_workers",
    "dataloader_pin_memory",
    "include_num_input_tokens_seen",
    "prediction_loss_only",
}
LIBRARIES = ("torch", "transformers", "accelerate", "peft", "selfinstruct")


def examples_hash(examples: Iterable[Example]) -> str:
    """sha256 of the examples' content in order: the same data gives the same hash whatever its file format."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.instruction, ex.input, ex.output], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def base_identity(model_path: str) -> dict[str, Any]:
    """The base checkpoint: its path, its config's hash, and the names and sizes of its weight files (hashing
    the weights themselves would read gigabytes on every start)."""
    root = Path(model_path)
    weights = sorted(
        (p.name, p.stat().st_size) for p in root.iterdir() if p.suffix in (".safetensors", ".bin")
    )
    config = hashlib.sha256((root / "config.json").read_bytes()).hexdigest()
    return {"path": model_path, "config_sha256": config, "weights": [f"{n}:{s}" for n, s in weights]}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """The commit of the checkout this package runs from (with `+dirty` when it has changes), or None."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def world_size() -> int:
    """Processes in this run, as torchrun and accelerate announce them (the global batch depends on it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes of this run on this machine (torchrun's --nproc_per_node)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process. Only it writes our own files and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def fingerprint(
    *, data: str, examples: str, base: dict, settings: dict, trainer: dict, lora: bool
) -> dict[str, Any]:
    libs = versions()
    if not lora:
        libs.pop("peft")
    libs.pop("selfinstruct")  # the code's revision goes into sft.json; a new commit may resume a run
    return {
        "data": {"path": data, "examples_sha256": examples},
        "base_model": base,
        "settings": settings,
        "trainer": {k: v for k, v in sorted(trainer.items()) if k not in NOT_IDENTITY},
        "world_size": world_size(),
        "versions": libs,
    }


def changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (`data.examples_sha256`, `trainer.learning_rate`, ...)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def checkpoints(out: Path) -> list[Path]:
    """checkpoint-N directories, by step."""
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))


def complete(checkpoint: Path) -> bool:
    # The Trainer writes trainer_state.json after the weights, optimizer and RNG states: a checkpoint
    # without it was cut off mid-save (a kill), and resuming from it would fail or load half a state. The
    # Trainer writes that file in place, so a kill during its write leaves it torn: not complete either.
    state = read_json(checkpoint / TRAINER_STATE)
    return isinstance(state, dict) and isinstance(state.get("global_step"), int)


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer steps a complete checkpoint holds."""
    return int(read_json(checkpoint / TRAINER_STATE)["global_step"])


def last_complete_checkpoint(out: Path) -> Path | None:
    done = [c for c in checkpoints(out) if complete(c)]
    return done[-1] if done else None


def check_resume(out: Path, new: dict, *, force: bool, fresh: bool = False) -> None:
    """Refuse to write into a non-empty directory we have no record of (unless `force`): `fresh` would delete
    its files and a save would write over them. Refuse, in one line naming what changed, to continue a different
    run in `out` (unless `force`, or `fresh`, which starts that run over)."""
    if force:
        return
    old = read_fingerprint(out)
    if old is None:
        if out.is_dir() and any(out.iterdir()):
            what = (
                "a model or checkpoints" if (out / "config.json").is_file() or checkpoints(out) else "files"
            )
            raise SelfInstructError(
                f"`--out` {out} holds {what} that selfinstruct did not record (no {FINGERPRINT}); pick "
                f"another --out, or --force to train over them"
            )
        return
    if fresh or not (checkpoints(out) or (out / SUMMARY).is_file()):
        return  # nothing of an earlier run to continue or to overwrite
    diff = [k for k in changes(old, new) if k != "data.path"]  # the same examples may move
    if diff:
        shown = ", ".join(_describe(k, old, new) for k in diff[:6]) + (" ..." if len(diff) > 6 else "")
        raise SelfInstructError(
            f"`--out` {out} holds a different training run ({shown}); use --fresh to start over "
            f"(removes its checkpoints), --force to resume it anyway, or another --out"
        )


def read_fingerprint(out: Path) -> dict | None:
    """`out`'s fingerprint.json, or None when it has none; a damaged one is one line naming it."""
    path = out / FINGERPRINT
    if not path.is_file():
        return None
    fp = read_json(path)
    if not isinstance(fp, dict):
        raise InputError(
            path,
            "not a run fingerprint of selfinstruct (expected a JSON object); pick another --out, or --force "
            "to train over it",
        )
    return fp


def _describe(key: str, old: dict, new: dict) -> str:
    def get(d: dict) -> Any:
        for part in key.split("."):
            d = d.get(part) if isinstance(d, dict) else None
        return d

    a, b = get(old), get(new)
    short = lambda v: (v[:12] + "…") if isinstance(v, str) and len(v) > 40 else v  # noqa: E731
    return f"{key}: {short(a)!r} -> {short(b)!r}"


def clear(out: Path) -> list[str]:
    """`--fresh`: remove what earlier runs of ours wrote in `out` (sft.json first, so the directory stops
    claiming a finished student at once), and return the names removed.

    sft.json's `files` is data in a folder anyone may have edited or copied: a listed name is removed only when
    it is a plain file directly inside `out` (never a link, never a directory); README.md only while it is
    still our card."""
    if not out.is_dir():
        return []
    summary = read_json(out / SUMMARY)
    listed = summary.get("files") if isinstance(summary, dict) else None
    files = [n for n in listed if _plain_child(n) and _saved(n)] if isinstance(listed, list) else []
    card = out / CARD
    ours = [CARD] if card.is_file() and not card.is_symlink() and _is_card(card) else []
    removed = []
    for name in dict.fromkeys([SUMMARY, *files, METRICS, FINGERPRINT, *ours]):  # in order, once each
        path = out / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(name)
    if (out / ADAPTER).is_dir() and not (out / ADAPTER).is_symlink():
        remove(out / ADAPTER)
        removed.append(ADAPTER)
    for ckpt in checkpoints(out):
        remove(ckpt)
        removed.append(ckpt.name)
    return removed


def _plain_child(name: object) -> bool:
    """A name that can only mean a child of the directory: not "", ".", "..", nor a path (`Path(".").name` is
    "", and a name with a separator is not its own last part)."""
    return isinstance(name, str) and name not in ("", "..") and "\0" not in name and Path(name).name == name


def _saved(name: str) -> bool:
    """A name our save writes (never README.md: the card is removed only while it is still ours)."""
    return _SAVED.match(name) is not None


def _is_card(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(CARD_MARK.encode())) == CARD_MARK.encode()


def remove(path: Path) -> None:
    """A directory with what is in it (links inside are removed, never followed), or a file or link."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def snapshot(out: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of each top-level file: compared after a save, it names the files the save wrote."""
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in out.iterdir() if p.is_file()}


def written_since(out: Path, before: dict[str, tuple[int, int]]) -> list[str]:
    """The files of the save: those with a name a save writes that are new or changed since `before`."""
    after = snapshot(out)
    return sorted(n for n, sig in after.items() if before.get(n) != sig and _saved(n))
