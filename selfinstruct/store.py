"""The run directory: the only module that opens run files (STYLE rule 8).

    RUN/tasks.jsonl     accepted tasks, one JSON line each, schema-validated on write
    RUN/rejects.jsonl   every rejected candidate: stage, reason, evidence, raw text, round
    RUN/manifest.json   resolved config, versions, prompt hashes, counts, timings, stop reason

Lines are only ever appended, flushed and fsynced per batch; a line once written is never rewritten. A crash can
leave at most a torn (newline-less) last line, which `open` repairs: the fragment is cut off, saved to
`RUN/torn.log` and reported. The manifest is replaced atomically (temp file, fsync, rename), so it always
holds a complete, consistent document.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from pydantic import BaseModel

from selfinstruct.errors import InputError
from selfinstruct.jsonl import dumps, iter_json_objects, parse_record
from selfinstruct.schema import Reject, RunManifest, Task
from selfinstruct.stats import Stats

M = TypeVar("M", bound=BaseModel)

TASKS = "tasks.jsonl"
REJECTS = "rejects.jsonl"
MANIFEST = "manifest.json"
TORN = "torn.log"
KEPT = "kept.jsonl"  # what `selfinstruct filter --out DIR` writes beside its rejects.jsonl


@dataclass
class Repair:
    file: str
    bytes_cut: int
    fragment: str


def repair_torn_tail(path: Path) -> Repair | None:
    """Cut a last line that has no newline (a write interrupted by a crash) and return what was cut."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        # Scan back for the last newline in blocks: files can be large, torn tails are short.
        pos, block = size, 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        f.seek(keep)
        fragment = f.read()
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return Repair(path.name, size - keep, fragment.decode("utf-8", errors="replace"))


class JsonlAppender:
    """Append-only JSONL writer: validate, write whole lines, flush and fsync on `sync()` and on close."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record: BaseModel | dict) -> None:
        self._f.write(dumps(record) + "\n")

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """Write `path` whole or not at all: into a temp file beside it, fsynced, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path: Path, obj: dict | BaseModel) -> None:
    """Replace `path` with a complete document or not at all."""
    text = (
        obj.model_dump_json(indent=2)
        if isinstance(obj, BaseModel)
        else json.dumps(obj, indent=2, ensure_ascii=False)
    )
    with atomic_file(path) as f:
        f.write(text + "\n")


def read_jsonl(path: Path, model: type[M]) -> Iterator[M]:
    """Records of a run file, read only; an unfinished last line (a live run's write in flight, a crash's
    torn tail) is left out with a warning, so `audit` and `export` work on a run that is still going."""
    if not path.exists() or path.stat().st_size == 0:
        return
    for line, obj in iter_json_objects(path, unfinished_tail=True):
        yield parse_record(model, obj, path, line)


@dataclass
class RunStore:
    """An open run directory. Keeps the ids already on disk so nothing is written twice, even when a round
    is replayed after a crash, and the per-reason counts so the manifest always matches the files."""

    root: Path
    task_ids: set[str] = field(default_factory=set)
    reject_ids: set[str] = field(default_factory=set)
    rejected: Stats = field(default_factory=Stats)  # `rejected` and `rejected_<reason>`, as on disk
    repairs: list[Repair] = field(default_factory=list)
    _tasks: JsonlAppender | None = None
    _rejects: JsonlAppender | None = None

    @classmethod
    def open(cls, root: str | Path) -> RunStore:
        """Open (creating if needed) a run directory, repairing torn tails and indexing what is there."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        for name in (TASKS, REJECTS):
            rep = repair_torn_tail(root / name)
            if rep:
                store.repairs.append(rep)
                with open(root / TORN, "a", encoding="utf-8") as log:
                    log.write(
                        json.dumps({"file": rep.file, "bytes_cut": rep.bytes_cut, "fragment": rep.fragment})
                        + "\n"
                    )
        store.task_ids.update(task.id for task in store.tasks())
        for rej in store.rejects():
            store.reject_ids.add(rej.id)
            store.rejected.reject(rej.reason)
        store._tasks = JsonlAppender(root / TASKS)
        store._rejects = JsonlAppender(root / REJECTS)
        return store

    @property
    def counts(self) -> Counter:
        """Accepted tasks and rejects per reason, always those of the files."""
        return Counter({"accepted": len(self.task_ids), **self.rejected.counts})

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def tasks(self) -> Iterator[Task]:
        return read_jsonl(self.root / TASKS, Task)

    def rejects(self) -> Iterator[Reject]:
        return read_jsonl(self.root / REJECTS, Reject)

    def manifest(self) -> RunManifest | None:
        if not self.manifest_path.exists():
            return None
        try:
            return RunManifest.model_validate_json(self.manifest_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(self.manifest_path, f"not a valid manifest ({str(e).splitlines()[0]})") from None

    def append(self, tasks: Iterable[Task] = (), rejects: Iterable[Reject] = ()) -> tuple[int, int]:
        """Append new records (skipping ids already on disk), then fsync both files.

        Rejects go first: if a crash lands in between, a replayed round finds its rejects already there
        (same ids, skipped) and writes its accepted tasks once.
        """
        assert self._tasks and self._rejects, "RunStore.open() first"
        n_rej = n_tasks = 0
        for rej in rejects:
            if rej.id in self.reject_ids:
                continue
            self._rejects.write(rej)
            self.reject_ids.add(rej.id)
            self.rejected.reject(rej.reason)
            n_rej += 1
        self._rejects.sync()
        for task in tasks:
            if task.id in self.task_ids:
                continue
            self._tasks.write(Task.model_validate(task.model_dump()))  # validated on write
            self.task_ids.add(task.id)
            n_tasks += 1
        self._tasks.sync()
        return n_tasks, n_rej

    def write_manifest(self, manifest: RunManifest) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def close(self) -> None:
        for f in (self._tasks, self._rejects):
            if f:
                f.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
