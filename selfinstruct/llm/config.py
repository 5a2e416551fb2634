"""Backend settings as they appear in a recipe's `backend:` section (STYLE rule 9).

The section is a discriminated union on `kind`:

```yaml
backend:            # in-process engine
  kind: vllm
  model: data/models/smollm2-135m-instruct
  max_model_len: 2048
backend:            # one or more OpenAI-compatible servers
  kind: openai
  base_urls: [http://10.0.0.5:8000/v1, http://10.0.0.6:8000/v1]
  model: smollm2-135m-instruct
  api_key_env: MY_API_KEY
```

Only engine and transport settings live here; sampling is per request (`Sampling`). The API key itself is
never in a config: `api_key_env` names the environment variable that holds it, so a dumped config or a
manifest carries no secret.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DTYPES = ("auto", "float32", "float16", "bfloat16", "half", "float")


def _must(field: str, what: str, got: Any) -> ValueError:
    return ValueError(f"`{field}` must be {what}, got {got!r}")


class VLLMConfig(BaseModel):
    """vLLM inside this process (`vllm.LLM`): one batch per call, continuous batching fills the device.

    Defaults that differ from `vllm.LLM`'s: `gpu_memory_utilization` 0.9 (vLLM: 0.92), `kv_cache_gib` 2
    (vLLM's CPU backend: most of a NUMA node, which may refuse to start on a small machine).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["vllm"] = Field("vllm", description="Selects this backend.")
    model: str | None = Field(
        None,
        description="Checkpoint directory (or hub id when online). None: the embedded model "
        "(`selfinstruct.models.default_model_dir()`).",
    )
    dtype: str = Field("auto", description=f"Weights and activations dtype, one of {', '.join(_DTYPES)}.")
    max_model_len: int | None = Field(
        None, description="Longest prompt + completion in tokens; None: the model's own limit."
    )
    tensor_parallel_size: int = Field(1, description="GPUs one model is split across.")
    gpu_memory_utilization: float = Field(
        0.9, description="Share of GPU memory vLLM may take for weights + KV cache, in (0, 1]."
    )
    enforce_eager: bool = Field(
        False,
        description="Skip graph capture/compilation: starts faster (about 30 s instead of 80 s on CPU).",
    )
    seed: int = Field(0, description="Engine seed; requests without their own seed draw from it.")
    kv_cache_gib: int | None = Field(
        2,
        description="CPU backend only: KV cache size in GiB, exported as VLLM_CPU_KVCACHE_SPACE unless that "
        "variable is already set. None leaves vLLM's default. Ignored on GPU.",
    )
    extra_sampling: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra `vllm.SamplingParams` fields applied to every request (e.g. ignore_eos for "
        "benchmarks). Keys must not be `Sampling` fields: those are set per request.",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Other `vllm.LLM` keyword arguments, passed through unchanged."
    )

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in _DTYPES:
            raise _must("dtype", f"one of {', '.join(_DTYPES)}", v)
        return v

    @field_validator("max_model_len")
    @classmethod
    def _max_model_len(cls, v: int | None) -> int | None:
        if v is not None and v < 16:
            raise _must("max_model_len", ">= 16 or null", v)
        return v

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tp(cls, v: int) -> int:
        if v < 1:
            raise _must("tensor_parallel_size", ">= 1", v)
        return v

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _gmu(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise _must("gpu_memory_utilization", "in (0, 1]", v)
        return v

    @field_validator("kv_cache_gib")
    @classmethod
    def _kv(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise _must("kv_cache_gib", ">= 1 or null", v)
        return v

    @field_validator("extra_sampling")
    @classmethod
    def _extra_sampling(cls, v: dict[str, Any]) -> dict[str, Any]:
        from selfinstruct.llm.base import Sampling

        clash = sorted(set(v) & set(Sampling.model_fields))
        if clash:
            raise _must("extra_sampling", "free of per-request Sampling fields (set them per request)", clash)
        return v


class OpenAIConfig(BaseModel):
    """HTTP to one or more OpenAI-compatible servers (`vllm serve`, SGLang, llama.cpp, a hosted API).

    Each request retries on connection errors, timeouts, 429 and 5xx with exponential backoff and equal jitter
    (Retry-After wins when the server sends it). A replica failing `replica_max_failures` times in a row rests
    for `replica_cooldown_s`. A request still failing after `max_retries` comes back with `error` set; when
    every replica has failed for longer than `all_down_timeout_s` with no success in between, the backend
    raises `BackendDownError` and the run stops.
    """

    # Errors carry our own "got X" where it is safe; pydantic's input echo could print a key pasted into
    # `api_key_env` (or into a URL) to a CI log.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, allow_inf_nan=False)

    kind: Literal["openai"] = Field("openai", description="Selects this backend.")
    base_urls: list[str] = Field(
        description="Base URLs up to and including the API version, e.g. http://127.0.0.1:8000/v1. Requests "
        "are spread over all of them.",
        min_length=1,
    )
    model: str = Field(description="Model name the servers know it by (`--served-model-name`).")
    api_key_env: str | None = Field(
        None,
        description="NAME of the environment variable holding the API key, read at request time; the key "
        "itself never goes in a config, log or manifest. None: no Authorization header.",
    )
    concurrency: int = Field(64, description="Most requests in flight per replica.")
    timeout_s: float = Field(
        300.0, description="Seconds one HTTP request may take before it counts as failed."
    )
    connect_timeout_s: float = Field(5.0, description="Seconds to open a connection to a replica.")
    max_retries: int = Field(4, description="Retries after the first attempt (so max_retries + 1 attempts).")
    backoff_base_s: float = Field(0.5, description="First retry waits up to this long; doubles each retry.")
    backoff_max_s: float = Field(20.0, description="Longest wait between two attempts (without Retry-After).")
    max_retry_after_s: float = Field(120.0, description="Longest Retry-After from a server that is honoured.")
    replica_max_failures: int = Field(
        3, description="Consecutive failures after which a replica is taken out of rotation."
    )
    replica_cooldown_s: float = Field(30.0, description="How long a failing replica stays out of rotation.")
    all_down_timeout_s: float = Field(
        300.0, description="Every replica failing, with no success, for this long stops the run."
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra JSON fields sent with every request (server-specific, e.g. vLLM's ignore_eos).",
    )

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        out = []
        for url in v:
            if not re.match(r"https?://[^/\s]+", url or ""):
                raise _must("base_urls", "a list of http(s):// URLs", url)
            if "@" in re.match(r"https?://([^/?#]*)", url).group(1):  # not echoed: it holds a secret
                raise ValueError(
                    "`base_urls` must be free of credentials (user:password@): they would be written to "
                    "manifests and logs; put the key in an environment variable named by `api_key_env`"
                )
            if re.search(r"[?#]", url):  # not echoed either: `?api_key=` is how some servers take a key
                raise ValueError(
                    "`base_urls` take no query or fragment: the API path is appended after the URL, and the "
                    "URL is written to manifests; put a key in an environment variable named by `api_key_env`"
                )
            out.append(url.rstrip("/"))
        if len(set(out)) != len(out):
            raise _must("base_urls", "free of duplicates", v)
        return out

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not v.strip():
            raise _must("model", "a non-empty model name", v)
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        # A value that does not look like a variable name is most likely the key itself pasted by mistake:
        # refuse it, and do not echo it back.
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError(
                "`api_key_env` must be the NAME of an environment variable (letters, digits, _), "
                "not the key itself"
            )
        return v

    @field_validator("concurrency", "replica_max_failures")
    @classmethod
    def _positive_int(cls, v: int, info) -> int:
        if v < 1:
            raise _must(info.field_name, ">= 1", v)
        return v

    @field_validator("max_retries")
    @classmethod
    def _retries(cls, v: int) -> int:
        if v < 0:
            raise _must("max_retries", ">= 0", v)
        return v

    @field_validator("timeout_s", "connect_timeout_s", "all_down_timeout_s")
    @classmethod
    def _positive(cls, v: float, info) -> float:
        if v <= 0:
            raise _must(info.field_name, "> 0", v)
        return v

    @field_validator("backoff_base_s", "backoff_max_s", "max_retry_after_s", "replica_cooldown_s")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:
        if v < 0:
            raise _must(info.field_name, ">= 0", v)
        return v

    @model_validator(mode="after")
    def _backoff_order(self) -> OpenAIConfig:
        if self.backoff_max_s < self.backoff_base_s:
            raise _must("backoff_max_s", f">= backoff_base_s ({self.backoff_base_s})", self.backoff_max_s)
        return self


BackendConfig = Annotated[VLLMConfig | OpenAIConfig, Field(discriminator="kind")]
"""The `backend:` section of a recipe: `kind: vllm` or `kind: openai`."""

_ADAPTER: TypeAdapter[VLLMConfig | OpenAIConfig] = TypeAdapter(BackendConfig)


def parse_backend_config(data: dict[str, Any]) -> VLLMConfig | OpenAIConfig:
    """Validate a `backend:` mapping (raises pydantic's ValidationError with field locations)."""
    return _ADAPTER.validate_python(data)
