"""Which backend answers for a model: one in-process vLLM engine per model (started when needed, closed before
the next), or OpenAI-compatible servers that already serve it under a name."""

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


def backend_factory(
    config: VLLMConfig | OpenAIConfig | None = None, *, on_start: Callable[[str], None] | None = None
) -> Callable[[str], Backend]:
    """`start(model) -> Backend` for `AnswerBook.answer`: the recipe's backend section with its model replaced
    by the one to evaluate (a checkpoint directory for vLLM, a served name for servers)."""
    config = config if config is not None else VLLMConfig(enforce_eager=True)

    def start(model: str) -> Backend:
        from selfinstruct.llm import make_backend

        if on_start:
            on_start(model)
        if isinstance(config, VLLMConfig):
            return make_backend(
                config.model_copy(
                    update={"model": model, "max_model_len": fit_context(model, config.max_model_len)}
                )
            )
        return make_backend(config.model_copy(update={"model": model}))

    return start
