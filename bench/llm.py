"""Generation throughput: the same prompts through raw `vllm.LLM.generate`, through our in-process `vllm`
backend, and through our `openai` backend against `vllm serve`, in one run. Targets: vllm >= 0.97 x raw,
openai >= 0.90 x raw.

Method: N instruction-generation chat prompts built from the Self-Instruct seed tasks (3 random seed
instructions each, fixed RNG). Every request samples at temperature 0.7 with its own seed, `max_tokens` fixed
and `ignore_eos` on, so every path generates exactly N x max_tokens tokens and tokens/s compare like for
like. Prefix caching is off in every path, so no pass reuses an earlier pass's prefill (the prompts repeat
across passes; real bootstrap prompts do not). Raw and ours share one engine and alternate (raw, ours, raw,
ours, ...) so load from anything else on the machine hits both alike. The server runs after that engine is
closed (never two engines at once) with the same scheduler limits (max_num_seqs, max_num_batched_tokens).
Each path is warmed up first; best and median of `--reps` passes are reported.

Run: .venv/bin/python bench/llm.py [--prompts 256] [--max-tokens 32] [--reps 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # keep the table readable; the server logs to a file


def build_messages(n: int, rng_seed: int = 0) -> list[list[dict[str, str]]]:
    from selfinstruct.seeds import load_tasks

    seeds = [t.instruction for t in load_tasks(ROOT / "seeds" / "seed_tasks.jsonl")]
    rng = random.Random(rng_seed)
    convs = []
    for _ in range(n):
        shown = "\n".join(f"{k}. {t}" for k, t in enumerate(rng.sample(seeds, 3), 1))
        text = (
            "Below are a few tasks someone might ask an assistant to do.\n"
            f"{shown}\n"
            "Write one more task of your own, on a different topic from all of the above. "
            "Reply with the task only.\n4."
        )
        convs.append([{"role": "user", "content": text}])
    return convs


def timed(fn) -> tuple[int, float]:
    t0 = time.perf_counter()
    tokens = fn()
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the embedded model)")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()

    from vllm import SamplingParams

    from selfinstruct.llm import OpenAIBackend, Request, Sampling
    from selfinstruct.llm.server import start_server
    from selfinstruct.llm.vllm_engine import VLLMBackend
    from selfinstruct.models import default_model_dir

    model = Path(args.model or default_model_dir())
    model = str(model if model.is_absolute() else ROOT / model)
    convs = build_messages(args.prompts)
    sampling = [Sampling(temperature=0.7, max_tokens=args.max_tokens, seed=i) for i in range(len(convs))]
    requests = [
        Request(id=str(i), messages=tuple(c), sampling=s)
        for i, (c, s) in enumerate(zip(convs, sampling, strict=True))
    ]
    expected = len(convs) * args.max_tokens
    passes: dict[str, list[float]] = {"raw": [], "vllm": [], "openai": []}
    loads: dict[str, list[float]] = {"raw": [], "vllm": [], "openai": []}

    def record(path: str, tokens: int, seconds: float) -> None:
        assert tokens == expected, f"{path}: {tokens} tokens, expected {expected}"
        rate = tokens / seconds
        passes[path].append(rate)
        # the machine is shared: the 1-minute load average says how much else ran during the pass
        load = os.getloadavg()[0]
        print(
            f"  {path:7s} {tokens} tokens in {seconds:6.1f} s = {rate:6.1f} tok/s, load {load:.1f}",
            file=sys.stderr,
        )
        loads[path].append(round(load, 1))

    # --- in-process: raw vllm.LLM.generate vs our backend, on one engine ------------------------------------
    backend = VLLMBackend(
        model,
        enforce_eager=True,
        max_model_len=2048,
        seed=0,
        extra_sampling={"ignore_eos": True},
        engine_kwargs={"enable_prefix_caching": False},
    )
    llm = backend.llm
    tok = llm.get_tokenizer()
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    params = [
        SamplingParams(
            temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed, ignore_eos=True
        )
        for s in sampling
    ]

    def raw() -> int:
        outs = llm.generate(texts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    def ours(b) -> int:
        out = b.generate(requests)
        assert all(c.ok for c in out), [c.error for c in out if not c.ok][:3]
        return sum(c.completion_tokens for c in out)

    llm.generate(texts[:16], params[:16], use_tqdm=False)  # warm-up
    backend.generate(requests[:16])
    for _ in range(args.reps):
        record("raw", *timed(raw))
        record("vllm", *timed(lambda: ours(backend)))
    # vLLM's CPU defaults differ by entry point (LLM: 256 seqs, 4096 tokens a step; api_server: 128, 2048),
    # so the server gets the in-process engine's limits explicitly: same engine, only the transport differs.
    sched = llm.llm_engine.vllm_config.scheduler_config
    same_engine = [
        "--max-num-seqs",
        str(sched.max_num_seqs),
        "--max-num-batched-tokens",
        str(sched.max_num_batched_tokens),
    ]
    backend.close()
    llm = None  # drop our reference too, so the engine's memory is freed before the server starts

    # --- HTTP: our openai backend against vllm serve (same engine settings) ---------------------------------
    with start_server(
        model, max_model_len=2048, extra_args=["--no-enable-prefix-caching", *same_engine]
    ) as server:
        http = OpenAIBackend(
            server.model_name,
            base_urls=server.base_url,
            concurrency=len(requests),  # the whole batch in flight, as the in-process engine gets it
            timeout_s=1800,
            extra_body={"ignore_eos": True},
        )
        http.generate(requests[:16])  # warm-up
        for _ in range(args.reps):
            record("openai", *timed(lambda: ours(http)))

    best = {k: max(v) for k, v in passes.items()}
    med = {k: statistics.median(v) for k, v in passes.items()}
    # raw and ours alternate, so each pair shared the same background load: the median pair ratio is the
    # figure least moved by other work on the machine
    paired = statistics.median(o / r for r, o in zip(passes["raw"], passes["vllm"], strict=True))
    result = {
        "machine": f"{os.cpu_count()}-core CPU, no GPU",
        "prompts": len(convs),
        "max_tokens": args.max_tokens,
        "tokens_per_pass": expected,
        "reps": args.reps,
        "best_tok_per_s": {k: round(v, 1) for k, v in best.items()},
        "median_tok_per_s": {k: round(v, 1) for k, v in med.items()},
        "passes_tok_per_s": {k: [round(x, 1) for x in v] for k, v in passes.items()},
        "passes_load_avg": loads,
        "ratio_vllm_over_raw_best": round(best["vllm"] / best["raw"], 3),
        "ratio_vllm_over_raw_paired_median": round(paired, 3),
        "ratio_openai_over_raw_best": round(best["openai"] / best["raw"], 3),
        "ratio_openai_over_raw_median": round(med["openai"] / med["raw"], 3),
        "targets": {"vllm": 0.97, "openai": 0.90},
    }
    if args.json:
        print(json.dumps(result))
        return
    r = result
    print(f"| path | tok/s best of {args.reps} | tok/s median | ratio to raw (best / median) | target |")
    print("|---|---|---|---|---|")
    print(f"| raw vllm.LLM.generate | {best['raw']:.1f} | {med['raw']:.1f} | 1 | |")
    print(
        f"| our vllm backend | {best['vllm']:.1f} | {med['vllm']:.1f} | {r['ratio_vllm_over_raw_best']:.3f}"
        f" / {r['ratio_vllm_over_raw_paired_median']:.3f} (paired) | >= 0.97 |"
    )
    print(
        f"| our openai backend + vllm serve | {best['openai']:.1f} | {med['openai']:.1f} | "
        f"{r['ratio_openai_over_raw_best']:.3f} / {r['ratio_openai_over_raw_median']:.3f} | >= 0.90 |"
    )
    print(f"{len(convs)} prompts x {args.max_tokens} tokens (ignore_eos), {r['machine']}; load: {loads}")


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
