"""Filter an existing dataset file: the library side of `selfinstruct filter`.

Reads any shape `seeds.iter_tasks` accepts (Alpaca JSON array, JSONL of examples, Self-Instruct tasks), runs
the chain in input order, and appends `kept.jsonl` (the original records, fields unchanged; a task-shaped
record loses only the instances the heuristics dropped) and `rejects.jsonl` (record, stage, reason, evidence).
Both files are append-only, flushed and fsynced after every chunk (store.JsonlAppender). `filter.json` says
whether they are whole: written with "complete": false before the first record and rewritten with the counts
at the end, so an interrupted filter's output is never taken for a finished one (`audit` says so) and the same
command run again redoes it from the start; a finished output is never replaced. One filter writes a folder at
a time (it holds `filter.lock`, an flock the OS drops on any exit), never a run's folder, and never a folder
its own input is in or a file of it: a redo would empty its input before reading it.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.filters.chain import FilterChain
from selfinstruct.filters.config import FilterConfig
from selfinstruct.schema import Reject, Task, content_id
from selfinstruct.seeds import iter_tasks
from selfinstruct.stats import Stats
from selfinstruct.store import (
    FILTER_LOCK,
    FILTERED,
    KEPT,
    REJECTS,
    JsonlAppender,
    filter_interrupted,
    hold_lock,
    refuse_run_folder,
    refuse_unless_plain,
    write_json_atomic,
)

_CHUNK = 4096  # records per chain call: one fsync each, and the progress step
_OWN = (KEPT, REJECTS, FILTERED, FILTER_LOCK)  # the files a filter writes in its --out folder


@dataclass
class FilterSummary:
    records: int = 0
    kept: int = 0
    rejected: int = 0
    malformed: int = 0
    reasons: Counter = field(default_factory=Counter)  # every reject line by reason, instance drops included
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: Stats) -> FilterSummary:
        """The chain's counts (`total`, `kept`, `rejected`, `rejected_<reason>`), malformed lines included."""
        c = stats.counts
        reasons = Counter({k.removeprefix("rejected_"): n for k, n in c.items() if k.startswith("rejected_")})
        return cls(
            records=c["total"],
            kept=c["kept"],
            rejected=c["rejected"],
            malformed=c["rejected_malformed"],
            reasons=reasons,
            timings=dict(stats.timings),
        )

    def as_dict(self) -> dict:
        counts = {
            "records": self.records,
            "kept": self.kept,
            "rejected": self.rejected,
            "malformed": self.malformed,
        }
        timings = {k: round(v, 3) for k, v in self.timings.items()}
        return {**counts, "reasons": dict(self.reasons.most_common()), "timings": timings}


def filter_file(
    path: str | Path,
    out: str | Path,
    config: FilterConfig | None = None,
    *,
    skip_bad_lines: bool = False,
    progress: Callable[[int], None] | None = None,
    judge: Any = None,
    trusted: Callable[[dict], bool] | None = None,
) -> FilterSummary:
    """Filter `path` into `out`; with IFD or rating on, kept records wait for the whole set to be scored."""
    out = Path(out)
    _refuse_own_output(Path(path), out)
    refuse_run_folder(out)
    for name in _OWN:
        refuse_unless_plain(out / name, "choose another --out")
    created = [p for p in (*reversed(out.parents), out) if not p.exists()]
    fresh = [out / name for name in _OWN if not (out / name).exists()]
    out.mkdir(parents=True, exist_ok=True)
    busy = "{}: another filter (pid {}) is writing this folder; wait for it to finish or stop it"
    lock = hold_lock(out / FILTER_LOCK, lambda pid: SelfInstructError(busy.format(out, pid)))
    state = {"input": str(path), "complete": False}
    started = False
    try:
        redo = filter_interrupted(out)  # asked under the lock: no other filter is changing the answer
        for name in (KEPT, REJECTS):
            if (out / name).exists() and (out / name).stat().st_size and not redo:
                raise SelfInstructError(f"{out / name} already exists; choose another --out or remove it")
        started = True
        write_json_atomic(out / FILTERED, state)
        for name in (KEPT, REJECTS) if redo else ():  # an interrupted filter's own lines: started again
            if (out / name).exists():  # killed before it created them, there are none
                os.truncate(out / name, 0)
        summary = _filter_into(
            path, out, config, skip_bad_lines=skip_bad_lines, progress=progress, judge=judge, trusted=trusted
        )
    except BaseException as e:
        # Refused, or bad input, leaves nothing behind (issue 11): no half-written outputs to clean up.
        if not started or isinstance(e, InputError):
            _remove(fresh, created)
        raise
    else:
        write_json_atomic(out / FILTERED, {**state, "complete": True, **summary.as_dict()})
    finally:
        os.close(lock)  # after the removals: no other filter sees the folder half cleaned
    return summary


def _refuse_own_output(path: Path, out: Path) -> None:
    """Refuse an input that this filter's output would change under it: one of the output's own files (a redo
    of an interrupted output empties them before reading), or a folder the output is in (read back as input)."""
    if path.is_dir() and (out.resolve() == path.resolve() or path.resolve() in out.resolve().parents):
        raise SelfInstructError(f"{out}: is inside the input folder {path}; choose an --out outside it")
    for name in _OWN:
        if path.exists() and (out / name).exists() and path.samefile(out / name):  # links and hard links too
            alias = "" if path == out / name else f" ({out / name})"
            raise SelfInstructError(
                f"{path}: is one of this filter's own output files{alias}; choose another --out"
            )


def _remove(files: list[Path], folders: list[Path]) -> None:
    """Remove what this filter created, newest first; a folder something else has since put a file in stays."""
    for file in files:
        file.unlink(missing_ok=True)
    for p in reversed(folders):
        with contextlib.suppress(OSError):
            p.rmdir()


def _filter_into(
    path: str | Path,
    out: Path,
    config: FilterConfig | None,
    *,
    skip_bad_lines: bool,
    progress: Callable[[int], None] | None,
    judge: Any = None,
    trusted: Callable[[dict], bool] | None = None,
) -> FilterSummary:
    chain = FilterChain(config)
    counts = chain.stats.counts
    scoring = chain.config.ifd is not None or chain.config.rating is not None
    held: list[tuple[dict, list[int], Task]] = []  # chain-kept records waiting for IFD / rating
    bad: list[InputError] | None = [] if skip_bad_lines else None
    with JsonlAppender(out / KEPT) as kept_f, JsonlAppender(out / REJECTS) as rej_f:

        def flush(chunk: list[tuple[int, dict, Task]]) -> None:
            if trusted is not None:  # kept unchecked (a person readmitted them), but pooled in input order
                for part, keep in _runs(chunk, lambda item: trusted(item[1])):
                    if keep:
                        chain.add([t for _, _, t in part])
                        chain.stats.count("total", len(part))
                        chain.stats.count("kept", len(part))
                        for _, original, _ in part:
                            kept_f.write(original)
                    else:
                        check(part)
            else:
                check(chunk)
            finish_chunk()

        def check(chunk: list[tuple[int, dict, Task]]) -> None:
            for (_, original, _), v in zip(chunk, chain.run([t for _, _, t in chunk]), strict=True):
                if v.kept and scoring:
                    held.append((original, v.kept_instances, v.task))
                elif v.kept:
                    kept_f.write(_kept_record(original, v.kept_instances))
                for r in v.rejects:
                    rej_f.write(_with_original(r, original))

        def finish_chunk() -> None:
            for e in bad or []:
                # Counted apart from `rejected`: a malformed line never reached the chain (`total`).
                chain.stats.count("rejected_malformed")
                rej_f.write(_malformed(e))
            if bad:
                bad.clear()
            kept_f.sync()
            rej_f.sync()
            if progress:
                progress(counts["total"] + counts["rejected_malformed"])

        chunk: list[tuple[int, dict, Task]] = []
        for item in iter_tasks(path, bad_lines=bad):
            chunk.append(item)
            if len(chunk) >= _CHUNK:
                flush(chunk)
                chunk = []
        flush(chunk)
        if scoring:
            _score_held(held, chain, judge, kept_f, rej_f)
    return FilterSummary.from_stats(chain.stats)


def _score_held(
    held: list, chain: FilterChain, judge: Any, kept_f: JsonlAppender, rej_f: JsonlAppender
) -> None:
    from selfinstruct.filters.scoring import score_and_select

    # Ids can repeat in a user's file; positions keep every record apart.
    tasks = [t.model_copy(update={"id": f"{i}:{t.id}"}) for i, (_, _, t) in enumerate(held)]
    kept, rejects = score_and_select(tasks, chain.config, judge=judge, stats=chain.stats)
    chain.stats.counts["kept"] -= len(rejects)
    by_pos = {int(t.id.split(":", 1)[0]): t for t in kept}
    for pos, (original, kept_instances, _) in enumerate(held):
        if pos in by_pos:
            scores = {k: by_pos[pos].meta[k] for k in ("ifd", "rating") if k in by_pos[pos].meta}
            if scores and isinstance(original.get("meta"), dict):  # a task-shaped record keeps its scores
                original = {**original, "meta": {**original["meta"], **scores}}
            kept_f.write(_kept_record(original, kept_instances))
    for r in rejects:
        pos, task_id = r.record["id"].split(":", 1)
        original = held[int(pos)][0]
        r = r.model_copy(update={"record": {**r.record, "id": task_id}})
        rej_f.write(_with_original(r, original))
    kept_f.sync()
    rej_f.sync()


def _runs(items: list, key: Callable) -> list[tuple[list, bool]]:
    """Consecutive runs of items with the same key, in order."""
    out: list[tuple[list, bool]] = []
    for item in items:
        k = bool(key(item))
        if out and out[-1][1] == k:
            out[-1][0].append(item)
        else:
            out.append(([item], k))
    return out


def _kept_record(original: dict, kept_instances: list[int]) -> dict:
    if "instances" in original and len(kept_instances) < len(original["instances"]):
        return {**original, "instances": [original["instances"][i] for i in kept_instances]}
    return original


def _with_original(r: Reject, original: dict) -> dict:
    """The reject line with the input record as read (only the bad instance, for an instance reject)."""
    record = original
    if "instance" in r.evidence and "instances" in original:
        record = {**original, "instances": [original["instances"][r.evidence["instance"]]]}
    return r.model_copy(update={"record": record}).model_dump(mode="json")


def _malformed(e: InputError) -> dict:
    evidence = {"file": e.path, "line": e.line, "field": e.field, "error": e.detail}
    return Reject(
        id=content_id("rej", e.path, str(e.line), e.field or "", "malformed"),
        stage="input",
        reason="malformed",
        evidence=evidence,
        raw=e.raw or "",
        record=e.record,
    ).model_dump(mode="json")
