"""The loop through the OpenAI-compatible path: `selfinstruct generate --base-url` against a real `vllm serve`
on 127.0.0.1 serving the embedded model. Run: pytest tests/test_generate_openai.py"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.llm.server import free_port, start_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.server
@pytest.mark.vllm
def test_generate_against_a_real_server(embedded_model, tmp_path):
    out = tmp_path / "run"
    with start_server(embedded_model, served_model_name="smol", max_model_len=2048) as server:
        res = CliRunner().invoke(
            app,
            [
                "generate",
                str(ROOT / "pipelines" / "quickstart.yaml"),
                "--out",
                str(out),
                "--base-url",
                server.base_url,
                "--model",
                "smol",
                "--num-instructions",
                "2",
                "--round-size",
                "12",
                "--max-rounds",
                "3",
                "--json",
            ],
        )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["counts"]["requests"] > 0 and summary["tokens"]["completion_tokens"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "openai" and manifest["config"]["backend"]["base_urls"] == [server.base_url]
    assert manifest["counts"]["accepted"] + manifest["counts"]["rejected"] > 0
    lines = (out / "rejects.jsonl").read_text().splitlines() + (out / "tasks.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["id"] for line in lines)


def test_dead_server_stops_cleanly_with_a_record(tmp_path):
    out = tmp_path / "run"
    url = f"http://127.0.0.1:{free_port()}/v1"
    res = CliRunner().invoke(
        app,
        [
            "generate",
            str(ROOT / "pipelines" / "quickstart.yaml"),
            "--out",
            str(out),
            "--base-url",
            url,
            "--model",
            "smol",
        ],
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert url in res.output or "127.0.0.1" in res.output
    assert json.loads((out / "manifest.json").read_text())["stop_reason"].startswith("error: ")
