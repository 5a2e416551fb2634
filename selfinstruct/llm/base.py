"""The LLM interface: requests in, one completion per request out, in input order (STYLE rule 12), or
streamed as they finish with a bounded number in flight.

Engine settings live with each backend; sampling settings live in `Sampling`, per request. This module
knows nothing of tasks, filters or files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class Sampling(BaseModel):
    """How to sample one request. Validated on creation, immutable afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    temperature: float = Field(0.7, ge=0.0, description="Softmax temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")
    max_tokens: int = Field(256, ge=1, description="Most new tokens per completion.")
    stop: tuple[str, ...] = Field((), description="Strings that end a completion (not included in the text).")
    n: int = Field(1, ge=1, description="Completions per request.")
    seed: int | None = Field(None, description="Per-request seed, for reproducible sampling.")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style presence penalty.")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style frequency penalty.")
    choice: tuple[str, ...] = Field(
        (),
        description="When set, the completion is exactly one of these strings (constrained decoding: vLLM's "
        "structured outputs, in process or over HTTP to a vLLM server).",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # Left out while unset, so prompt hashes and answer keys written before the field existed still match.
        out = handler(self)
        if not self.choice:
            out.pop("choice", None)
        return out


class Request(BaseModel):
    """Chat `messages` (rendered with the model's chat template) or a raw `prompt`, never both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = ""
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    sampling: Sampling = Field(default_factory=Sampling)

    @model_validator(mode="after")
    def _one_input(self) -> Request:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request needs exactly one of `messages` or `prompt`")
        return self


class Completion(BaseModel):
    """The result of one request: n texts with their finish reasons, token counts, or an error."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = ""
    texts: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    @property
    def finish_reason(self) -> str | None:
        return self.finish_reasons[0] if self.finish_reasons else None


class Backend(Protocol):
    """What the loop needs from a model server. `generate` and `stream` never raise for one bad request:
    that request's Completion carries the error. They raise only when the whole backend is unusable."""

    name: str
    model: str

    def generate(self, requests: Sequence[Request]) -> list[Completion]: ...

    def stream(
        self, requests: Iterable[Request], *, max_in_flight: int | None = None
    ) -> Iterator[Completion]:
        """Completions as they finish, any order, each carrying its `request_id`; at most `max_in_flight`
        requests outstanding (None: the backend's own bound). `requests` is pulled only when there is room,
        so it may be a lazy generator deciding the next request from the completions seen so far; it yields
        None for "nothing to ask right now" (asked again after the next completion), and the stream ends when
        nothing is in flight and nothing is asked. Closing the iterator early aborts every request still in
        flight and leaves the backend usable."""
        ...

    def close(self) -> None: ...


def stream(
    backend: Backend, requests: Iterable[Request], *, max_in_flight: int | None = None
) -> Iterator[Completion]:
    """`backend.stream(...)`, or for a backend with only `generate` (a test double), the same contract
    met with barriers: up to `max_in_flight` requests (default 64) pulled, generated, yielded, repeat."""
    if hasattr(backend, "stream"):
        return backend.stream(requests, max_in_flight=max_in_flight)
    return _in_batches(backend, iter(requests), max_in_flight or 64)


def _in_batches(backend: Backend, source: Iterator[Request | None], size: int) -> Iterator[Completion]:
    """Whatever the source asks for now (up to `size`, until it says None), as one `generate` call; repeat."""
    while True:
        batch: list[Request] = []
        for req in source:
            if req is None:
                break
            batch.append(req)
            if len(batch) >= size:
                break
        if not batch:
            return
        yield from backend.generate(batch)
