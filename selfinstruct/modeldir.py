"""What a model directory must hold for vLLM to start on it. vLLM's workers fail on a bad one with pages of
tracebacks from several processes; these checks run first and say in one line what to do instead."""

from __future__ import annotations

import json
from pathlib import Path

from selfinstruct.errors import SelfInstructError


def require_dir(path: str | Path) -> None:
    """A model directory that is not there, with how to get the embedded one (the default path is relative)."""
    if not Path(path).expanduser().is_dir():
        raise SelfInstructError(
            f"model directory {path} does not exist (run `selfinstruct model prepare` for the embedded one; "
            "a relative path is read from the current directory)"
        )


def refuse_unservable(path: str) -> None:
    """Models vLLM's workers would fail on with pages of tracebacks, refused with one line that says what to do
    instead: a LoRA student saved unmerged (an adapter, not a model), and weights cut short (a full disk or a
    kill during a save; a safetensors header says how long its file must be)."""
    d = Path(path)
    if (d / "adapter_config.json").is_file() and not (d / "config.json").is_file():
        raise SelfInstructError(
            f"{d}: holds a LoRA adapter without merged weights (sft `lora.merge: false`); "
            "train with `lora.merge: true` to evaluate or serve it"
        )
    for f in sorted(d.glob("*.safetensors")):
        want, have = _safetensors_size(f), f.stat().st_size
        if want is None or have < want:
            size = f"{have:,} bytes" if want is None else f"{have:,} of {want:,} bytes"
            raise SelfInstructError(
                f"{f}: cut short ({size}): the save that wrote it did not finish; rerun it "
                "(`selfinstruct train` resumes from its last checkpoint)"
            )


def _safetensors_size(path: Path) -> int | None:
    """The size a safetensors file must have per its header (8 bytes of header length, the JSON header, then
    every tensor's data_offsets), or None when the header itself is cut short or unreadable."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        raw = f.read(n) if 0 < n <= 100 << 20 else b""
    try:
        header = json.loads(raw) if len(raw) == n else None
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)
    ]
    return 8 + n + max((e for e in ends if isinstance(e, int)), default=0)
