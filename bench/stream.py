"""Rounds vs streaming on the in-process engine: how busy the engine is kept, and tokens/s against a
saturated engine fed the same requests with no loop at all (issue 12, item 4).

Method: R instruction-generation chat prompts (as `bench/llm.py` builds them), each with its own seed and its
own `max_tokens` drawn from [8, 96] with a fixed RNG, `ignore_eos` on: every mode generates exactly the same
tokens (the texts are compared), and the spread of lengths is what thins a round's batch at its end.
  - saturated: one `generate` call with all R requests (the reference: no loop, the engine schedules all);
  - rounds:    `generate` on N requests, wait for all N, repeat (the loop's barrier today);
  - streaming: `stream(requests, max_in_flight=N)` (keep N in flight, queue the next as one finishes).
Busy share: the engine's `step` is wrapped to record its duration and the requests it holds (running
sequences: unfinished requests, at most `max_num_seqs`); share = integral of min(running, N) over time /
(N x wall time). Modes alternate for `--reps` passes so load from other work hits all alike; the best
pass of each is reported (median in the JSON).

Run: .venv/bin/python bench/stream.py [--requests 96] [--in-flight 16] [--reps 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


class StepLog:
    """Wraps `engine.step`: (start, end, requests held) per step."""

    def __init__(self, engine):
        self.engine, self.steps = engine, []
        self._step = engine.step
        self.cap = engine.vllm_config.scheduler_config.max_num_seqs
        engine.step = self.step

    def step(self):
        held = min(self.engine.get_num_unfinished_requests(), self.cap)
        t0 = time.perf_counter()
        out = self._step()
        self.steps.append((t0, time.perf_counter(), held))
        return out

    def running_time(self, since: float, width: int) -> float:
        """Integral of min(held, width) over the steps since `since` (sequence-seconds)."""
        return sum((t1 - t0) * min(h, width) for t0, t1, h in self.steps if t0 >= since)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--in-flight", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from llm import build_messages

    from selfinstruct.llm import Request, Sampling
    from selfinstruct.llm.vllm_engine import VLLMBackend
    from selfinstruct.models import default_model_dir

    rng = random.Random(0)
    reqs = [
        Request(
            id=str(i),
            messages=tuple(m),
            sampling=Sampling(temperature=0.7, max_tokens=rng.randint(8, 96), seed=i),
        )
        for i, m in enumerate(build_messages(args.requests))
    ]
    model = (
        str(ROOT / default_model_dir()) if not default_model_dir().is_absolute() else str(default_model_dir())
    )
    backend = VLLMBackend(
        model,
        enforce_eager=True,
        max_model_len=2048,
        seed=0,
        extra_sampling={"ignore_eos": True},
        engine_kwargs={"enable_prefix_caching": False},
    )
    log = StepLog(backend.llm.llm_engine)
    backend.generate(reqs[:4])  # warm-up
    n = args.in_flight

    def saturated():
        return backend.generate(reqs)

    def rounds():
        return [c for k in range(0, len(reqs), n) for c in backend.generate(reqs[k : k + n])]

    def streaming():
        return list(backend.stream(reqs, max_in_flight=n))

    modes = {"saturated": saturated, "rounds": rounds, "streaming": streaming}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    texts: dict[str, dict[str, str]] = {}
    for _ in range(args.reps):
        for name, fn in modes.items():
            t0 = time.perf_counter()
            out = fn()
            wall = time.perf_counter() - t0
            assert all(c.ok for c in out), [c.error for c in out if not c.ok]
            tokens = sum(c.completion_tokens for c in out)
            width = len(reqs) if name == "saturated" else n
            runs[name].append(
                {
                    "wall_s": wall,
                    "tokens": tokens,
                    "tok_s": tokens / wall,
                    "mean_running": log.running_time(t0, log.cap) / wall,
                    "busy_share": log.running_time(t0, width) / (width * wall),
                }
            )
            texts[name] = {c.request_id: c.text for c in out}
    backend.close()
    same = texts["rounds"] == texts["saturated"] == texts["streaming"]
    best = {m: max(r, key=lambda x: x["tok_s"]) for m, r in runs.items()}
    ref = best["saturated"]["tok_s"]
    if args.json:
        med = {m: {k: statistics.median(x[k] for x in r) for k in r[0]} for m, r in runs.items()}
        print(json.dumps({"best": best, "median": med, "same_texts": same, "in_flight": n}, indent=1))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; engine max_num_seqs "
          f"{log.cap}; {len(reqs)} requests, {best['saturated']['tokens']} tokens; N = {n}; best of {args.reps}")  # fmt: skip
    print("| mode | wall s | tokens/s | vs saturated | mean running sequences | busy share (of N) |")
    print("|---|---:|---:|---:|---:|---:|")
    for m, r in best.items():
        share = "-" if m == "saturated" else f"{r['busy_share']:.3f}"
        print(f"| {m} | {r['wall_s']:.1f} | {r['tok_s']:.1f} | {r['tok_s'] / ref:.3f} | {r['mean_running']:.1f} | {share} |")  # fmt: skip
    print(f"same texts in every mode: {same}")


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
