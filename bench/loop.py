"""Throughput of the whole bootstrap loop against raw `vllm.LLM.generate` on the same requests, in one run.

Method: one engine serves both sides. The loop runs the quickstart recipe (generate, parse, filter, write) for a
fixed number of rounds while every batch it sends is recorded. Then the very same batches (same prompts, same
sampling, same per-request seeds, so the same tokens) go through raw `LLM.generate`, one call per batch. The
ratio is (loop tokens / loop wall time) / (raw tokens / raw wall time); the loop's time includes everything it
does besides generating. Usage: python bench/loop.py [--rounds 3] [--round-size 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Recording:
    """Passes batches to the real backend and keeps them for the raw replay."""

    def __init__(self, backend):
        self.backend, self.name, self.model = backend, backend.name, backend.model
        self.batches: list = []

    def generate(self, requests):
        self.batches.append(list(requests))
        return self.backend.generate(requests)

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-size", type=int, default=64)
    args = ap.parse_args()

    from selfinstruct.config import load_recipe
    from selfinstruct.generate import generate, resolve
    from selfinstruct.llm.vllm_engine import VLLMBackend

    os.chdir(ROOT)
    recipe = resolve(
        load_recipe(
            "pipelines/quickstart.yaml",
            {
                "loop.target": 100_000,
                "loop.max_rounds": args.rounds,
                "loop.round_size": args.round_size,
                "loop.patience": None,
            },
        )
    )
    backend = VLLMBackend.from_config(recipe.backend)
    rec = Recording(backend)
    # Warm-up outside both measurements: the first batch pays one-off engine costs.
    from selfinstruct.llm.base import Request, Sampling

    backend.generate([Request(prompt="Warm up.", sampling=Sampling(max_tokens=8))] * 8)
    out = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    try:
        t0 = time.perf_counter()
        manifest = generate(recipe, out, backend=rec)
        loop_s = time.perf_counter() - t0
        loop_tokens = manifest.tokens["completion_tokens"]

        raw_tokens, t0 = 0, time.perf_counter()
        for batch in rec.batches:
            from vllm.inputs import TokensPrompt

            prompts = [TokensPrompt(prompt_token_ids=backend.prompt_ids(r)) for r in batch]
            params = [backend._params(r.sampling) for r in batch]
            for o in backend.llm.generate(prompts, params, use_tqdm=False):
                raw_tokens += sum(len(c.token_ids) for c in o.outputs)
        raw_s = time.perf_counter() - t0
    finally:
        backend.close()
        shutil.rmtree(out, ignore_errors=True)

    loop_tps, raw_tps = loop_tokens / loop_s, raw_tokens / raw_s
    print(f"requests: {sum(len(b) for b in rec.batches)} in {len(rec.batches)} batches")
    print(f"{'path':<10}{'tokens':>10}{'seconds':>10}{'tok/s':>10}")
    print(f"{'raw vLLM':<10}{raw_tokens:>10}{raw_s:>10.1f}{raw_tps:>10.1f}")
    print(f"{'loop':<10}{loop_tokens:>10}{loop_s:>10.1f}{loop_tps:>10.1f}")
    print(f"loop / raw = {loop_tps / raw_tps:.3f} (target >= 0.90)")
    print(f"accepted {manifest.counts.get('accepted', 0)}, rejected {manifest.counts.get('rejected', 0)}")


if __name__ == "__main__":
    main()
