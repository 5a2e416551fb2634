"""The run directory: the only module that opens run files (STYLE rule 8).

    RUN/tasks.jsonl         accepted tasks, one JSON line each, schema-validated on write
    RUN/rejects.jsonl       every rejected candidate: stage, reason, evidence, raw text, round
    RUN/journal.jsonl       every completion as the backend returned it, plus the loop's checkpoints (journal.py)
    RUN/readmissions.jsonl  requests from `readmit`, appended by it; the run's writer takes them in
    RUN/manifest.json       resolved config, versions, prompt hashes, counts, timings, stop reason
    RUN/run.lock            held (flock) by the one process writing the run; holds its pid

One writer: `RunStore.open` takes an exclusive lock on run.lock and refuses, naming the holder's pid, when
another process has it. Readers (`read_jsonl`) never lock and never write.
Lines are only ever appended, flushed and fsynced per batch; a line once written is never rewritten. A crash can
leave at most a torn (newline-less) last line, which the writer repairs on open: a fragment that is not a whole
JSON record is cut off, saved to `RUN/torn.log` and reported; a whole record that only lacks its newline gets
it. The manifest is replaced atomically (temp file, fsync, rename), so it always holds a complete document.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from pydantic import BaseModel, ValidationError

from selfinstruct import faults
from selfinstruct.errors import InputError, SelfInstructError, named, naming
from selfinstruct.jsonl import dumps, first_error, iter_json_objects, parse_record, read_json
from selfinstruct.schema import Reject, RunManifest, Task
from selfinstruct.stats import Stats

M = TypeVar("M", bound=BaseModel)

TASKS = "tasks.jsonl"
REJECTS = "rejects.jsonl"
MANIFEST = "manifest.json"
TORN = "torn.log"
JOURNAL = "journal.jsonl"
READMISSIONS = "readmissions.jsonl"
LOCK = "run.lock"
# Every file a run directory holds: no command writes its output over one of them.
RUN_FILES = (TASKS, REJECTS, MANIFEST, TORN, JOURNAL, READMISSIONS, LOCK)
KEPT = "kept.jsonl"  # what `selfinstruct filter --out DIR` writes beside its rejects.jsonl
PIPELINE = "pipeline.json"  # a pipeline's state, in its folder beside the run's files
FILTERED = "filter.json"  # a filter output's state: {"input", "complete"} and, once complete, its counts
FILTER_LOCK = "filter.lock"  # held (flock) by the one filter writing the folder; holds its pid


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
        if whole_record(fragment) is not None:  # complete but for its newline (cut between the two): keep it
            f.write(b"\n")
        else:
            f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    if whole_record(fragment) is not None:
        return None
    return Repair(path.name, size - keep, fragment.decode("utf-8", errors="replace"))


def whole_record(line: bytes) -> dict | None:
    """The JSON object a line holds whole, or None (a torn write, or not an object)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class JsonlAppender:
    """Append-only JSONL writer: validate, write whole lines, flush and fsync on `sync()` and on close."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record: BaseModel | dict) -> None:
        line = dumps(record) + "\n"
        if faults.hit(f"tear:{self.path.name}"):  # a crash inside this write (kill tests only)
            self._f.write(line[: len(line) // 2])
            self._f.flush()
            faults.die()
        try:  # free unless it raises: this is called per record
            self._f.write(line)
        except OSError as e:
            raise named(e, self.path) from None

    def flush(self) -> None:
        with naming(self.path):
            self._f.flush()

    def sync(self) -> None:
        with naming(self.path):
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: writers never share it
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if not tmp.is_dir():  # a folder of that name in its way is not ours to remove
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):  # the file asked for, never the temp file nobody asked for
            raise OSError(e.errno, e.strerror, str(path)) if e.errno else named(e, path) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_output(out: str | Path, *, inputs: Iterable[str | Path] = (), replace: bool = False) -> Path:
    """Refuse an output path that would destroy something: a run's own file, an input of this command, a path
    through a symbolic link, or (unless `replace`) any existing file. Returns the path."""
    out = Path(out)
    if out.is_symlink():
        raise SelfInstructError(f"{out}: is a symbolic link; write to a real path")
    if out.is_dir():
        raise SelfInstructError(f"{out}: is a directory; give a file name")
    there = out.resolve()
    for src in inputs:
        src = Path(src)
        files = [src / name for name in RUN_FILES] if src.is_dir() else [src]
        if any(f.exists() and f.resolve() == there for f in files):
            raise SelfInstructError(f"{out}: is this command's input; choose another output path")
    if out.name in RUN_FILES and any((out.parent / n).exists() for n in (MANIFEST, JOURNAL, LOCK)):
        raise SelfInstructError(f"{out}: is a file of the run in {out.parent}; choose another output path")
    if out.exists() and not out.is_file():
        raise SelfInstructError(f"{out}: is not a regular file (a device, pipe or socket); write to a file")
    if out.exists() and (owner := _output_folder(out.parent)):
        raise SelfInstructError(f"{out}: is a file of the {owner}; choose another output path")
    if out.exists() and not replace:
        raise SelfInstructError(f"{out}: already exists; pass --force to replace it, or choose another path")
    return out


def _output_folder(folder: Path) -> str | None:
    """What wrote `folder`, if one of our commands did: a filter's output (kept.jsonl beside rejects.jsonl) or
    a pipeline's folder (pipeline.json), whose files other commands read back."""
    if (folder / KEPT).exists() and (folder / REJECTS).exists():
        return f"filter output in {folder}"
    if (folder / PIPELINE).exists():
        return f"pipeline in {folder}"
    return None


def refuse_run_folder(folder: Path) -> None:
    """Refuse to write a filter's output into a run's (or a pipeline's) folder, whatever its files hold: a run
    that has just started, or failed at once, has an empty rejects.jsonl a filter would append to."""
    for name in (*RUN_FILES, PIPELINE):
        if name != REJECTS and os.path.lexists(folder / name):  # rejects.jsonl alone: a filter's own
            raise SelfInstructError(f"{folder}: holds {name}, a run's file; choose another --out")


def filter_interrupted(out: Path) -> bool:
    """Whether `out` holds the output of a filter that did not finish (killed, stopped, or its disk full)."""
    state = out / FILTERED
    if not state.is_file() or state.is_symlink():
        return False
    doc = read_json(state, FILTERED)
    return isinstance(doc, dict) and doc.get("complete") is False


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
    if not path.exists() or empty_file(path):
        return
    for line, obj in iter_json_objects(path, unfinished_tail=True):
        yield parse_record(model, obj, path, line)


def empty_file(path: Path) -> bool:
    """Whether `path` is a regular file with nothing in it. A pipe's or a FIFO's size is always 0, whatever
    it carries (`export /dev/stdin`, `<(cat ...)`), so only a regular file's size says it is empty."""
    return path.is_file() and path.stat().st_size == 0


def hold_lock(path: Path, busy: Callable[[str], SelfInstructError]) -> int:
    """Hold an exclusive flock on `path` (created if missing) for as long as the returned descriptor is open,
    writing our pid into it; the OS drops it on any exit, kill -9 included, so a stale lock never blocks.
    Raises `busy(the holder's pid)` when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise busy(pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def lock_holder(root: Path) -> int | None:
    """The pid of the process writing the run at `root`, or None when no one holds its lock."""
    path = root / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refuse_unless_plain(path: Path, why: str) -> None:
    """Refuse a file to append to that is a link (a dangling one too: appending creates its target wherever it
    points) or not a regular file (a device, a pipe): the write would land somewhere that is not ours."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise SelfInstructError(f"{path}: is not a regular file; {why}")


def refuse_live_writer(root: Path) -> None:
    """Refuse to read a run another process is writing, for work that must not see it half written."""
    if (pid := lock_holder(root)) is not None:
        raise _busy(root, str(pid) if pid >= 0 else "?")


def requests_lock(root: Path) -> int:
    """Hold the run's readmission lock for as long as the returned descriptor is open (an flock on the run
    directory itself, so no file is made for it). `readmit` holds it while it asks whether a writer holds the run
    and appends its request; the writer from its last look at the requests until it lets the run go."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _busy(root: Path, pid: str) -> SelfInstructError:
    return SelfInstructError(
        f"{root}: another process (pid {pid}) is writing this run; wait for it to finish or stop it"
    )


def _refuse_foreign(root: Path) -> None:
    """Refuse a directory whose run files are not the run's own before anything is locked, repaired or
    appended: a link or device there would be written through (a linked run.lock truncated the file it pointed
    to), and tasks or rejects with no sign of a run (manifest, journal, lock) are somebody else's file."""
    for name in RUN_FILES:
        refuse_unless_plain(root / name, "a run writes only files of its own")
    if not any((root / n).exists() for n in (MANIFEST, JOURNAL, LOCK)):
        for name in (TASKS, REJECTS):
            if (root / name).exists() and (root / name).stat().st_size:
                raise SelfInstructError(
                    f"{root / name}: is not a run's file ({root} has no {MANIFEST}, {JOURNAL} or {LOCK}); "
                    "give a new directory or a run's"
                )


def iter_journal(root: Path) -> Iterator[dict]:
    """The journal's events in order, read line by line (it can be large); an unfinished last line is left out."""
    path = Path(root) / JOURNAL
    if not path.exists():
        return
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return  # a write in flight or torn: the writer repairs it on open
            try:
                yield json.loads(line)
            except ValueError:
                raise InputError(path, "malformed journal line", line=n) from None


@dataclass
class RunStore:
    """An open run directory, held by this process alone (run.lock). Keeps the ids already on disk so nothing
    is written twice when a round is replayed after a crash, and the per-reason counts so the manifest always
    matches the files."""

    root: Path
    task_ids: set[str] = field(default_factory=set)
    reject_ids: set[str] = field(default_factory=set)
    rejected: Stats = field(default_factory=Stats)  # `rejected` and `rejected_<reason>`, as on disk
    repairs: list[Repair] = field(default_factory=list)
    _tasks: JsonlAppender | None = None
    _rejects: JsonlAppender | None = None
    _journal: JsonlAppender | None = None
    _lock: int | None = None
    # requests_lock, held from this writer's last look at readmissions.jsonl until it closes
    _requests: int | None = None

    @classmethod
    def open(cls, root: str | Path) -> RunStore:
        """Open (creating if needed) a run directory: take its lock, repair torn tails, index what is there."""
        root = Path(root)
        if root.is_symlink():
            raise SelfInstructError(f"{root}: is a symbolic link; give the run directory itself")
        root.mkdir(parents=True, exist_ok=True)
        _refuse_foreign(root)
        store = cls(root)
        store._lock = hold_lock(root / LOCK, lambda pid: _busy(root, pid))
        try:
            for name in (TASKS, REJECTS, JOURNAL):
                rep = repair_torn_tail(root / name)
                if rep:
                    store.repairs.append(rep)
                    with open(root / TORN, "a", encoding="utf-8") as log:
                        log.write(
                            json.dumps(
                                {"file": rep.file, "bytes_cut": rep.bytes_cut, "fragment": rep.fragment}
                            )
                            + "\n"
                        )
            store.task_ids.update(task.id for task in store.tasks())
            for rej in store.rejects():
                store.reject_ids.add(rej.id)
                store.rejected.reject(rej.reason)
            store._tasks = JsonlAppender(root / TASKS)
            store._rejects = JsonlAppender(root / REJECTS)
            store._journal = JsonlAppender(root / JOURNAL)
        except BaseException:
            store.close()
            raise
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

    def journal(self) -> Iterator[dict]:
        return iter_journal(self.root)

    def readmissions(self) -> Iterator[dict]:
        """Requests `readmit` appended (see readmit.py), oldest first."""
        path = self.root / READMISSIONS
        if path.exists() and path.stat().st_size:
            for _, obj in iter_json_objects(path, unfinished_tail=True):
                yield obj

    def manifest(self) -> RunManifest | None:
        return read_manifest(self.root)

    def log(self, event: dict, *, sync: bool = False) -> None:
        """Append one journal event; flushed at once (a kill loses nothing the OS has), fsynced on `sync`."""
        assert self._journal, "RunStore.open() first"
        self._journal.write(event)
        if sync:
            self._journal.sync()
        else:
            self._journal.flush()

    def sync_journal(self) -> None:
        assert self._journal, "RunStore.open() first"
        self._journal.sync()

    def sync(self) -> None:
        """fsync both record files (what `append(..., sync=False)` left flushed only)."""
        assert self._tasks and self._rejects, "RunStore.open() first"
        self._rejects.sync()
        self._tasks.sync()

    def append(
        self, tasks: Iterable[Task] = (), rejects: Iterable[Reject] = (), *, sync: bool = True
    ) -> tuple[int, int]:
        """Append new records (skipping ids already on disk), then fsync both files (or, with `sync=False`,
        flush them: for records the journal can derive again, fsynced at the next checkpoint).

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
        self._rejects.sync() if sync else self._rejects.flush()
        faults.crash_point("after:rejects")
        for task in tasks:
            if task.id in self.task_ids:
                continue
            self._tasks.write(Task.model_validate(task.model_dump()))  # validated on write
            self.task_ids.add(task.id)
            n_tasks += 1
        self._tasks.sync() if sync else self._tasks.flush()
        faults.crash_point("after:tasks")
        return n_tasks, n_rej

    def write_manifest(self, manifest: RunManifest) -> None:
        write_json_atomic(self.manifest_path, manifest)
        faults.crash_point("after:manifest")

    def hold_requests(self) -> None:
        """Hold `readmit` off until this store is closed: called before the writer's last look at
        readmissions.jsonl, so a request comes either before that look or after the run's lock is released (and
        `readmit` takes it in itself), never in between, acknowledged to a writer that will not look again."""
        if self._requests is None:
            self._requests = requests_lock(self.root)

    def close(self) -> None:
        for f in (self._tasks, self._rejects, self._journal):
            if f:
                f.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None
        if self._requests is not None:  # after the run's lock: see hold_requests
            os.close(self._requests)
            self._requests = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_manifest(root: Path) -> RunManifest | None:
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    obj = read_json(path, "manifest")  # malformed: its line
    if not isinstance(obj, dict):
        raise InputError(path, f"not a manifest (a JSON {type(obj).__name__}, not an object)")
    try:
        return RunManifest.model_validate(obj)
    except ValidationError as e:
        raise InputError(path, first_error(e)[1], field=first_error(e)[0]) from None
