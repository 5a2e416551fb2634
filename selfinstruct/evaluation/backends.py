"""Which backend answers for a model: one in-process vLLM engine at a time (started when needed, kept while the
same model is asked for, closed before the next), or OpenAI-compatible servers that already serve it by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from selfinstruct.llm.base import Backend
from selfinstruct.llm.config import OpenAIConfig, VLLMConfig


def fit_context(path: str, wanted: int | None) -> int | None:
    """vLLM refuses a context longer than the model's positions; small students have few. None: the model's own."""
    if wanted is None:
        return None
    cfg = Path(path) / "config.json"
    if cfg.is_file():
        positions = json.loads(cfg.read_text()).get("max_position_embeddings")
        if isinstance(positions, int):
            return min(wanted, positions)
    return wanted


class EngineSlot:
    """`slot(model) -> Backend` for `AnswerBook.answer`: the recipe's backend section with its model replaced by
    the one to evaluate (a checkpoint directory for vLLM, a served name for servers).

    One backend is kept alive and reused while the same model is asked for again (an engine start costs 30 s
    to minutes on CPU); asking for another model closes it first, so two engines never share the memory.
    Close the slot when done.
    """

    def __init__(
        self,
        config: VLLMConfig | OpenAIConfig | None = None,
        *,
        on_start: Callable[[str], None] | None = None,
    ):
        self.config = config if config is not None else VLLMConfig(enforce_eager=True)
        self.on_start = on_start
        self.starts = 0
        self._model: str | None = None
        self._backend: Backend | None = None

    def __call__(self, model: str) -> Backend:
        from selfinstruct.llm import make_backend

        if self._backend is not None and self._model == model:
            return self._backend
        self.close()
        if self.on_start:
            self.on_start(model)
        cfg = self.config
        if isinstance(cfg, VLLMConfig):
            cfg = cfg.model_copy(
                update={"model": model, "max_model_len": fit_context(model, cfg.max_model_len)}
            )
        else:
            cfg = cfg.model_copy(update={"model": model})
        self._backend, self._model = make_backend(cfg), model
        self.starts += 1
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            backend, self._backend, self._model = self._backend, None, None
            backend.close()

    def __enter__(self) -> EngineSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
