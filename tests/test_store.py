"""The run directory: append-only, deduplicated by id, torn tails repaired. Run: pytest tests/test_store.py"""

import json
import os

import pytest

from selfinstruct.errors import SelfInstructError
from selfinstruct.schema import Instance, Reject, RunManifest, Task
from selfinstruct.store import REJECTS, TASKS, TORN, RunStore, repair_torn_tail


def _task(i: int) -> Task:
    return Task(
        id=f"t{i}",
        instruction=f"Do thing number {i}.",
        instances=[Instance(output=str(i))],
        provenance="generated",
    )


def _rej(i: int, reason: str = "rouge_too_similar") -> Reject:
    return Reject(
        id=f"r{i}", stage=reason.split("_")[0], reason=reason, evidence={"score": 0.8}, raw=f"raw {i}"
    )


def test_append_counts_and_dedupes(tmp_path):
    with RunStore.open(tmp_path) as s:
        assert s.append([_task(1), _task(2)], [_rej(1)]) == (2, 1)
        assert s.append([_task(2), _task(3)], [_rej(1), _rej(2, "minhash_near_duplicate")]) == (1, 1)
    with RunStore.open(tmp_path) as s:
        assert [t.id for t in s.tasks()] == ["t1", "t2", "t3"]
        assert s.counts == {
            "accepted": 3,
            "rejected": 2,
            "rejected_rouge_too_similar": 1,
            "rejected_minhash_near_duplicate": 1,
        }


def test_lines_are_never_rewritten(tmp_path):
    with RunStore.open(tmp_path) as s:
        s.append([_task(1)])
    before = (tmp_path / TASKS).read_bytes()
    with RunStore.open(tmp_path) as s:
        s.append([_task(2)])
    assert (tmp_path / TASKS).read_bytes().startswith(before)


def test_torn_tail_is_cut_and_kept(tmp_path):
    with RunStore.open(tmp_path) as s:
        s.append([_task(1), _task(2)], [_rej(1)])
    whole = (tmp_path / TASKS).read_bytes()
    with open(tmp_path / TASKS, "ab") as f:
        f.write(b'{"id": "t3", "instruction": "half a li')
    with RunStore.open(tmp_path) as s:
        assert [r.file for r in s.repairs] == [TASKS]
        assert s.repairs[0].bytes_cut == len(b'{"id": "t3", "instruction": "half a li')
        assert [t.id for t in s.tasks()] == ["t1", "t2"]
        s.append([_task(3)])
    assert (tmp_path / TASKS).read_bytes().startswith(whole)
    assert json.loads((tmp_path / TORN).read_text())["fragment"].startswith('{"id": "t3"')
    assert all(json.loads(line) for line in (tmp_path / TASKS).read_text().splitlines())


def test_repair_of_a_file_that_is_one_torn_line(tmp_path):
    p = tmp_path / REJECTS
    p.write_text('{"id": "r1"')
    rep = repair_torn_tail(p)
    assert rep.bytes_cut == 11 and p.read_bytes() == b""
    assert repair_torn_tail(p) is None


def test_manifest_replaced_atomically(tmp_path, monkeypatch):
    """A crash before the rename (injected: os.replace fails) leaves the previous manifest whole."""
    import selfinstruct.store

    with RunStore.open(tmp_path) as s:
        m = RunManifest(
            name="x", created="a", updated="b", config={}, config_hash="h", model="m", backend="vllm"
        )
        s.write_manifest(m)
        s.write_manifest(m.model_copy(update={"stop_reason": "target_reached"}))
        assert s.manifest().stop_reason == "target_reached"
        assert not list(tmp_path.glob("*.tmp"))

        def crash(*_):
            raise OSError("power cut")

        monkeypatch.setattr(selfinstruct.store.os, "replace", crash)
        with pytest.raises(OSError, match="power cut"):
            s.write_manifest(m.model_copy(update={"stop_reason": "max_rounds", "rounds": 7}))
        assert s.manifest().stop_reason == "target_reached"


def test_text_with_unicode_line_breaks_stays_one_record_per_line(tmp_path):
    """Model text may hold U+2028, U+2029 or U+0085: legal inside a JSON string, yet line breaks to
    str.splitlines() and many readers. Written escaped, read back exactly, and a file from elsewhere that holds
    them raw still reads."""
    from selfinstruct.export import export
    from selfinstruct.jsonl import iter_json_objects

    odd = "one\u2028two\u2029three\x85four"
    task = _task(1).model_copy(update={"instruction": odd, "instances": [Instance(input=odd, output=odd)]})
    with RunStore.open(tmp_path / "run") as s:
        s.append([task, _task(2)], [_rej(1).model_copy(update={"raw": odd})])
    for name in (TASKS, REJECTS):
        text = (tmp_path / "run" / name).read_text(encoding="utf-8")
        assert len(text.splitlines()) == text.count("\n")  # no line break a reader could split on
    with RunStore.open(tmp_path / "run") as s:
        assert [t.instruction for t in s.tasks()] == [odd, "Do thing number 2."]
        assert [r.raw for r in s.rejects()] == [odd]
    assert export(tmp_path / "run", "messages", tmp_path / "m.jsonl") == 2
    assert len((tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()) == 2

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"instruction": odd}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [obj for _, obj in iter_json_objects(foreign)] == [{"instruction": odd}]


def test_a_full_disk_names_the_file_it_could_not_write():
    """/dev/full fails every write with ENOSPC, as a full disk does; Python's error names no file, so the CLI's
    one line said only "no space left on device" (seen in CI). The appender adds its path."""
    import errno
    from pathlib import Path

    from selfinstruct.store import JsonlAppender

    log = JsonlAppender(Path("/dev/full"))
    log.write({"id": "t1"})
    with pytest.raises(OSError) as caught:
        log.sync()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/dev/full"


@pytest.mark.parametrize("name", ["run.lock", "tasks.jsonl", "rejects.jsonl", "journal.jsonl"])
def test_a_run_file_that_is_a_link_is_refused_before_anything_is_written(tmp_path, name):
    """A linked run.lock was truncated to a pid and a linked tasks.jsonl cut and appended to, through the link."""
    precious = tmp_path / "precious.txt"
    precious.write_text("my notes, no newline at the end")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / name).symlink_to(precious)
    with pytest.raises(SelfInstructError, match=f"{name}: is not a regular file"):
        RunStore.open(tmp_path / "run")
    assert precious.read_text() == "my notes, no newline at the end"


def test_a_folder_with_someone_elses_tasks_file_is_refused_untouched(tmp_path):
    """`generate --out` on a folder holding the user's own tasks.jsonl cut its last line into torn.log, then
    failed on its first record."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "tasks.jsonl").write_text('{"instruction": "Mine."}\n{"instruction": "Also')
    before = (tmp_path / "mine" / "tasks.jsonl").read_bytes()
    with pytest.raises(SelfInstructError, match="is not a run's file"):
        RunStore.open(tmp_path / "mine")
    assert (tmp_path / "mine" / "tasks.jsonl").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["tasks.jsonl"]


def test_a_broken_manifest_is_named_with_its_line_or_field(tmp_path):
    """A manifest cut short (a disk that filled mid-copy) or edited by hand: the one line says where, as a broken
    record does; it once said only "1 validation error for RunManifest"."""
    from selfinstruct.errors import InputError
    from selfinstruct.schema import RunManifest
    from selfinstruct.store import read_manifest

    m = RunManifest(name="m", created="t", updated="t", config={}, config_hash="h", model="m", backend="vllm")
    text = m.model_dump_json(indent=2)
    (tmp_path / "manifest.json").write_text(text[:100])
    with pytest.raises(InputError, match=r"manifest\.json:\d+: malformed JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(text.replace('"rounds": 0', '"rounds": "many"'))
    with pytest.raises(InputError, match=r"manifest\.json: rounds: .*integer"):
        read_manifest(tmp_path)


def test_a_failed_write_names_the_file_asked_for_not_its_temp_file(tmp_path):
    """`atomic_file` writes a hidden temp file beside the target: when that fails (a read-only or full folder),
    the error once named `.out.json.<pid>.tmp`, a file the user never asked for and cannot find."""
    from selfinstruct.store import atomic_file

    out = tmp_path / "out.json"
    (tmp_path / f".out.json.{os.getpid()}.tmp").mkdir()  # the temp file cannot be made
    with pytest.raises(OSError) as e:
        with atomic_file(out) as f:
            f.write("{}")
    assert e.value.filename == str(out) and ".tmp" not in str(e.value)
    assert not out.exists()
