"""`selfinstruct run` end to end on the embedded model with tiny targets, then a rerun that skips every stage.
Run: pytest tests/test_pipeline.py (slow: generation, training and two eval engines on CPU)."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfinstruct.cli import app

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_run_quickstart_then_rerun_skips_finished_stages(tmp_path, external):
    recipe = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
    recipe["seeds"] = str(ROOT / "seeds")
    recipe["loop"].update(target=2, round_size=16, max_rounds=6)
    recipe["sft"]["trainer"].update(max_steps=2)
    recipe["eval"] = {
        "ifeval_limit": 3,
        "max_tokens": 24,
        "ifeval_data": str(external / "ifeval_input_data.jsonl"),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"

    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    state = json.loads(res.stdout.strip().splitlines()[-1])
    assert state["skipped"] == []
    st = state["stages"]
    assert list(st) == ["generate", "filter", "export", "train", "eval"]
    assert st["generate"]["accepted"] >= 2 and st["generate"]["stop_reason"] == "target_reached"
    assert st["export"]["rows"] >= 2 and st["train"]["steps"] == 2 and st["train"]["final_loss"] > 0
    assert (out / "student" / "config.json").is_file() and (out / "student" / "metrics.jsonl").is_file()
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["items"] == 3 and report["compared"] + report["left_out"] == 3
    assert json.loads((out / "pipeline.json").read_text())["stages"] == st

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["skipped"] == [
        "generate",
        "filter",
        "export",
        "train",
        "eval",
    ]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
