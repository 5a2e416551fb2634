"""Generation backends behind one interface: `generate(requests) -> list[Completion]` in input order.

`make_backend(config)` builds the backend a recipe's `backend:` section names: `kind: vllm` (in-process
engine) or `kind: openai` (OpenAI-compatible servers). Backends import their heavy libraries lazily.
"""

from __future__ import annotations

from typing import Any

from selfinstruct.llm.base import Backend, Completion, Request, Sampling
from selfinstruct.llm.config import BackendConfig, OpenAIConfig, VLLMConfig, parse_backend_config
from selfinstruct.llm.openai_api import BackendDownError, OpenAIBackend

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendDownError",
    "Completion",
    "OpenAIBackend",
    "OpenAIConfig",
    "Request",
    "Sampling",
    "VLLMConfig",
    "make_backend",
    "parse_backend_config",
]


def make_backend(config: VLLMConfig | OpenAIConfig | dict[str, Any]) -> Backend:
    """The backend for a `backend:` section (a validated config or the raw mapping)."""
    if isinstance(config, dict):
        config = parse_backend_config(config)
    if isinstance(config, VLLMConfig):
        from selfinstruct.llm.vllm_engine import VLLMBackend

        return VLLMBackend.from_config(config)
    return OpenAIBackend.from_config(config)
