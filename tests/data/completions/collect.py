"""Record real completions of the embedded model for every prompt the loop sends, as parser fixtures.

One in-process vLLM CPU engine (the embedded SmolLM2-135M-Instruct), one `generate` call per stage and style
(100 prompts each), the prompts rendered by `selfinstruct.prompts` exactly as the loop renders them, with the
quickstart recipe's sampling (instructions: T 0.7, top_p 0.95, 256 tokens, frequency penalty 0.3; classify:
greedy, 4 tokens; instances: T 0.7, top_p 0.95, 192 tokens) and, for Alpaca examples, the default sampling's
384 tokens (the alpaca recipe's 3072 would mostly record runaway text from a 135M model). Every request has
its own seed, so a rerun on the same vLLM version gives the same text.

Writes tests/data/completions/{instructions,classify,instances,examples}.jsonl, one object a line:
  style, text, finish (stop | length), and what parsing needs: first_number (raw instruction prompts end with
  it), prefix (raw Alpaca prompts end with "Instruction:"), output_first (instance layout), instruction.
Prompts are not stored (they are big and the templates are hashed in the manifest anyway).

Run once, it takes minutes:  nice -n 10 .venv/bin/python tests/data/completions/collect.py [STAGE ...]
(on the 2 shared cores: instructions 463 s, classify 77 s, instances 325 s, examples 831 s).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PER_STYLE = 100


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from selfinstruct import prompts
    from selfinstruct.llm.base import Request, Sampling
    from selfinstruct.llm.vllm_engine import VLLMBackend
    from selfinstruct.seeds import load_tasks

    seeds = load_tasks(ROOT / "seeds" / "seed_tasks.jsonl")
    rng = random.Random(11)
    model = ROOT / "data" / "models" / "smollm2-135m-instruct"
    backend = VLLMBackend(str(model), enforce_eager=True, max_model_len=2048, seed=0)
    samplings = {
        "instructions": Sampling(temperature=0.7, top_p=0.95, max_tokens=256, frequency_penalty=0.3),
        "classify": Sampling(temperature=0.0, max_tokens=4),
        "instances": Sampling(temperature=0.7, top_p=0.95, max_tokens=192),
        "examples": Sampling(temperature=0.7, top_p=0.95, max_tokens=384, frequency_penalty=0.3),
    }
    cls = [s for s in seeds if s.is_classification]
    open_ = [s for s in seeds if not s.is_classification]
    wanted = sys.argv[1:] or list(samplings)
    for stage, sampling in samplings.items():
        if stage not in wanted:
            continue
        rows, requests = [], []
        for style in ("raw", "chat"):
            for k in range(PER_STYLE):
                meta: dict = {"style": style}
                if stage == "instructions":
                    shown = rng.sample(seeds, 8)
                    p = prompts.instruction_prompt(shown, 8, style)
                    if style == "raw":
                        meta["first_number"] = len(shown) + 1
                elif stage == "classify":
                    task = seeds[(k + PER_STYLE * (style == "chat")) % len(seeds)]
                    p = prompts.classify_prompt(task.instruction, style)
                    meta["instruction"] = task.instruction
                elif stage == "instances":
                    output_first = k % 3 == 0  # a third classification, as in a real pool
                    pool = cls if output_first else open_
                    task = rng.choice(pool)
                    shots = [s for s in pool if s.id != task.id][:2]
                    p = prompts.instance_prompt(task, shots, output_first, style, n_examples=5)
                    meta |= {"instruction": task.instruction, "output_first": output_first}
                else:
                    shots = rng.sample(seeds, 3)
                    p = prompts.alpaca_prompt(shots, 5, style)
                    if style == "raw":
                        meta["prefix"] = "Instruction:"
                key = "messages" if isinstance(p.content, tuple) else "prompt"
                s = sampling.model_copy(update={"seed": 1000 * len(rows) + 7, "stop": p.stop})
                requests.append(Request(id=f"{stage}-{len(rows)}", sampling=s, **{key: p.content}))
                rows.append(meta)
        t0 = time.perf_counter()
        done = backend.generate(requests)
        took = time.perf_counter() - t0
        with (HERE / f"{stage}.jsonl").open("w", encoding="utf-8") as f:
            for meta, comp in zip(rows, done, strict=True):
                if not comp.ok:
                    continue
                rec = {**meta, "finish": comp.finish_reason, "text": comp.text}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        tokens = sum(c.completion_tokens for c in done)
        print(f"{stage}: {len(done)} completions, {tokens} tokens, {took:.0f} s", flush=True)
    backend.close()


if __name__ == "__main__":
    main()
