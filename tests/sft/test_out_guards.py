"""What `train` may remove or overwrite in --out, and one-line errors for damaged run files and bad settings:
`--fresh` removes only plain children of --out that a run of ours wrote (never `..`, `""` or the user's
README), a folder of the user's is refused with or without `--fresh`, a damaged sft.json or fingerprint.json
is one line naming the file, and `trainer:` values that would crash training are refused by field.

Run: .venv/bin/pytest -q tests/sft/test_out_guards.py
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from selfinstruct.cli import app
from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.sft import identity
from selfinstruct.sft.config import SFTConfig
from selfinstruct.sft.train import read_summary, train

runner = CliRunner()


def _ours(out, files):
    """An output directory as a run of ours leaves it, with `files` listed in its sft.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fingerprint.json").write_text("{}")
    (out / "sft.json").write_text(json.dumps({"files": files}))


@pytest.mark.parametrize("name", ["..", "", ".", "../x", "/etc", "a/b", 5, None])
def test_clear_removes_only_plain_children_of_out(tmp_path, name):
    (tmp_path / "thesis.tex").write_text("mine")
    (tmp_path / "x").write_text("mine")
    out = tmp_path / "student"
    _ours(out, [name, "config.json"])
    (out / "notes.txt").write_text("mine")
    (out / "config.json").write_text("{}")
    (out / "a").mkdir()
    (out / "a" / "b").write_text("mine")
    removed = identity.clear(out)
    assert sorted(removed) == ["config.json", "fingerprint.json", "sft.json"]
    assert (tmp_path / "thesis.tex").read_text() == "mine" and (tmp_path / "x").read_text() == "mine"
    assert (out / "notes.txt").read_text() == "mine" and (out / "a" / "b").read_text() == "mine"


def test_clear_never_follows_a_link_out_of_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    out = tmp_path / "student"
    _ours(out, ["linked", "notes"])
    (out / "linked").symlink_to(outside)
    (out / "notes").mkdir()  # a listed name is a file our save wrote: a directory of that name is not ours
    (out / "notes" / "n.txt").write_text("mine")
    identity.clear(out)
    assert (outside / "keep.txt").read_text() == "mine" and (out / "notes" / "n.txt").read_text() == "mine"


def test_a_users_file_that_changes_during_the_save_is_never_listed_nor_removed(tmp_path):
    """A log the user redirects into --out (`2> out/train.log`) grows while the weights are saved: it is
    not a file of the save, and `--fresh` must keep it, even when an older sft.json lists it."""
    out = tmp_path / "student"
    out.mkdir()
    (out / "train-stderr.log").write_text("step 1\n")
    before = identity.snapshot(out)
    (out / "train-stderr.log").write_text("step 1\nstep 2\n")
    for name in ("config.json", "model-00001-of-00002.safetensors", "tokenizer.json", "training_args.bin"):
        (out / name).write_text("{}")
    assert identity.written_since(out, before) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "tokenizer.json",
        "training_args.bin",
    ]
    _ours(out, ["train-stderr.log", "config.json"])
    assert "train-stderr.log" not in identity.clear(out)
    assert (out / "train-stderr.log").read_text() == "step 1\nstep 2\n" and not (out / "config.json").exists()


def test_clear_keeps_a_readme_without_our_mark(tmp_path):
    out = tmp_path / "student"
    _ours(out, ["README.md", "config.json"])
    (out / "README.md").write_text("# My own notes\n")
    assert "README.md" not in identity.clear(out)
    assert (out / "README.md").read_text() == "# My own notes\n"
    _ours(out, ["README.md"])
    (out / "README.md").unlink()
    (out / "README.md").write_text(identity.CARD_MARK + "\n# Student of x\n")
    assert "README.md" in identity.clear(out) and not (out / "README.md").exists()


def test_clear_survives_a_summary_that_is_not_an_object(tmp_path):
    out = tmp_path / "student"
    _ours(out, [])
    (out / "sft.json").write_text("[1]")
    assert identity.clear(out) == ["sft.json", "fingerprint.json"]


FP = {"data": {"path": "d", "examples_sha256": "h"}}


@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize(
    "files",
    [
        {"README.md": "# mine", "metrics.jsonl": "{}", "tokenizer.json": "notes"},
        {"config.json": "{}"},
        {"checkpoint-7/trainer_state.json": "{}", "adapter/adapter_config.json": "{}"},
        {"sft.json": '{"files": [".."]}'},  # a summary alone does not make a directory ours
    ],
)
def test_a_folder_of_the_users_is_refused_unless_force(tmp_path, files, fresh):
    out = tmp_path / "mine"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    with pytest.raises(SelfInstructError, match=r"did not record \(no fingerprint.json\).*--force"):
        identity.check_resume(out, FP, force=False, fresh=fresh)
    identity.check_resume(out, FP, force=True, fresh=fresh)


def test_an_empty_missing_or_own_folder_is_accepted(tmp_path):
    identity.check_resume(tmp_path / "missing", FP, force=False)
    (tmp_path / "empty").mkdir()
    identity.check_resume(tmp_path / "empty", FP, force=False)
    own = tmp_path / "own"  # an interrupted run of ours: its fingerprint and checkpoints
    (own / "checkpoint-2").mkdir(parents=True)
    (own / "fingerprint.json").write_text(json.dumps(FP))
    identity.check_resume(own, FP, force=False)
    identity.check_resume(own, {**FP, "trainer": {"seed": 1}}, force=False, fresh=True)


@pytest.mark.parametrize("text", ["[]", "null", '"x"', "{"])
def test_a_fingerprint_that_is_not_an_object_is_one_line(tmp_path, text):
    out = tmp_path / "student"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "fingerprint.json").write_text(text)
    with pytest.raises(InputError, match=r"fingerprint.json"):
        identity.check_resume(out, FP, force=False)


def test_training_into_a_folder_of_the_users_changes_nothing(tmp_path, tiny_llama, alpaca_small):
    out = tmp_path / "myproject"
    out.mkdir()
    (out / "README.md").write_text("# My project notes")
    (out / "metrics.jsonl").write_text('{"my": "log"}\n')
    config = SFTConfig(model=str(tiny_llama), max_length=256)
    for fresh in (False, True):
        with pytest.raises(SelfInstructError, match="did not record"):
            train(config, alpaca_small, out, max_steps=1, fresh=fresh)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "metrics.jsonl"]
    assert (out / "README.md").read_text() == "# My project notes"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"result": {"base_model": ', "malformed JSON"),
        ("[1]", "expected a JSON object"),
        ('{"result": {}}', "result.base_model"),
        ('{"result": {"base_model": "b", "template": 5}}', "result.template"),
        ('{"result": 5}', "result"),
    ],
)
def test_a_damaged_summary_is_one_line_naming_the_file(tmp_path, text, match):
    (tmp_path / "sft.json").write_text(text)
    with pytest.raises(InputError, match=match) as e:
        read_summary(tmp_path)
    assert str(e.value).startswith(str(tmp_path / "sft.json"))


def test_a_good_summary_reads(tmp_path):
    assert read_summary(tmp_path) is None
    (tmp_path / "sft.json").write_text('{"result": {"base_model": "b", "template": "chat"}}')
    assert read_summary(tmp_path)["result"]["base_model"] == "b"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gradient_accumulation_steps", 0),
        ("per_device_train_batch_size", 0),
        ("per_device_train_batch_size", True),
        ("learning_rate", "abc"),
        ("learning_rate", -1),
        ("learning_rate", float("nan")),
        ("seed", "x"),
        ("num_train_epochs", 0),
    ],
)
def test_trainer_values_that_would_crash_training_are_refused(key, value):
    with pytest.raises(ValidationError, match=f"trainer.{key}"):
        SFTConfig(trainer={key: value})


def test_trainer_values_that_are_fine():
    cfg = SFTConfig(trainer={"learning_rate": "2e-5", "seed": 3, "gradient_accumulation_steps": 2})
    assert cfg.trainer["learning_rate"] == 2e-5  # YAML reads `2e-5` as a string
    SFTConfig(trainer={"learning_rate": 0, "num_train_epochs": 0.5, "per_device_train_batch_size": 1})


def test_a_bad_trainer_value_names_its_line_in_the_config(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("sft:\n  max_length: 64\n  trainer:\n    seed: 1\n    gradient_accumulation_steps: 0\n")
    res = runner.invoke(app, ["train", "-d", str(tmp_path), "-o", str(tmp_path / "o"), "-c", str(cfg)])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {cfg}:5: trainer.gradient_accumulation_steps: must be a positive integer, got 0"
    )


def test_an_unknown_trainer_key_names_its_line_in_the_config(tmp_path, tiny_llama, alpaca_small):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("trainer:\n  seed: 1\n  bogus_key: 3\n")
    args = [
        "train",
        "-d",
        str(alpaca_small),
        "-m",
        str(tiny_llama),
        "-o",
        str(tmp_path / "o"),
        "-c",
        str(cfg),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {cfg}:3: trainer.bogus_key: is not a transformers.TrainingArguments field"
    )


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--epochs", "-1"], ["--epochs", "inf"]])
def test_zero_epochs_is_refused(tmp_path, tiny_llama, alpaca_small, flags):
    args = ["train", "-d", str(alpaca_small), "-m", str(tiny_llama), "-o", str(tmp_path / "o"), *flags]
    res = runner.invoke(app, args)
    assert res.exit_code in (1, 2) and "--epochs" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()
    with pytest.raises(SelfInstructError, match="`--max-steps` must be"):
        train(SFTConfig(model=str(tiny_llama)), alpaca_small, tmp_path / "o", max_steps=0)
