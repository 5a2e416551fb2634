"""Shared fixtures. The embedded model is prepared once and one vLLM engine serves the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = ROOT.parent / "shared" / "data" / "external"

# vLLM's CPU backend sizes its KV cache from this; unset, it asks for most of a NUMA node and may refuse to start.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def external() -> Path:
    """The real external data beside the checkout (../shared/data/external); never copied into the repo."""
    assert EXTERNAL.is_dir(), f"missing {EXTERNAL}: CI clones with ../shared beside the repository"
    return EXTERNAL


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The embedded SmolLM2 checkpoint, prepared (once, then instantly) by the real `prepare`."""
    from selfinstruct.models import default_model_dir, prepare

    return prepare(
        ROOT / default_model_dir() if not default_model_dir().is_absolute() else None
    ).path.resolve()


@pytest.fixture(scope="session")
def vllm_backend(embedded_model):
    """Our in-process vLLM backend on the embedded model, started once per session (about 30 s on 2 cores)."""
    from selfinstruct.llm.vllm_engine import VLLMBackend

    backend = VLLMBackend(str(embedded_model), enforce_eager=True, max_model_len=2048, seed=0)
    assert backend.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill is False
    yield backend
    backend.close()
