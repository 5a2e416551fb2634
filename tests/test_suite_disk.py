"""The suite's own footprint: training tests write gigabytes of checkpoints into tmp_path, and pytest keeps every
test's directory (and the last three sessions') by default. On a shared CI disk that ran out of space mid-run, so
the project's pytest settings drop a passing test's directory as soon as it ends and keep failures to debug."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_passing_tests_leave_no_files_and_failing_ones_keep_theirs(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_scratch.py").write_text(
        textwrap.dedent(
            """
            def test_passes(tmp_path):
                (tmp_path / "checkpoint.bin").write_bytes(b"0" * (1 << 20))

            def test_fails(tmp_path):
                (tmp_path / "evidence.txt").write_text("kept")
                assert False
            """
        )
    )
    basetemp = tmp_path / "basetemp"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(suite),
         f"--basetemp={basetemp}", "-p", "no:cacheprovider", str(suite)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
    assert not list(basetemp.rglob("checkpoint.bin"))
    assert [p.read_text() for p in basetemp.rglob("evidence.txt")] == ["kept"]
