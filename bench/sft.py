"""SFT throughput, side by side in one run: `--compare batching` (naive padded batches in random order vs
length-grouped batches) or `--compare processes` (one process vs two under `torchrun`, gloo on CPU).

Method: the first N records of the external Alpaca 5K file, rendered with the embedded SmolLM2 tokenizer's
chat template and masked exactly as `selfinstruct train` does. Each strategy trains the same student from
the same initial weights through `selfinstruct.sft.train.train` (the transformers Trainer) for the same
number of optimizer steps and batch size; only `train_sampling_strategy` differs ("random" vs
"group_by_length"). A counting wrapper around our padding collator records the real (attended) and padded
tokens of every batch the Trainer consumes, so the non-pad share is measured, not estimated. Tokens/s is
real tokens over the wall time from the Trainer's train-begin to train-end events (model loading and
tokenizing excluded). Passes alternate
(random, grouped, random, grouped, ...) so load from anything else on the machine hits both alike; the
best of `--reps` is reported.

Processes: `selfinstruct train` itself runs as one process (batch B, accumulation 2A) and under
`torchrun --standalone --nproc_per_node 2` (batch B per process, accumulation A), so both take the same global
batch and the same number of optimizer steps over the same examples. Tokens/s is the Trainer's own count of
non-pad tokens over its `train_runtime` (the training loop alone), from metrics.jsonl. One process uses
torch's default threads (one per core); torchrun gives each of its processes one thread; both use the whole
machine. Runs alternate (1, 2, 1, 2, ...) and the best of `--reps` is reported.

Students: "tiny" is a randomly initialised 4-layer Llama (hidden 256) with the SmolLM2 vocabulary, fast
enough for a 2-core CPU; "embedded" is SmolLM2-135M-Instruct itself. Padding-free packing is not measured
here: it needs CUDA with a flash-attention kernel.

Run: .venv/bin/python bench/sft.py [--compare batching|processes] [--model tiny|embedded] [--examples 512]
                                 [--batch 8] [--steps 24] [--reps 1] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared/data/external/stanford_alpaca_pr152_alpaca_5000.json"
sys.path.insert(0, str(ROOT))
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_student(tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_once(model: Path, data: Path, strategy: str, batch: int, steps: int, max_length: int) -> dict:
    import selfinstruct.sft.train as sft_train
    from selfinstruct.sft.config import SFTConfig
    from selfinstruct.sft.data import PadCollator

    seen = {"real": 0, "padded": 0, "batches": 0}

    class CountingPad(PadCollator):
        def __call__(self, rows):
            b = super().__call__(rows)
            seen["real"] += int(b["attention_mask"].sum())
            seen["padded"] += b["input_ids"].numel()
            seen["batches"] += 1
            return b

    sft_train.PadCollator = CountingPad
    from transformers import TrainerCallback

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):  # our own clock around the training loop, loading excluded
        def on_train_begin(self, args, state, control, **kwargs):
            clock["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            clock["end"] = time.perf_counter()

    config = SFTConfig(
        model=str(model),
        max_length=max_length,
        trainer={
            "train_sampling_strategy": strategy,
            "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": 1,
            "save_strategy": "no",
            "seed": 0,
            "dataloader_num_workers": 0,
        },
    )
    with tempfile.TemporaryDirectory() as out:
        result = sft_train.train(config, data, out, max_steps=steps, fresh=True, callbacks=[Clock()])
    runtime = clock["end"] - clock["start"]
    return {
        "strategy": strategy,
        "steps": result.steps,
        "batches": seen["batches"],
        "real_tokens": seen["real"],
        "padded_tokens": seen["padded"],
        "non_pad_share": round(seen["real"] / seen["padded"], 4),
        "train_seconds": round(runtime, 2),
        "tokens_per_s": round(seen["real"] / runtime, 1),
        "padded_tokens_per_s": round(seen["padded"] / runtime, 1),
        "final_loss": result.final_loss,
    }


def run_processes(
    model: Path,
    data: Path,
    nproc: int,
    batch: int,
    steps: int,
    max_length: int,
    tmp: Path,
    threads: int | None,
) -> dict:
    """`selfinstruct train` in `nproc` processes with the same global batch; tokens/s from metrics.jsonl."""
    accumulation = 2 // nproc  # 1 process: 2 micro-batches per step; 2 processes: 1 each
    cfg = tmp / f"p{nproc}.yaml"
    cfg.write_text(
        "trainer:\n"
        f"  per_device_train_batch_size: {batch}\n  gradient_accumulation_steps: {accumulation}\n"
        "  save_strategy: 'no'\n  seed: 0\n  train_sampling_strategy: sequential\n"
    )
    out = tmp / f"out-p{nproc}"
    args = [
        "-m",
        "selfinstruct",
        "train",
        "-d",
        str(data),
        "-o",
        str(out),
        "--model",
        str(model),
        "-c",
        str(cfg),
    ]
    args += ["--max-steps", str(steps), "--max-length", str(max_length), "--json", "--fresh"]
    launcher = [sys.executable]
    if nproc > 1:
        launcher = [
            str(Path(sys.executable).parent / "torchrun"),
            "--standalone",
            f"--nproc_per_node={nproc}",
        ]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torchrun sets 1 per process itself
    res = subprocess.run(launcher + args, capture_output=True, text=True, cwd=ROOT, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{nproc}-process run failed:\n{res.stderr[-3000:]}")
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    final = next(r for r in reversed(rows) if "train_runtime" in r and "train_loss" in r)
    tokens = final["num_input_tokens_seen"]
    return {
        "processes": nproc,
        "threads_per_process": threads or (1 if nproc > 1 else torch_threads()),
        "steps": final["step"],
        "tokens": tokens,
        "train_seconds": round(final["train_runtime"], 2),
        "tokens_per_s": round(tokens / final["train_runtime"], 1),
        "final_loss": json.loads(res.stdout)["final_loss"],
    }


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def compare_processes(args, model: Path, data: Path, tmp: Path, machine: str) -> None:
    # (processes, OMP threads): one process with torch's default threads and with one thread, then two.
    variants = [(1, None), (1, 1), (2, None)]
    best: dict[tuple, dict] = {}
    for _ in range(args.reps):
        for nproc, threads in variants:
            r = run_processes(model, data, nproc, args.batch, args.steps, args.max_length, tmp, threads)
            key = (nproc, threads)
            if key not in best or r["tokens_per_s"] > best[key]["tokens_per_s"]:
                best[key] = r
    report = {
        "machine": machine,
        "model": args.model,
        "examples": args.examples,
        "batch_per_process": args.batch,
        "global_batch": 2 * args.batch,
        "steps": args.steps,
        "results": list(best.values()),
        "two_over_one_tokens_per_s": round(
            best[(2, None)]["tokens_per_s"] / best[(1, None)]["tokens_per_s"], 2
        ),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"# SFT processes, {machine}, student {args.model}, {args.examples} Alpaca examples, global batch "
        f"{2 * args.batch}, {args.steps} steps"
    )
    print("| processes | threads each | tokens | train s | tokens/s | final loss |")
    print("|---|---|---|---|---|---|")
    for r in report["results"]:
        print(
            f"| {r['processes']} | {r['threads_per_process']} | {r['tokens']} | {r['train_seconds']} | "
            f"{r['tokens_per_s']} | {r['final_loss']:.3f} |"
        )
    print(f"\n2 processes / 1 process (default threads) tokens/s: {report['two_over_one_tokens_per_s']}x")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", choices=["batching", "processes"], default="batching")
    p.add_argument("--model", choices=["tiny", "embedded"], default="tiny")
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        # On a shared machine, fewer threads than cores keeps OpenMP threads from spinning while one is
        # descheduled.
        torch.set_num_threads(args.threads)
    from selfinstruct.models import default_model_dir

    embedded = ROOT / default_model_dir()  # an absolute directory stays as it is
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "alpaca.json"
        data.write_text(json.dumps(json.loads(ALPACA.read_text())[: args.examples]))
        model = embedded if args.model == "embedded" else tiny_student(embedded, tmp / "tiny")
        if args.compare == "processes":
            machine = (
                f"{os.cpu_count()}-core CPU, torch {torch.__version__}, cuda={torch.cuda.is_available()}"
            )
            compare_processes(args, model, data, tmp, machine)
            return
        best: dict[str, dict] = {}
        for _ in range(args.reps):
            for strategy in ("random", "group_by_length"):
                r = run_once(model, data, strategy, args.batch, args.steps, args.max_length)
                if strategy not in best or r["tokens_per_s"] > best[strategy]["tokens_per_s"]:
                    best[strategy] = r
    report = {
        "machine": f"{os.cpu_count()}-core CPU ({torch.get_num_threads()} torch threads), "
        f"torch {torch.__version__}, "
        f"GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
        "model": args.model,
        "examples": args.examples,
        "batch": args.batch,
        "steps": args.steps,
        "results": list(best.values()),
        "speedup_tokens_per_s": round(
            best["group_by_length"]["tokens_per_s"] / best["random"]["tokens_per_s"], 2
        ),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"# SFT batching, {report['machine']}, student {args.model}, {args.examples} Alpaca examples, "
        f"batch {args.batch}, {args.steps} steps"
    )
    print("| batches | non-pad share | real tokens | padded tokens | train s | real tokens/s | final loss |")
    print("|---|---|---|---|---|---|---|")
    for r in report["results"]:
        print(
            f"| {r['strategy']} | {r['non_pad_share']:.1%} | {r['real_tokens']} | {r['padded_tokens']} | "
            f"{r['train_seconds']} | {r['tokens_per_s']} | {r['final_loss']:.3f} |"
        )
    print(f"\nlength-grouped / random tokens/s: {report['speedup_tokens_per_s']}x")


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
