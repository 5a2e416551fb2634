"""Throughput of the whole bootstrap loop against raw `vllm.LLM.generate` on the same requests, in one run.

Method: one engine serves all sides. The loop runs the quickstart recipe (generate, parse, filter, write) for a
fixed number of rounds, with `--schedule rounds` (a barrier per round) or `stream` (no barrier), while every
request it sends is recorded. Then the very same requests (same prompts, sampling and per-request seeds, so the
same tokens) go through the engine with no loop: the way the loop sent them (rounds: batch by batch through
`LLM.generate`; stream: the backend's `stream` with the loop's window), and all in a single `LLM.generate`
call, which keeps the engine saturated. Ratios are tokens per wall second.
Usage: python bench/loop.py [--rounds 3] [--round-size 64] [--schedule rounds|stream] [--reps 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)


class Recording:
    """Passes batches to the real backend and keeps them for the raw replay."""

    def __init__(self, backend):
        self.backend, self.name, self.model = backend, backend.name, backend.model
        self.batches: list = []
        self.answered: set[str] = set()  # stream: the requests whose answer reached the loop

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

        for c in self.backend.stream(tap(), max_in_flight=max_in_flight):
            self.answered.add(c.request_id)
            yield c

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-size", type=int, default=64)
    ap.add_argument("--schedule", choices=("rounds", "stream"), default="rounds")
    ap.add_argument("--reps", type=int, default=1, help="passes; the best of each path is reported")
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
                # stream: send rounds x round_size requests and handle every answer (none aborted at the
                # stop), so the raw replays below generate exactly the loop's tokens
                "loop.max_rounds": args.rounds if args.schedule == "rounds" else None,
                "loop.max_requests": None if args.schedule == "rounds" else args.rounds * args.round_size,
                "loop.round_size": args.round_size,
                "loop.patience": None,
                "loop.schedule": args.schedule,
            },
        )
    )
    backend = VLLMBackend.from_config(recipe.backend)
    # Warm-up outside every measurement: the first batch pays one-off engine costs.
    from vllm.inputs import TokensPrompt

    from selfinstruct.llm.base import Request, Sampling

    backend.generate([Request(prompt="Warm up.", sampling=Sampling(max_tokens=8))] * 8)

    def raw(batches) -> tuple[int, float]:
        tokens, t0 = 0, time.perf_counter()
        for batch in batches:
            prompts = [TokensPrompt(prompt_token_ids=backend.prompt_ids(r)) for r in batch]
            params = [backend._params(r.sampling) for r in batch]
            for o in backend.llm.generate(prompts, params, use_tqdm=False):
                tokens += sum(len(c.token_ids) for c in o.outputs)
        return tokens, time.perf_counter() - t0

    def raw_stream(requests, window: int) -> tuple[int, float]:
        """The same requests through the backend's `stream` with the loop's window, and no loop."""
        t0 = time.perf_counter()
        tokens = sum(c.completion_tokens for c in backend.stream(iter(requests), max_in_flight=window))
        return tokens, time.perf_counter() - t0

    same = "raw, batch by batch" if args.schedule == "rounds" else f"raw stream, {args.round_size} in flight"
    sat = "raw, one saturated call"
    ratios: list[tuple[float, float]] = []  # per pass: loop / same-shape raw, loop / saturated
    try:
        # Paths alternate, so load from other work hits all alike. Ratios are taken within a pass: with the
        # stream schedule the loop's decisions follow the order answers arrive in, which follows timing, so
        # two passes may ask different instance requests and generate different tokens.
        for rep in range(args.reps):
            rec = Recording(backend)
            out = Path(tempfile.mkdtemp(prefix="bench-loop-"))
            try:
                t0 = time.perf_counter()
                manifest = generate(recipe, out, backend=rec)
                runs = {"the loop": (manifest.tokens["completion_tokens"], time.perf_counter() - t0)}
            finally:
                shutil.rmtree(out, ignore_errors=True)
            everything = [r for b in rec.batches for r in b]
            aborted = 0
            if args.schedule == "stream":
                # Replay only the requests the loop handled (none are aborted with max_requests, but a
                # stop by target would leave some in flight), so every path generates the same tokens.
                aborted = sum(r.id not in rec.answered for r in everything)
                everything = [r for r in everything if r.id in rec.answered]
                runs[same] = raw_stream(everything, recipe.loop.round_size)
            else:
                runs[same] = raw(rec.batches)
            runs[sat] = raw([everything])
            tps = {k: t / s for k, (t, s) in runs.items()}
            ratios.append((tps["the loop"] / tps[same], tps["the loop"] / tps[sat]))
            print(f"pass {rep + 1}: {len(everything)} requests answered, {aborted} aborted in flight at the stop; "
                  f"accepted {manifest.counts.get('accepted', 0)}, rejected {manifest.counts.get('rejected', 0)}")  # fmt: skip
            print(f"{'path':<28}{'tokens':>10}{'seconds':>10}{'tok/s':>10}")
            for k, (t, s) in runs.items():
                print(f"{k:<28}{t:>10}{s:>10.1f}{t / s:>10.1f}")
            print(
                f"loop / {same} = {ratios[-1][0]:.3f}; loop / saturated engine = {ratios[-1][1]:.3f}",
                flush=True,
            )
    finally:
        backend.close()

    if ratios:
        print(f"schedule {args.schedule}, {len(ratios)} passes: loop / saturated engine, median "
              f"{statistics.median(r[1] for r in ratios):.3f} (each: "
              + ", ".join(f"{r[1]:.3f}" for r in ratios) + "; target >= 0.95)")  # fmt: skip


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
