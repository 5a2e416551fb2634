"""vLLM's CPU engine settings on this machine, side by side in one run: the embedded model generating in
bfloat16 (vLLM's default for "auto") and in float32 (what `engine_dtype` picks on a CPU without native
bfloat16), and in float32 with one core kept for vLLM's scheduler (vLLM's default) and with none (what
`cpu_env_defaults` picks on at most two usable cores).

Method: 24 raw prompts, each asking for a list, temperature 0.7 with one seed, `--max-tokens` each (128 unless
given; `ignore_eos`), so every setting generates the same number of tokens; one warm-up pass, then `--reps`
timed passes per setting. Each engine runs in a child process of its own (vLLM keeps state per process, and
reads the kept cores from the environment), closed before the next starts. The engine's start (imports,
model load, the worker's spawn) is timed too.

Run: .venv/bin/python bench/engine_cpu.py [--reps 2] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

# (dtype, cores kept for the scheduler): each named explicitly, so neither default picks for us
SETTINGS = [("bfloat16", 1), ("float32", 1), ("float32", 0)]


def one(dtype: str, reps: int, max_tokens: int) -> dict:
    """Start time and tokens/s of `reps` passes on an engine started with `dtype` (passed through as named)."""
    t0 = time.perf_counter()
    from vllm import SamplingParams

    from selfinstruct.llm.vllm_engine import VLLMBackend
    from selfinstruct.models import prepare

    backend = VLLMBackend(
        str(prepare(None).path), enforce_eager=True, max_model_len=2048, seed=0, dtype=dtype
    )
    start_s = time.perf_counter() - t0
    prompts = [f"Write a list of {i + 2} ideas for a birthday party:\n1." for i in range(24)]
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.7, seed=1)
    rates = []
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        outs = backend.llm.generate(prompts, params, use_tqdm=False)
        tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        if rep:  # the first pass warms up
            rates.append(tokens / (time.perf_counter() - t0))
    backend.close()
    return {"start_s": start_s, "tokens_per_pass": tokens, "tok_s": rates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one dtype, one JSON line
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.reps, args.max_tokens)), flush=True)
        return
    from selfinstruct.llm.vllm_engine import cpu_env_defaults, engine_dtype, native_bf16

    bf16 = native_bf16(Path("/proc/cpuinfo").read_text())
    cores = len(os.sched_getaffinity(0))
    print(f"native bfloat16: {bf16}; `auto` starts the engine in {engine_dtype('auto')}")
    print(f"usable cores: {cores}; environment defaults: {cpu_env_defaults() or 'none'}")
    print("| setting | start s | tokens a pass | tok/s (best) | tok/s (median) |\n|---|---:|---:|---:|---:|")
    best = []
    for dtype, kept in SETTINGS:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                f"--one={dtype}",
                f"--reps={args.reps}",
                f"--max-tokens={args.max_tokens}",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "VLLM_CPU_NUM_OF_RESERVED_CPU": str(kept)},
        ).stdout.splitlines()[-1]
        r = json.loads(out)
        rates = sorted(r["tok_s"])
        best.append(rates[-1])
        print(f"| {dtype}, {kept or 'no'} core kept | {r['start_s']:.1f} | {r['tokens_per_pass']:,} | {rates[-1]:.1f} | "
              f"{statistics.median(rates):.1f} |")  # fmt: skip
    print(f"float32 / bfloat16 (best, 1 core kept): {best[1] / best[0]:.2f}x; "
          f"no core kept / 1 core kept (float32): {best[2] / best[1]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
