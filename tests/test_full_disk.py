"""A write that fails for lack of room names its file. Python's OSError from a failed write or close names none
(a full disk reads "[Errno 28] No space left on device"), so the CLI's one line would not say which file. Each
case writes for real in a child process under a 1 MB file size limit (tests/filelimit.py)."""

from __future__ import annotations

from filelimit import failed_write

BIG = "'x' * (2 << 20)"


def test_the_training_log_names_its_file(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    body = f"""
from types import SimpleNamespace
from pathlib import Path
from selfinstruct.sft.metrics import callbacks
state = SimpleNamespace(is_world_process_zero=True, global_step=1, epoch=0.1)
callbacks(Path({str(metrics)!r}), None)[0].on_log(None, state, None, logs={{"note": {BIG}}})
"""
    assert failed_write(body) == ["27", str(metrics)]


def test_trimming_the_training_log_names_it_and_keeps_it_whole(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = "".join(f'{{"step": {s}, "note": "{"x" * 300_000}"}}\n' for s in range(1, 8))
    metrics.write_text(rows)  # 2.1 MB: within the limit only while the child does not write it
    body = f"""
from pathlib import Path
from selfinstruct.sft.metrics import trim_metrics
trim_metrics(Path({str(metrics)!r}), 6)
"""
    assert failed_write(body) == ["27", str(metrics)]
    assert metrics.read_text() == rows and [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_a_readmission_names_its_file(tmp_path):
    from selfinstruct.readmit import READMISSIONS

    body = f"""
from pathlib import Path
from selfinstruct.readmit import _append
_append(Path({str(tmp_path)!r}), [{{"note": {BIG}}}])
"""
    assert failed_write(body) == ["27", str(tmp_path / READMISSIONS)]
    assert (tmp_path / READMISSIONS).read_bytes() == b""  # the part that fitted was cut off again


def test_joining_a_model_s_parts_names_the_joined_file(tmp_path):
    parts = [tmp_path / "part0", tmp_path / "part1"]
    for p in parts:
        p.write_bytes(b"\0" * (3 << 19))  # 1.5 MB each
    out = tmp_path / "joined.gguf"
    body = f"""
from pathlib import Path
from selfinstruct.models import _join
_join([Path(p) for p in {[str(p) for p in parts]!r}], Path({str(out)!r}), None)
"""
    assert failed_write(body) == ["27", str(out)]


def test_a_failed_atomic_write_names_the_file_and_leaves_no_temp_file(tmp_path):
    """Replacing a manifest-like file: the error names the target, the old file stays whole and no temp file is
    left beside it."""
    target = tmp_path / "manifest.json"
    target.write_text('{"old": true}\n')
    body = f"""
from pathlib import Path
from selfinstruct.store import write_json_atomic
write_json_atomic(Path({str(target)!r}), {{"big": {BIG}}})
"""
    assert failed_write(body) == ["27", str(target)]
    assert target.read_text() == '{"old": true}\n' and [p.name for p in tmp_path.iterdir()] == [
        "manifest.json"
    ]
