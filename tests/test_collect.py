"""Every CLI command runs with rarer cyclic collections (`selfinstruct.collect`).
Run: .venv/bin/pytest -q tests/test_collect.py"""

from __future__ import annotations

import gc
from pathlib import Path

from typer.testing import CliRunner

import selfinstruct.cli  # noqa: F401  (registers the commands)
from selfinstruct.cli.app import app
from selfinstruct.collect import THRESHOLDS

ROOT = Path(__file__).resolve().parents[1]


def test_a_command_runs_with_the_collection_thresholds_of_a_long_run():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's default
        result = CliRunner().invoke(app, ["seeds", "validate", str(ROOT / "seeds" / "seed_tasks.jsonl")])
        assert result.exit_code == 0, result.output
        assert gc.get_threshold() == THRESHOLDS != (700, 10, 10)
    finally:
        gc.set_threshold(*before)
