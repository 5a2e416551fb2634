"""Throughput of the whole bootstrap loop against raw `vllm.LLM.generate` on the same requests, in one run.

Method: one engine serves all sides. The loop runs the quickstart recipe (generate, parse, filter, write) for a
fixed number of rounds, with `--schedule rounds` (a barrier per round) or `stream` (no barrier), while every
request it sends is recorded. Then the very same requests (same prompts, sampling and per-request seeds, so the
same tokens) go through raw `LLM.generate`: once batch by batch as the loop sent them (rounds only), and once
all in a single call, which keeps the engine saturated with no loop at all. Ratios are tokens per wall second.
Usage: python bench/loop.py [--rounds 3] [--round-size 64] [--schedule rounds|stream]
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

    def stream(self, requests, max_in_flight=None):
        self.batches.append([])

        def tap():
            for r in requests:
                if r is not None:
                    self.batches[-1].append(r)
                yield r

        return self.backend.stream(tap(), max_in_flight=max_in_flight)

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-size", type=int, default=64)
    ap.add_argument("--schedule", choices=("rounds", "stream"), default="rounds")
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
                "loop.schedule": args.schedule,
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

        from vllm.inputs import TokensPrompt

        def raw(batches) -> tuple[int, float]:
            tokens, t0 = 0, time.perf_counter()
            for batch in batches:
                prompts = [TokensPrompt(prompt_token_ids=backend.prompt_ids(r)) for r in batch]
                params = [backend._params(r.sampling) for r in batch]
                for o in backend.llm.generate(prompts, params, use_tqdm=False):
                    tokens += sum(len(c.token_ids) for c in o.outputs)
            return tokens, time.perf_counter() - t0

        everything = [r for b in rec.batches for r in b]
        raw_tokens, raw_s = raw(rec.batches) if args.schedule == "rounds" else (0, 0.0)
        sat_tokens, sat_s = raw([everything])
    finally:
        backend.close()
        shutil.rmtree(out, ignore_errors=True)

    loop_tps, sat_tps = loop_tokens / loop_s, sat_tokens / sat_s
    print(
        f"schedule {args.schedule}: {len(everything)} requests ({manifest.counts.get('requests', 0)} answered)"
    )
    print(f"{'path':<28}{'tokens':>10}{'seconds':>10}{'tok/s':>10}")
    if raw_s:
        print(f"{'raw, batch by batch':<28}{raw_tokens:>10}{raw_s:>10.1f}{raw_tokens / raw_s:>10.1f}")
    print(f"{'raw, one saturated call':<28}{sat_tokens:>10}{sat_s:>10.1f}{sat_tps:>10.1f}")
    print(f"{'the loop':<28}{loop_tokens:>10}{loop_s:>10.1f}{loop_tps:>10.1f}")
    if raw_s:
        print(f"loop / raw batch by batch = {loop_tps / (raw_tokens / raw_s):.3f}")
    print(f"loop / saturated engine = {loop_tps / sat_tps:.3f} (target >= 0.95)")
    print(f"accepted {manifest.counts.get('accepted', 0)}, rejected {manifest.counts.get('rejected', 0)}")


if __name__ == "__main__":
    main()
