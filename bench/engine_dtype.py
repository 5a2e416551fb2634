"""Engine dtype on this CPU: the embedded model generating in bfloat16 (vLLM's CPU default for "auto") and in
float32 (what `engine_dtype` picks on a CPU without native bfloat16), one engine at a time, in one run.

Method: 24 raw prompts, each asking for a list, temperature 0.7 with one seed, `--max-tokens` each (128 unless
given; `ignore_eos`), so both dtypes generate the same number of tokens; one warm-up pass, then `--reps` timed
passes per dtype. Each engine runs in a child process of its own (vLLM keeps state per process), closed before
the next starts.

Run: .venv/bin/python bench/engine_dtype.py [--reps 2] [--max-tokens 128]
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


def one(dtype: str, reps: int, max_tokens: int) -> dict:
    """Tokens/s of `reps` passes on an engine started with `dtype` (our backend passes it through as named)."""
    from vllm import SamplingParams

    from selfinstruct.llm.vllm_engine import VLLMBackend
    from selfinstruct.models import prepare

    backend = VLLMBackend(
        str(prepare(None).path), enforce_eager=True, max_model_len=2048, seed=0, dtype=dtype
    )
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
    return {"dtype": dtype, "tokens_per_pass": tokens, "tok_s": rates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child: one dtype, one JSON line
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.reps, args.max_tokens)), flush=True)
        return
    from selfinstruct.llm.vllm_engine import engine_dtype, native_bf16

    bf16 = native_bf16(Path("/proc/cpuinfo").read_text())
    print(f"native bfloat16: {bf16}; `auto` starts the engine in {engine_dtype('auto')}")
    print("| dtype | tokens a pass | tok/s (best) | tok/s (median) |\n|---|---:|---:|---:|")
    best = {}
    for dtype in ("bfloat16", "float32"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                dtype,
                f"--reps={args.reps}",
                f"--max-tokens={args.max_tokens}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()[-1]
        r = json.loads(out)
        rates = sorted(r["tok_s"])
        best[dtype] = rates[-1]
        print(f"| {dtype} | {r['tokens_per_pass']:,} | {rates[-1]:.1f} | {statistics.median(rates):.1f} |")
    print(f"float32 / bfloat16 (best): {best['float32'] / best['bfloat16']:.2f}x")


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
