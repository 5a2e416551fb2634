"""IFD scoring throughput on the machine's devices, side by side in one run: the same Alpaca examples scored
on the CPU and, where there is one, on the CUDA GPU, at several batch sizes.

IFD costs two forwards of the scoring model per example (conditioned on the instruction, and the answer
alone; `selfinstruct/filters/ifd.py`). Scores do not depend on the batch size; each run's scores are checked
against the first run's (to 1e-3), so a faster setting that changes them would be reported as a failure, not
a win. Examples: the first --examples records of the external Alpaca 5K file (never copied here). The model is
the embedded one ($SELFINSTRUCT_MODEL_DIR to point elsewhere); speed does not depend on its weights.

Run: .venv/bin/python bench/ifd.py [--examples 256] [--cpu-examples 16] [--batches 8,32,64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared/data/external/stanford_alpaca_pr152_alpaca_5000.json"
sys.path.insert(0, str(ROOT))
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(device: str, batch: int, triples: list[tuple[str, str, str]]) -> tuple[dict, list]:
    import torch

    from selfinstruct.filters.config import IFDConfig
    from selfinstruct.filters.ifd import IFDScorer
    from selfinstruct.models import default_model_dir

    scorer = IFDScorer(IFDConfig(model=str(ROOT / default_model_dir()), device=device, batch_size=batch))
    scorer.score_texts(triples[:batch])  # load and warm up outside the clock
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    scores = scorer.score_texts(triples)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "device": device,
        "batch": batch,
        "examples": len(triples),
        "seconds": round(seconds, 3),
        "examples_per_s": round(len(triples) / seconds, 2),
    }, [s["ifd"] for s in scores]


def _max_diff(a: list, b: list) -> float:
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
    return round(max((abs(x - y) for x, y in pairs), default=0.0), 5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=256)
    p.add_argument("--cpu-examples", type=int, default=16, help="examples on the CPU (it is slow)")
    p.add_argument("--batches", default="8,32,64")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    records = json.loads(ALPACA.read_text(encoding="utf-8"))[: args.examples]
    triples = [(r["instruction"], r["input"], r["output"]) for r in records]
    runs = [("cpu", 8, triples[: args.cpu_examples])]
    if torch.cuda.is_available():
        runs += [("cuda", int(b), triples) for b in args.batches.split(",")]
    rows, scores = [], []
    for device, batch, chosen in runs:
        row, ifd = run(device, batch, chosen)
        # against the CPU on the examples both scored, and against the first GPU run on all of them
        row["max_diff_vs_cpu"] = _max_diff(scores[0], ifd) if scores else 0.0
        row["max_diff_vs_first_gpu"] = _max_diff(scores[1], ifd) if len(scores) > 1 else 0.0
        row["same_scores"] = max(row["max_diff_vs_cpu"], row["max_diff_vs_first_gpu"]) <= 1e-3
        rows.append(row)
        scores.append(ifd)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    report = {"machine": f"{os.cpu_count()}-core CPU, GPU {gpu}, torch {torch.__version__}", "results": rows}
    if args.json:
        print(json.dumps(report))
        return
    print(f"# IFD scoring, {report['machine']}, {args.examples} Alpaca examples (CPU: {args.cpu_examples})")
    print(
        "| device | batch | examples | seconds | examples/s | max IFD diff vs CPU | vs first GPU run | same |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['device']} | {r['batch']} | {r['examples']} | {r['seconds']} | {r['examples_per_s']} | "
            f"{r['max_diff_vs_cpu']} | {r['max_diff_vs_first_gpu']} | {r['same_scores']} |"
        )
    cpu = rows[0]["examples_per_s"]
    for r in rows[1:]:
        print(f"cuda batch {r['batch']} / cpu examples/s: {r['examples_per_s'] / cpu:.1f}x")


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():
        main()
