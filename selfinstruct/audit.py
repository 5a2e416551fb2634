"""Audit a run: what the filters threw away, why, and which pool instructions did the blocking.

`load_run(dir)` reads a run directory (tasks.jsonl, rejects.jsonl, manifest.json) or a `filter` output
directory (kept.jsonl, rejects.jsonl) through store.py's readers into an `AuditInput`; `summarize(inp)` is
pure: records in, one JSON-ready dict out. The terminal tables (cli/audit.py), `--json` and the HTML page
(report.py) all show this one dict, so they cannot disagree. This module knows nothing of the model or
of how a reject was decided.

A reject listed in the manifest's `readmitted` (a person overruled the filter, see readmit.py) is counted as
readmitted, never as rejected; once its task is in tasks.jsonl (at once when it had instances, after
classification and instances otherwise) it is counted as accepted.

`--json` schema, "selfinstruct.audit/1" (keys keep their meaning within a version; new keys may be added):

    schema        "selfinstruct.audit/1"
    source        the directory audited (str)
    kind          "run" (generate output) | "filter" (filter output)
    selection     {"stage": str|null, "reason": str|null, "limit": int}: the flags given
    totals        {"accepted", "rejected", "readmitted", "instances_dropped", "records": int,
                   "acceptance": float|null}
                  whole run, counted in candidates: rejected = candidates rejected as a whole (an instance
                  dropped from a task, or an unreadable block of an answer, is counted in instances_dropped); records = accepted + rejected
                  = the candidates decided; acceptance = accepted / records
    by_stage      [{"stage", "count", "share", "readmitted"}]  selected reject lines per stage, most first;
                  share = count / (totals.rejected + totals.instances_dropped), the reject lines;
                  readmitted = readmitted rejects of the stage (not in count)
    by_reason     [{"stage", "reason", "count", "share", "readmitted"}]  the same per reason code
    rounds        [{"round": int|null, "accepted", "rejected", "readmitted": int, "acceptance": float|null}]
                  whole run, by round ascending (null last: records without a round, e.g. a filter directory);
                  readmitted counts the accepted tasks of that round that were readmitted
    blockers      [{"neighbour_id", "neighbour": str|null, "count", "reasons": {reason: int},
                    "max_score": float|null}]  pool records that selected similarity rejects (evidence
                  with a `neighbour_id`) point at, most first, at most `limit`; neighbour: its text when known
    samples       [{"stage", "reason", "count", "rejects": [sample]}]  per reason, in by_reason order, the
                  first `limit` selected rejects in file order; sample = {"id", "round",
                  "instruction": str|null, "raw": str (at most 2,000 chars), "raw_chars": int,
                  "evidence": {...},
                  "neighbour": {"id", "text": str|null, "score": float|null} | null}
    readmitted    [{"reject_id", "task_id", "stage", "reason", "by", "time", "instruction": str|null}]
    histograms    {"rouge_max": {"edges": [21 floats 0..1], "accepted": [20 int], "rejected": [20 int],
                                 "threshold": float|null, "accepted_below_floor": int},
                   "instruction_words": {"edges": [0, 5, .., 155], "accepted": [31 int],
                                         "rejected": [31 int]}}
                  whole run. rouge_max: each record's highest ROUGE-L F against the pool (accepted tasks'
                  meta.rouge_max, ROUGE-L rejects' evidence.score); bin i is [edges[i], edges[i+1]), the last
                  bin includes 1.0; accepted_below_floor counts kept tasks whose maximum the filter only
                  bounded (below its report floor), which are not binned. instruction_words: words per instruction; the last bin also holds >= 150.

    coverage      {"verbs": {"instructions", "parsed", "distinct_verbs": int,
                             "verbs": [{"verb", "count", "objects": [{"noun", "count"}]}]},
                   "scores": {name: {"accepted": hist, "rejected": hist}},
                   "clusters": [{"size", "share", "id", "representative"}] | null}
                  accepted records only, recomputed from the files (coverage.py: the verb-object method and
                  its measured accuracy); scores: semantic_cosine, ifd, rating where any record has one,
                  hist = {"edges", "counts", "n", "mean"}; clusters only with `audit --clusters`

`--stage` and `--reason` select the rejects shown in by_stage, by_reason, blockers and samples; totals, rounds
and histograms always describe the whole run.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from selfinstruct.coverage import embed_clusters, meta_scores
from selfinstruct.coverage import summary as coverage_summary
from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.jsonl import iter_json_objects
from selfinstruct.schema import Readmission, Reject
from selfinstruct.store import KEPT, MANIFEST, REJECTS, TASKS, RunStore, filter_interrupted, read_jsonl

log = logging.getLogger(__name__)

SCHEMA = "selfinstruct.audit/1"
RAW_MAX = 2000
ROUGE_BINS = 20
WORD_BIN, WORD_CAP = 5, 150


@dataclass(frozen=True)
class Accepted:
    """An accepted record reduced to what the audit needs (a Task, or any record a filter kept)."""

    id: str
    instruction: str | None
    round: int | None = None
    rouge_max: float | None = None
    provenance: str = "generated"
    below_floor: bool = False  # the filter only knows the highest ROUGE-L is under its report floor
    scores: dict[str, float] = field(default_factory=dict)  # semantic / IFD / rating (coverage.meta_scores)


@dataclass
class AuditInput:
    source: str
    kind: Literal["run", "filter"]
    accepted: list[Accepted]
    rejects: list[Reject]
    readmitted: list[Readmission] = field(default_factory=list)
    pool_text: dict[str, str] = field(default_factory=dict)  # id -> instruction, to name neighbours


# ---------------------------------------------------------------------------------------------------- reading


def directory_kind(root: Path) -> Literal["run", "filter"]:
    """Tell a run directory from a filter output directory, or refuse a directory that is neither."""
    if not root.is_dir():
        raise InputError(root, "not a directory (expected a run directory or a `filter` output directory)")
    if (root / TASKS).exists() or (root / MANIFEST).exists():
        return "run"
    if (root / KEPT).exists():
        return "filter"
    if (root / REJECTS).exists():
        return "run"
    raise InputError(root, f"holds none of {TASKS}, {REJECTS}, {KEPT}: not a run or filter output directory")


def load_run(root: str | Path) -> AuditInput:
    """Read a run or filter output directory (read only: nothing is created or repaired)."""
    root = Path(root)
    kind = directory_kind(root)
    rejects = list(read_jsonl(root / REJECTS, Reject))
    if kind == "filter":
        if filter_interrupted(root):
            log.warning(
                "%s: the output of a filter that did not finish (stopped or killed): it covers only the records "
                "it reached; the same `selfinstruct filter` command run again redoes it",
                root,
            )
        kept = _read_kept(root / KEPT)
        return AuditInput(
            str(root), kind, kept, rejects, pool_text={a.id: a.instruction for a in kept if a.instruction}
        )
    # A bare RunStore (not .open()) only reads: opening would create files and repair tails of a live run.
    store = RunStore(root)
    tasks = list(store.tasks())
    manifest = store.manifest()
    pool = _seed_text(manifest.seeds.get("path") if manifest else None)
    pool.update({t.id: t.instruction for t in tasks})
    accepted = [
        Accepted(
            t.id,
            t.instruction,
            t.round,
            _score(t.meta.get("rouge_max")),
            t.provenance,
            bool((t.meta.get("rouge_max") or {}).get("below")),
            meta_scores(t.meta),
        )
        for t in tasks
    ]
    return AuditInput(str(root), kind, accepted, rejects, manifest.readmitted if manifest else [], pool)


def _read_kept(path: Path) -> list[Accepted]:
    from selfinstruct.seeds import to_task

    if path.stat().st_size == 0:
        return []
    out = []
    for line, obj in iter_json_objects(path, unfinished_tail=True):  # a killed filter tears a line
        try:  # the same content id `filter` gives a record, so reject evidence can name it
            rid = to_task(obj, file=path, line=line).id
        except InputError:
            rid = str(obj.get("id", f"{path.name}:{line}"))
        instruction = obj.get("instruction")
        meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
        out.append(
            Accepted(
                rid,
                instruction if isinstance(instruction, str) else None,
                None,
                _score(meta.get("rouge_max")),
                "kept",
                scores=meta_scores(meta),
            )
        )
    return out


def _seed_text(path: Any) -> dict[str, str]:
    """Seeds are pool members too (a rejected candidate's neighbour is often one); best effort, since the
    seed path in the manifest may be relative to wherever the run was started."""
    if not isinstance(path, str) or not Path(path).exists():
        return {}
    from selfinstruct.seeds import load_tasks

    try:
        return {t.id: t.instruction for t in load_tasks(path)}
    except SelfInstructError:
        return {}


def _score(value: Any) -> float | None:
    if isinstance(value, dict):
        if value.get(
            "below"
        ):  # only a bound (the true maximum is under the filter's report floor): not binned
            return None
        value = value.get("score")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------------------------------- summary


def instruction_of(reject: Reject) -> str | None:
    rec = reject.record or {}
    text = rec.get("instruction")
    return text if isinstance(text, str) else None


def similarity(reject: Reject, pool_text: dict[str, str]) -> dict | None:
    """The nearest pool record a similarity reject names, with its text and score; None for other rejects."""
    ev = reject.evidence
    nid = ev.get("neighbour_id")
    if nid is None:
        return None
    text = ev.get("neighbour") if isinstance(ev.get("neighbour"), str) else pool_text.get(str(nid))
    score = _score(ev.get("score", ev.get("jaccard", ev.get("cosine"))))
    return {"id": str(nid), "text": text, "score": score}


def _part(r: Reject) -> bool:
    """A reject of part of a candidate (one instance, one unreadable block of an answer), not of a candidate."""
    return "instance" in r.evidence or "block" in r.evidence


def _share(n: int, total: int) -> float | None:
    return n / total if total else None


def summarize(
    inp: AuditInput, *, stage: str | None = None, reason: str | None = None, limit: int = 5
) -> dict[str, Any]:
    """The audit as one JSON-ready dict (schema in the module docstring)."""
    if limit < 1:
        raise SelfInstructError(f"`limit` must be at least 1, got {limit}")
    readmitted_ids = {r.reject_id for r in inp.readmitted}
    live = [r for r in inp.rejects if r.id not in readmitted_ids]
    overruled = [r for r in inp.rejects if r.id in readmitted_ids]

    def chosen(r: Reject) -> bool:
        return (stage is None or r.stage == stage) and (reason is None or r.reason == reason)

    selected = [r for r in live if chosen(r)]
    # Candidates, not lines: an instance dropped from a task is a reject line of its own, but the candidate is
    # the task (kept with its other instances, or rejected once as a whole).
    dropped = sum(1 for r in live if _part(r))
    n_acc, n_rej = len(inp.accepted), len(live) - dropped
    totals = {
        "accepted": n_acc,
        "rejected": n_rej,
        "readmitted": len(inp.readmitted),
        "instances_dropped": dropped,
        "records": n_acc + n_rej,
        "acceptance": _share(n_acc, n_acc + n_rej),
    }

    back = [r for r in overruled if chosen(r)]
    # the tables count reject lines (a dropped instance is a line and a reason of its own): shares of lines
    by_stage = _group(selected, back, len(live), lambda r: (r.stage,), ("stage",))
    by_reason = _group(selected, back, len(live), lambda r: (r.stage, r.reason), ("stage", "reason"))
    of = defaultdict(list)  # (stage, reason) -> rejects in file order
    for r in selected:
        of[r.stage, r.reason].append(r)
    samples = []
    for row in by_reason:
        of_reason = of[row["stage"], row["reason"]]
        if of_reason:
            samples.append(
                {
                    "stage": row["stage"],
                    "reason": row["reason"],
                    "count": len(of_reason),
                    "rejects": [_sample(r, inp.pool_text) for r in of_reason[:limit]],
                }
            )
    by_id = {r.id: r for r in inp.rejects}
    return {
        "schema": SCHEMA,
        "source": inp.source,
        "kind": inp.kind,
        "selection": {"stage": stage, "reason": reason, "limit": limit},
        "totals": totals,
        "by_stage": by_stage,
        "by_reason": by_reason,
        "rounds": _rounds(inp.accepted, live),
        "blockers": _blockers(selected, inp.pool_text, limit),
        "samples": samples,
        "readmitted": [
            {
                **r.model_dump(),
                "instruction": instruction_of(by_id[r.reject_id]) if r.reject_id in by_id else None,
            }
            for r in inp.readmitted
        ],
        "histograms": _histograms(inp, live, overruled),
        "coverage": coverage_summary(
            [a.instruction for a in inp.accepted], [a.scores for a in inp.accepted], live
        ),
    }


def _group(
    selected: list[Reject], overruled: list[Reject], total: int, key, names: tuple[str, ...]
) -> list[dict]:
    counts, back = Counter(key(r) for r in selected), Counter(key(r) for r in overruled)
    rows = [
        {
            **dict(zip(names, k, strict=True)),
            "count": counts[k],
            "share": _share(counts[k], total),
            "readmitted": back[k],
        }
        for k in set(counts) | set(back)
    ]
    return sorted(rows, key=lambda row: (-row["count"], -row["readmitted"], *(row[n] for n in names)))


def _rounds(accepted: list[Accepted], live: list[Reject]) -> list[dict]:
    acc: Counter = Counter(a.round for a in accepted)
    back: Counter = Counter(a.round for a in accepted if a.provenance == "readmitted")
    rej: Counter = Counter(r.round for r in live if not _part(r))  # candidates, as totals
    keys = sorted(set(acc) | set(rej), key=lambda k: (k is None, k or 0))
    return [
        {
            "round": k,
            "accepted": acc[k],
            "rejected": rej[k],
            "readmitted": back[k],
            "acceptance": _share(acc[k], acc[k] + rej[k]),
        }
        for k in keys
    ]


def _blockers(selected: list[Reject], pool_text: dict[str, str], limit: int) -> list[dict]:
    rows: dict[str, dict] = {}
    for r in selected:
        near = similarity(r, pool_text)
        if near is None:
            continue
        row = rows.setdefault(
            near["id"],
            {
                "neighbour_id": near["id"],
                "neighbour": None,
                "count": 0,
                "reasons": Counter(),
                "max_score": None,
            },
        )
        row["count"] += 1
        row["reasons"][r.reason] += 1
        row["neighbour"] = row["neighbour"] or near["text"]
        if near["score"] is not None:
            row["max_score"] = max(row["max_score"] or 0.0, near["score"])
    top = sorted(rows.values(), key=lambda row: (-row["count"], row["neighbour_id"]))[:limit]
    return [{**row, "reasons": dict(row["reasons"].most_common())} for row in top]


def _sample(r: Reject, pool_text: dict[str, str]) -> dict:
    return {
        "id": r.id,
        "round": r.round,
        "instruction": instruction_of(r),
        "raw": r.raw[:RAW_MAX],
        "raw_chars": len(r.raw),
        "evidence": r.evidence,
        "neighbour": similarity(r, pool_text),
    }


def _histograms(inp: AuditInput, live: list[Reject], overruled: list[Reject]) -> dict:
    # A readmitted task lacks meta.rouge_max (it never passed the filter): its reject's score stands in.
    overruled_score = {
        str((r.record or {}).get("id")): _score(r.evidence.get("score"))
        for r in overruled
        if r.stage == "rouge"
    }
    acc_scores = [a.rouge_max if a.rouge_max is not None else overruled_score.get(a.id) for a in inp.accepted]
    rouge_rejects = [r for r in live if r.stage == "rouge"]
    rej_scores = [_score(r.evidence.get("score")) for r in rouge_rejects]
    thresholds = [_score(r.evidence.get("threshold")) for r in rouge_rejects]
    word_edges = list(range(0, WORD_CAP + 2 * WORD_BIN, WORD_BIN))
    return {
        "rouge_max": {
            "edges": [round(i / ROUGE_BINS, 4) for i in range(ROUGE_BINS + 1)],
            "accepted": _bin_scores(acc_scores),
            "rejected": _bin_scores(rej_scores),
            "threshold": next((t for t in thresholds if t is not None), None),
            "accepted_below_floor": sum(a.below_floor for a in inp.accepted),
        },
        "instruction_words": {
            "edges": word_edges,
            "accepted": _bin_words(a.instruction for a in inp.accepted),
            "rejected": _bin_words(instruction_of(r) for r in live),
        },
    }


def _bin_scores(scores: Iterable[float | None]) -> list[int]:
    counts = [0] * ROUGE_BINS
    for s in scores:
        if s is not None:
            counts[min(max(int(s * ROUGE_BINS), 0), ROUGE_BINS - 1)] += 1
    return counts


def _bin_words(texts: Iterable[str | None]) -> list[int]:
    counts = [0] * (WORD_CAP // WORD_BIN + 1)
    for t in texts:
        if t is not None:
            counts[min(len(t.split()) // WORD_BIN, len(counts) - 1)] += 1
    return counts


def audit(
    root: str | Path,
    *,
    stage: str | None = None,
    reason: str | None = None,
    limit: int = 5,
    clusters: bool = False,
) -> dict:
    """`load_run` then `summarize`: what `selfinstruct audit` prints. `clusters` embeds the kept
    instructions (loads the semantic stage's model) to fill coverage.clusters."""
    inp = load_run(root)
    for what, value in (("stage", stage), ("reason", reason)):
        known = sorted({getattr(r, what) for r in inp.rejects})
        if value is not None and value not in known:  # a typo would read as a stage that rejected nothing
            log.warning("%s: no reject has %s %r (it has: %s)", root, what, value, ", ".join(known) or "none")
    summary = summarize(inp, stage=stage, reason=reason, limit=limit)
    if clusters:
        kept = [a for a in inp.accepted if a.instruction]
        summary["coverage"]["clusters"] = embed_clusters([a.id for a in kept], [a.instruction for a in kept])
    return summary
