"""The CLI boundary reaps the child processes a command started, and only those: a caller's own processes
(a test session's vLLM engine, a notebook's server) are not the command's to end.

Run: .venv/bin/pytest -q tests/test_signals.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.signals import children, reap_children

ROOT = Path(__file__).resolve().parents[1]


def test_a_command_leaves_processes_that_were_there_before_alone():
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = CliRunner().invoke(app, ["seeds", "validate", str(ROOT / "seeds"), "--json"])
        assert res.exit_code == 0, res.output
        assert mine.poll() is None, "the command ended a process it did not start"
    finally:
        mine.kill()
        mine.wait()


def test_reap_children_ends_only_the_new_ones():
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = children()
        new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        reap_children(keep=before, timeout=5)
        assert new.wait(timeout=5) is not None
        assert old.poll() is None
    finally:
        old.kill()
        old.wait()
