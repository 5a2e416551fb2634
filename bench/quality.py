"""Cost and quality of the issue-15 stages: semantic near-duplicates, IFD, the judge's rating, verb-object.

Run: .venv/bin/python bench/quality.py [--pool 50000] [--judge] [--json]
(HF_HUB_OFFLINE=1; --judge starts the in-process vLLM engine, about a minute on 2 cores.)

Measures, side by side in one run:
  per-example cost  semantic embedding (batches of 64), semantic query at --pool, IFD (batches of 8),
                    rating (one engine call for a batch), verb-object reading
  index at --pool   build and batch-query time of the exact numpy index, and of faiss-cpu's flat index and
                    usearch's HNSW graph when those are importable (they are not dependencies: install them
                    into a side folder and put it on PYTHONPATH to compare). Exact search time does not depend
                    on the vectors' values, so the pool is random unit vectors; embedding cost is measured on
                    real instructions and multiplied out for the pool.
  planted set       recall and precision of the semantic stage at several cuts on tests/data/paraphrases.jsonl,
                    ROC AUC, and ROUGE-L's on the same pairs.
Instructions come from ../shared/data/external (never copied here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = ROOT.parent / "shared" / "data" / "external"
sys.path.insert(0, str(ROOT))
import selfinstruct  # noqa: E402, F401  (vLLM's spawned engine processes rerun this module: die_with_parent)


def alpaca() -> list[dict]:
    return json.loads((EXTERNAL / "stanford_alpaca_pr152_alpaca_5000.json").read_text())


CPU: dict[str, float] = {}  # process CPU seconds of the last timed call, beside its wall time


def timed(fn, *args, **kw):
    """(result, wall seconds); the CPU seconds go to CPU["last"]: on a shared machine they move less."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    CPU["last"] = time.process_time() - c
    return out, time.perf_counter() - t


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


# ---------------------------------------------------------------------------------------------------------


def planted(embedder) -> dict:
    from selfinstruct.filters.rouge import rouge_l

    rows = [json.loads(line) for line in (ROOT / "tests/data/paraphrases.jsonl").read_text().splitlines()]
    a = embedder.encode([r["a"] for r in rows])
    b = embedder.encode([r["b"] for r in rows])
    cos = (a * b).sum(1)
    rouge = np.array([rouge_l(r["a"], r["b"]) for r in rows])
    para = np.array([r["paraphrase"] for r in rows])
    cuts = {}
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        hit = cos > t
        tp, fp = int((hit & para).sum()), int((hit & ~para).sum())
        cuts[str(t)] = {"recall": tp / para.sum(), "precision": tp / (tp + fp) if tp + fp else None, "fp": fp}
    hit = rouge > 0.7
    return {
        "pairs": int(len(rows)),
        "semantic": cuts,
        "semantic_auc": round(auc(cos[para], cos[~para]), 3),
        "cosine_paraphrase": [round(float(cos[para].min()), 3), round(float(np.median(cos[para])), 3)],
        "cosine_unrelated": [round(float(np.median(cos[~para])), 3), round(float(cos[~para].max()), 3)],
        "rouge_0.7": {
            "recall": float((hit & para).sum() / para.sum()),
            "flagged_unrelated": int((hit & ~para).sum()),
        },
        "rouge_auc": round(auc(rouge[para], rouge[~para]), 3),
    }


def index_costs(pool: int, batch: int = 64, queries: int = 1280) -> dict:
    from selfinstruct.filters.semantic import DIM, SemanticIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((pool, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((queries, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    out = {}
    index = SemanticIndex()
    _, t = timed(lambda: [index.add(str(i), "", x[i]) for i in range(pool)])
    _, tq = timed(lambda: [index.best(q[s : s + batch]) for s in range(0, queries, batch)])
    out["numpy_exact"] = {"build_s": round(t, 3), "query_ms_per_item": round(tq / queries * 1e3, 3)}
    try:
        import faiss

        fi = faiss.IndexFlatIP(DIM)
        _, t = timed(lambda: [fi.add(x[s : s + batch]) for s in range(0, pool, batch)])
        _, tq = timed(lambda: [fi.search(q[s : s + batch], 1) for s in range(0, queries, batch)])
        out["faiss_flat"] = {"build_s": round(t, 3), "query_ms_per_item": round(tq / queries * 1e3, 3)}
    except ImportError:
        out["faiss_flat"] = "not installed"
    try:
        from usearch.index import Index

        ui = Index(ndim=DIM, metric="cos", dtype="f32")
        _, t = timed(
            lambda: [
                ui.add(np.arange(s, min(s + batch, pool)), x[s : s + batch]) for s in range(0, pool, batch)
            ]
        )
        res, tq = timed(lambda: ui.search(q, 1))
        exact = (q @ x.T).argmax(1)
        out["usearch_hnsw"] = {
            "build_s": round(t, 3),
            "query_ms_per_item": round(tq / queries * 1e3, 3),
            "recall_at_1": float((res.keys[:, 0] == exact).mean()),
        }
    except ImportError:
        out["usearch_hnsw"] = "not installed"
    return out


def stage_costs(embedder, pool: int, judge: bool) -> dict:
    from selfinstruct.coverage import verb_object
    from selfinstruct.filters.config import IFDConfig, RatingConfig
    from selfinstruct.filters.ifd import IFDScorer
    from selfinstruct.filters.rating import rate
    from selfinstruct.schema import Instance, Task

    data = alpaca()
    texts = [d["instruction"] for d in data[:256]]
    embedder.encode(texts[:8])  # load the model outside the timing
    _, t = timed(embedder.encode, texts)
    out = {
        "semantic_embed_ms": round(t / len(texts) * 1e3, 2),
        "semantic_embed_cpu_ms": round(CPU["last"] / len(texts) * 1e3, 2),
    }
    out["semantic_embed_pool_s_estimate"] = round(t / len(texts) * pool, 1)
    _, t = timed(lambda: [verb_object(d["instruction"]) for d in data])
    out["verb_object_us"] = round(t / len(data) * 1e6, 1)
    scorer = IFDScorer(IFDConfig(batch_size=8))
    sample = [(d["instruction"], d["input"], d["output"]) for d in data[:16]]
    scorer.score_texts(sample[:2])
    _, t = timed(scorer.score_texts, sample)
    out["ifd_ms"] = round(t / len(sample) * 1e3, 1)
    out["ifd_cpu_ms"] = round(CPU["last"] / len(sample) * 1e3, 1)
    if judge:
        from selfinstruct.llm import make_backend

        backend, t_start = timed(make_backend, {"kind": "vllm", "enforce_eager": True, "max_model_len": 2048})
        try:
            tasks = [Task(id=f"a{i}", instruction=d["instruction"], instances=[Instance(input=d["input"], output=d["output"])])
                     for i, d in enumerate(data[:32])]  # fmt: skip
            rate(tasks[:2], backend, RatingConfig())
            rated, t = timed(rate, tasks, backend, RatingConfig())
        finally:
            backend.close()
        out["rating_ms"] = round(t / len(tasks) * 1e3, 1)  # the engine works in its own process: wall only
        out["rating_engine_start_s"] = round(t_start, 1)
        out["rating_parsed"] = sum(r.meta["rating"]["score"] is not None for r in rated) / len(rated)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--judge", action="store_true", help="Also time the rating on the in-process engine.")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--costs-only", action="store_true", help="Only the per-example costs.")
    args = ap.parse_args()
    from selfinstruct.filters.semantic import Embedder

    embedder = Embedder()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else None
    result = {"machine": "2-core AMD EPYC, 24 GiB, no GPU", "load_at_start": load}
    result["costs"] = stage_costs(embedder, args.pool, args.judge)
    if not args.costs_only:
        result["index"] = {"pool": args.pool, **index_costs(args.pool)}
        result["planted"] = planted(embedder)
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
