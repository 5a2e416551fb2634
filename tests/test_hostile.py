"""Hostile input through the real CLI (issue 11): every kind of bad file, recipe, flag or path gets one line.

Each table row writes its files into a fresh directory, runs one command and checks the contract every command
keeps: exit code 1 (2 for a bad flag), exactly one `error:` line on stderr naming file, line and field where they
apply, no traceback, no control character anywhere in the output, and nothing written or changed on disk.
Most rows run in process (CliRunner); a few run `selfinstruct` in a subprocess, as a user would.

    .venv/bin/pytest -q tests/test_hostile.py
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfinstruct.cli import app

runner = CliRunner()

# Any C0/C1 control character but newline and tab: none may reach a terminal from our output.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ESC = "\x1b[2J"

TASK = '{"instruction": "Add the numbers.", "instances": [{"input": "2 3", "output": "5"}]}'
EXAMPLE = '{"instruction": "Add the numbers.", "input": "2 3", "output": "5"}'
RECIPE = "name: hostile\nloop:\n  target: 5\n"
DEEP = 100_000


def _bomb() -> str:
    """Six levels of aliases under backend.engine_kwargs, each multiplying by ten (0.7 KB, 10^7 values)."""
    lines = ['    a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"    {name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    return "name: bomb\nbackend:\n  engine_kwargs:\n" + "\n".join(lines) + "\n"


@dataclass
class Case:
    name: str
    args: list[str]  # "{d}" stands for the case's directory
    files: dict[str, str | bytes] = field(default_factory=dict)
    expect: str = ""  # a part of the one error line ("{d}" as above)
    code: int = 1


def seeds(name: str, content: str | bytes, expect: str, file: str = "in.jsonl") -> Case:
    shown = file.replace("\x1b", "\ufffd")  # how the one printer shows a control character
    return Case(name, ["seeds", "validate", "{d}/" + file], {file: content}, "{d}/" + shown + expect)


# fmt: off
CASES = [
    # --- the reader: nesting, numbers, keys, encodings, sizes (seeds validate) -----------------------------
    seeds("deep_jsonl_line", TASK + "\n" + "[" * DEEP + "\n", ":2: nested deeper than 64 levels"),
    seeds("deep_json_array", "[" * DEEP, ":1: nested deeper than 64 levels", "in.json"),
    seeds("deep_objects", '{"a":' * DEEP + "1" + "}" * DEEP + "\n", ":1: nested deeper"),
    seeds("deep_inside_string_is_fine_but_bad_field", '{"instruction": "' + "[" * 200 + '"}\n', ":1: instances"),
    seeds("int_5000_digits", '{"instruction": "x", "output": "y", "n": ' + "9" * 5000 + "}\n", ":1: a number with 5000 digits"),
    seeds("int_in_array", '[{"instruction": "x", "output": ' + "1" * 4500 + "}]", ":1: a number with 4500 digits", "in.json"),
    seeds("nan", '{"instruction": "x", "output": NaN}\n', ":1: NaN is not JSON"),
    seeds("infinity", '{"instruction": "x", "output": "y", "score": Infinity}\n', ":1: Infinity is not JSON"),
    seeds("minus_infinity", TASK + '\n{"instruction": "x", "output": -Infinity}\n', ":2: -Infinity is not JSON"),
    seeds("float_overflow", '{"instruction": "x", "output": "y", "p": 1e999}\n', ":1: number 1e999 overflows"),
    seeds("duplicate_long_key", '{"' + "k" * 10**6 + '": 1, "' + "k" * 10**6 + '": 2}\n', ":1: " + "k" * 79 + "…: duplicate key"),
    seeds("duplicate_key", '{"instruction": "x", "output": "y", "output": "z"}\n', ":1: output: duplicate key"),
    seeds("duplicate_nested_key", '{"instruction": "x", "instances": [{"input": "a", "input": "b", "output": "c"}]}\n', ":1: input: duplicate key"),
    seeds("duplicate_key_in_array", "[\n" + EXAMPLE + ',\n{"instruction": "x", "instruction": "y", "output": "z"}\n]', ":3: instruction: duplicate key", "in.json"),
    seeds("utf16_bom", (TASK + "\n").encode("utf-16"), ":1: UTF-16 text"),
    seeds("utf16_be_bom", b"\xfe\xff" + (TASK + "\n").encode("utf-16-be"), ":1: UTF-16 text"),
    seeds("utf32_bom", (TASK + "\n").encode("utf-32"), ":1: UTF-32 text"),
    seeds("utf16_json_array", ("[" + EXAMPLE + "]").encode("utf-16"), ":1: UTF-16 text", "in.json"),
    seeds("latin1_line", (TASK + '\n{"instruction": "Caf\xe9", "output": "y"}\n').encode("latin-1"), ":2: not UTF-8 text"),
    seeds("nul_bytes", TASK + "\n\x00\x00\x00\n", ":2: malformed JSON"),
    seeds("empty_file", "", ":1: file is empty"),
    seeds("blank_file", "\n \n\t\n", ":1: file is empty"),
    seeds("truncated_array", "[" + EXAMPLE + ",", ":1: malformed JSON", "in.json"),
    seeds("array_then_garbage", "[" + EXAMPLE + "] trailing", ":1: malformed JSON (extra data", "in.json"),
    seeds("array_missing_comma", "[\n" + EXAMPLE + "\n" + EXAMPLE + "\n]", ":3: malformed JSON (expected ','", "in.json"),
    seeds("array_non_object", "[" + EXAMPLE + ", 3]", ":1: [1]: expected a JSON object, got int", "in.json"),
    seeds("line_non_object", TASK + "\n[1, 2]\n", ":2: expected a JSON object, got list"),
    seeds("line_two_objects", TASK + " " + TASK + "\n", ":1: malformed JSON"),
    seeds("unterminated_string", TASK + '\n{"instruction": "x\n', ":2: malformed JSON"),
    seeds("missing_instruction", '{"output": "y"}\n', ":1: instruction: missing"),
    seeds("instruction_not_string", '{"instruction": 3, "output": "y"}\n', ":1: instruction: must be a string"),
    seeds("instances_not_list", '{"instruction": "x", "instances": "y"}\n', ":1: instances: must be a list"),
    seeds("instances_empty", '{"instruction": "x", "instances": []}\n', ":1: instances: no instances"),
    seeds("instance_no_output", '{"instruction": "x", "instances": [{"input": "a"}]}\n', ":1: instances[0].output: missing"),
    seeds("typo_field", '{"instruction": "x", "output": "y", "is_clasification": true}\n', ":1: is_clasification: unknown field"),
    seeds("bool_as_string", '{"instruction": "x", "output": "y", "is_classification": "yes"}\n', ":1: is_classification: must be true or false"),
    seeds("array_element_field", "[" + EXAMPLE + ', {"instruction": 5, "output": "y"}]', ":1: [1].instruction: must be a string", "in.json"),
    seeds("duplicate_id", '{"id": "a", "instruction": "x", "output": "y"}\n{"id": "a", "instruction": "z", "output": "w"}\n', ":2: id: duplicate id 'a'"),
    seeds("control_in_id", '{"id": "t\\u001b[2J", "instruction": "x", "output": "y"}\n', ':1: id: holds a control character, got string "t\\u001b[2J"'),
    seeds("lone_surrogate", '{"instruction": "x \\ud83d", "output": "y"}\n', ":1: holds half a surrogate pair"),
    seeds("escape_in_value", '{"instruction": "x", "output": "y", "is_classification": "\\u001b[2J"}\n', ":1: is_classification"),
    seeds("escape_in_file_name", '{"instruction": 1}\n', ":1: instruction", file="bad\x1b[2J.jsonl"),
    seeds("huge_line", TASK + "\n" + "a" * (16 * 2**20 + 10) + "\n", ":2: line longer than 16 MiB"),
    Case("missing_file", ["seeds", "validate", "{d}/nowhere.jsonl"], {}, "{d}/nowhere.jsonl: no such file"),
    Case("dir_without_data", ["seeds", "validate", "{d}"], {"README.md": "x"}, "directory holds no .jsonl"),
    Case("dev_zero", ["seeds", "validate", "/dev/zero"], {}, "/dev/zero:1: line longer than 16 MiB"),
    Case("root_bad_option", ["--bogus"], {}, "No such option: --bogus", code=2),
    Case("unknown_command", [f"nosuch{ESC}"], {}, "No such command", code=2),
    Case("seeds_no_path", ["seeds", "validate"], {}, "Missing argument", code=2),
    # --- filter ------------------------------------------------------------------------------------------------
    Case("filter_deep_array_skip", ["filter", "{d}/in.json", "--out", "{d}/out", "--skip-bad-lines"], {"in.json": "[" * DEEP}, "{d}/in.json:1: nested deeper"),
    Case("filter_dev_zero_skip", ["filter", "/dev/zero", "--out", "{d}/out", "--skip-bad-lines"], {}, "/dev/zero:1: line longer"),
    Case("filter_utf16_skip", ["filter", "{d}/in.jsonl", "--out", "{d}/out", "--skip-bad-lines"], {"in.jsonl": (TASK + "\n").encode("utf-16")}, "{d}/in.jsonl:1: UTF-16"),
    Case("filter_bad_line_no_skip", ["filter", "{d}/in.jsonl", "--out", "{d}/a/b"], {"in.jsonl": TASK + "\n{nope\n"}, "{d}/in.jsonl:2: malformed JSON"),
    Case("filter_nan", ["filter", "{d}/in.jsonl", "--out", "{d}/out"], {"in.jsonl": '{"instruction": "x", "output": NaN}\n'}, "{d}/in.jsonl:1: NaN"),
    Case("filter_bad_stage", ["filter", "{d}/in.jsonl", "--out", "{d}/out", "--filters", "rouge,bogus"], {"in.jsonl": TASK + "\n"}, "`--filters` must be"),
    Case("filter_threshold_not_number", ["filter", "{d}/in.jsonl", "--out", "{d}/out", "--rouge-threshold", "high"], {"in.jsonl": TASK + "\n"}, "--rouge-threshold", code=2),
    Case("filter_no_out", ["filter", "{d}/in.jsonl"], {"in.jsonl": TASK + "\n"}, "Missing option '--out'", code=2),
    # --- export ------------------------------------------------------------------------------------------------
    Case("export_duplicate_key", ["export", "{d}/tasks.jsonl", "--out", "{d}/x.json"], {"tasks.jsonl": '{"id": "t", "id": "u", "instruction": "x", "instances": []}\n'}, "{d}/tasks.jsonl:1: id: duplicate key"),
    Case("export_deep", ["export", "{d}/tasks.jsonl", "--out", "{d}/x.json"], {"tasks.jsonl": "[" * DEEP + "\n"}, "{d}/tasks.jsonl:1: nested deeper"),
    Case("export_bad_format", ["export", "{d}/tasks.jsonl", "--format", f"x{ESC}", "--out", "{d}/x.json"], {"tasks.jsonl": TASK + "\n"}, "--format must be one of"),
    Case("export_missing", ["export", "{d}/none", "--out", "{d}/x.json"], {}, "{d}/none"),
    # --- audit -------------------------------------------------------------------------------------------------
    Case("audit_rejects_nan", ["audit", "{d}/run"], {"run/tasks.jsonl": "", "run/rejects.jsonl": '{"id": "r", "stage": "x", "reason": NaN}\n'}, "{d}/run/rejects.jsonl:1: NaN"),
    Case("audit_rejects_deep", ["audit", "{d}/run"], {"run/tasks.jsonl": "", "run/rejects.jsonl": "{}\n" + "{" * DEEP + "\n"}, "{d}/run/rejects.jsonl"),
    Case("audit_escape_path", ["audit", "{d}/" + ESC + "run"], {}, ""),
    Case("audit_limit_not_int", ["audit", "{d}", "--limit", "many"], {}, "--limit", code=2),
    # --- readmit -----------------------------------------------------------------------------------------------
    Case("readmit_escape_id", ["readmit", "{d}/run", "--ids", f"rej-1{ESC}"], {"run/tasks.jsonl": ""}, "--ids: 'rej-1\\x1b[2J' holds a control character"),
    Case("readmit_escape_by", ["readmit", "{d}/run", "--ids", "rej-1", "--by", f"ana{ESC}"], {"run/tasks.jsonl": ""}, "--by: 'ana\\x1b[2J' holds a control character"),
    Case("readmit_no_ids", ["readmit", "{d}/run"], {"run/tasks.jsonl": ""}, "Missing option '--ids'", code=2),
    # --- generate / run: recipe errors only (no engine starts) -------------------------------------------------
    Case("recipe_utf16", ["generate", "{d}/r.yaml"], {"r.yaml": RECIPE.encode("utf-16")}, "{d}/r.yaml:1: UTF-16 text"),
    Case("recipe_latin1", ["generate", "{d}/r.yaml"], {"r.yaml": "name: caf\xe9\n".encode("latin-1")}, "{d}/r.yaml:1: not UTF-8"),
    Case("recipe_duplicate_key", ["generate", "{d}/r.yaml"], {"r.yaml": RECIPE + "  target: 50000\n"}, "{d}/r.yaml:4: loop.target: duplicate key (first at line 3)"),
    Case("recipe_duplicate_section", ["generate", "{d}/r.yaml"], {"r.yaml": RECIPE + "loop:\n  seed: 1\n"}, "{d}/r.yaml:4: loop: duplicate key"),
    Case("recipe_alias_bomb", ["generate", "{d}/r.yaml"], {"r.yaml": _bomb()}, "alias bomb"),
    Case("recipe_recursive_alias", ["generate", "{d}/r.yaml"], {"r.yaml": "name: x\nloop: &l\n  seed: *l\n"}, "{d}/r.yaml:2: an alias refers to itself"),
    Case("recipe_deep", ["generate", "{d}/r.yaml"], {"r.yaml": "[" * DEEP}, "{d}/r.yaml: malformed YAML (nested too deeply)"),
    Case("recipe_nested_100", ["generate", "{d}/r.yaml"], {"r.yaml": "name: x\nbackend:\n  engine_kwargs:\n    a: " + "[" * 100 + "]" * 100 + "\n"}, "{d}/r.yaml:4: nested deeper than 64 levels"),
    Case("recipe_huge_int", ["generate", "{d}/r.yaml"], {"r.yaml": "loop:\n  target: " + "9" * 5000 + "\n"}, "{d}/r.yaml:2: malformed YAML (cannot read this value"),
    Case("recipe_python_tag", ["generate", "{d}/r.yaml"], {"r.yaml": 'x: !!python/object/apply:os.system ["true"]\n'}, "{d}/r.yaml:1: malformed YAML"),
    Case("recipe_malformed", ["generate", "{d}/r.yaml"], {"r.yaml": "name: x\nloop: [1, 2\n"}, "{d}/r.yaml:3: malformed YAML"),
    Case("recipe_unknown_key", ["generate", "{d}/r.yaml"], {"r.yaml": RECIPE + "  colour: red\n"}, "{d}/r.yaml:4: loop.colour: Extra inputs are not permitted"),
    Case("recipe_wrong_type", ["generate", "{d}/r.yaml"], {"r.yaml": "name: x\nloop:\n  target: many\n"}, "{d}/r.yaml:3: loop.target:"),
    Case("recipe_missing_section_field", ["generate", "{d}/r.yaml"], {"r.yaml": "name: x\nbackend:\n  kind: openai\n"}, "{d}/r.yaml:2: backend"),
    Case("recipe_is_list", ["generate", "{d}/r.yaml"], {"r.yaml": "- a\n- b\n"}, "{d}/r.yaml:1: a recipe must be a mapping"),
    Case("recipe_empty", ["generate", "{d}/r.yaml"], {"r.yaml": ""}, "{d}/r.yaml:1: a recipe must be a mapping"),
    Case("recipe_section_scalar_with_flag", ["generate", "{d}/r.yaml", "-n", "3"], {"r.yaml": "name: x\nloop: 5\n"}, "{d}/r.yaml:2: loop: must be a mapping"),
    Case("recipe_escape_name", ["generate", "{d}/r.yaml"], {"r.yaml": 'name: "run\\e[2J"\n'}, "{d}/r.yaml:1: name:"),
    Case("recipe_dev_zero", ["generate", "/dev/zero"], {}, "/dev/zero: larger than 1 MiB"),
    Case("recipe_missing", ["generate", "{d}/none.yaml"], {}, "{d}/none.yaml: no such recipe"),
    Case("recipe_is_dir", ["generate", "{d}"], {}, "is a directory"),
    Case("generate_n_not_int", ["generate", "{d}/r.yaml", "-n", "lots"], {"r.yaml": RECIPE}, "--num-instructions", code=2),
    Case("run_duplicate_key", ["run", "{d}/r.yaml"], {"r.yaml": RECIPE + "  target: 50000\n"}, "{d}/r.yaml:4: loop.target: duplicate key"),
    Case("run_alias_bomb", ["run", "{d}/r.yaml"], {"r.yaml": _bomb()}, "alias bomb"),
    Case("run_utf16", ["run", "{d}/r.yaml"], {"r.yaml": RECIPE.encode("utf-16")}, "UTF-16"),
    # --- train: a bad SFT config fails before torch; bad data (see the report on issue 11) --------------------
    Case("train_config_utf16", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o", "--config", "{d}/c.yaml"], {"d.jsonl": EXAMPLE + "\n", "c.yaml": "max_length: 64\n".encode("utf-16")}, "{d}/c.yaml:1: UTF-16"),
    Case("train_config_duplicate", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o", "--config", "{d}/c.yaml"], {"d.jsonl": EXAMPLE + "\n", "c.yaml": "max_length: 64\nmax_length: 4096\n"}, "{d}/c.yaml:2: max_length: duplicate key"),
    Case("train_config_bad_value", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o", "--config", "{d}/c.yaml"], {"d.jsonl": EXAMPLE + "\n", "c.yaml": "sft:\n  template: fancy\n"}, "{d}/c.yaml:2: template:"),
    Case("train_config_bomb", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o", "--config", "{d}/c.yaml"], {"d.jsonl": EXAMPLE + "\n", "c.yaml": _bomb()}, "alias bomb"),
    Case("train_steps_not_int", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o", "--max-steps", "x"], {"d.jsonl": EXAMPLE + "\n"}, "--max-steps", code=2),
    # --- eval: held-out data is read before any engine starts ----------------------------------------------------
    Case("eval_data_dup_key", ["eval", "rouge", "--model", "{d}/student", "--data", "{d}/e.jsonl"], {"student/config.json": "{}", "e.jsonl": '{"instruction": "a", "instruction": "b"}\n'}, "{d}/e.jsonl:1: instruction: duplicate key"),
    Case("eval_data_utf16", ["eval", "rouge", "--model", "{d}/student", "--data", "{d}/e.jsonl"], {"student/config.json": "{}", "e.jsonl": EXAMPLE.encode("utf-16")}, "{d}/e.jsonl:1: UTF-16"),
    Case("eval_model_missing", ["eval", "rouge", "--model", "{d}/none"], {}, "not a Hugging Face checkpoint"),
    Case("eval_limit_zero", ["eval", "rouge", "--model", "{d}/none", "--limit", "0"], {}, "--limit", code=2),
]
# fmt: on

# Train rows whose data is bad load torch first (sft/train.py reads data after importing it): run last.
SLOW_CASES = [
    Case("train_data_nan", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o"], {"d.jsonl": '{"instruction": "x", "output": NaN}\n'}, "{d}/d.jsonl:1: NaN"),
    Case("train_data_deep", ["train", "--data", "{d}/d.jsonl", "--out", "{d}/o"], {"d.jsonl": EXAMPLE + "\n" + "[" * DEEP + "\n"}, "{d}/d.jsonl:2: nested deeper"),
]  # fmt: skip


def _write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with its content hash (directories as such): any write shows up."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def check(res_code: int, stdout: str, stderr: str, case: Case, d: Path) -> None:
    where = f"{case.name}: stdout={stdout[-500:]!r} stderr={stderr[-500:]!r}"
    assert res_code == case.code, where
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), where
    assert case.expect.replace("{d}", str(d)) in lines[0], where
    assert "Traceback" not in stdout + stderr, where
    assert not CONTROL.search(stdout + stderr), where


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    d = tmp_path / "case"
    d.mkdir()
    monkeypatch.chdir(d)  # a command that wrongly wrote to a default path (data/runs/...) writes here
    return d


def _run_in_process(case: Case, d: Path) -> None:
    _write(d, case.files)
    before = snapshot(d)
    res = runner.invoke(app, [a.replace("{d}", str(d)) for a in case.args])
    check(res.exit_code, res.stdout, res.stderr, case, d)
    assert snapshot(d) == before, f"{case.name} changed files on disk"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_one_clear_line(case, case_dir):
    _run_in_process(case, case_dir)


@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda c: c.name)
def test_bad_training_data_is_one_clear_line(case, case_dir, monkeypatch):
    # The embedded model by absolute path, since the case runs in its own directory.
    model = Path(__file__).parents[1] / "data" / "models" / "smollm2-135m-instruct"
    monkeypatch.setenv("SELFINSTRUCT_MODEL_DIR", str(model))
    _run_in_process(case, case_dir)


def test_table_covers_sixty_kinds_and_every_command():
    cases = CASES + SLOW_CASES
    assert len({c.name for c in cases}) == len(cases) >= 60
    commands = {c.args[0] for c in cases}
    assert commands >= {"seeds", "filter", "export", "audit", "readmit", "generate", "train", "eval", "run"}


# ----------------------------------------------------------------------------------------------------------
# as a user runs it: a real process, a real terminal-less pipe


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfinstruct", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


@pytest.mark.parametrize(
    "name",
    ["escape_in_file_name", "dev_zero", "recipe_alias_bomb", "filter_deep_array_skip", "seeds_no_path"],
)
def test_in_a_subprocess(name, case_dir):
    case = next(c for c in CASES if c.name == name)
    _write(case_dir, case.files)
    before = snapshot(case_dir)
    res = _cli([a.replace("{d}", str(case_dir)) for a in case.args], case_dir)
    check(res.returncode, res.stdout, res.stderr, case, case_dir)
    assert snapshot(case_dir) == before


def test_seed_file_through_a_pipe_is_read_once(case_dir):
    """`<(cat seeds.jsonl)` is a pipe: it can be read once, so the format is told from the bytes already read."""
    seeds_file = Path(__file__).parents[1] / "seeds" / "seed_tasks.jsonl"
    res = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m selfinstruct seeds validate <(cat "{seeds_file}") --json'],
        cwd=case_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == '{"tasks": 175, "classification": 33, "empty_input": 65}'
    array = case_dir / "a.json"
    array.write_text("[" + EXAMPLE + "]")
    res = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m selfinstruct seeds validate <(cat "{array}") --json'],
        cwd=case_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0 and '"tasks": 1' in res.stdout, res.stderr
    res = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m selfinstruct filter <(cat "{seeds_file}") --out out --json'],
        cwd=case_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0 and json.loads(res.stdout)["records"] == 175, res.stderr


def test_utf8_bom_and_crlf_are_read(case_dir):
    (case_dir / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (TASK + "\r\n" + EXAMPLE + "\r\n").encode())
    res = runner.invoke(app, ["seeds", "validate", str(case_dir / "bom.jsonl"), "--json"])
    assert res.exit_code == 0 and '"tasks": 2' in res.stdout, res.output


def test_skip_bad_lines_records_a_deep_line_and_goes_on(case_dir):
    src = case_dir / "in.jsonl"
    src.write_text(TASK + "\n" + "[" * DEEP + "\n" + '{"instruction": "x", "output": NaN}\n')
    res = runner.invoke(
        app, ["filter", str(src), "--out", str(case_dir / "out"), "--skip-bad-lines", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["malformed"] == 2
    rejects = (case_dir / "out" / "rejects.jsonl").read_text()
    assert '"line": 2' in rejects and "nested deeper" in rejects and "NaN is not JSON" in rejects


def test_escape_sequences_in_rejects_never_reach_the_terminal(case_dir):
    """A reject whose stage, reason, id and instruction hold ESC[2J: audit shows them replaced, JSON escaped."""
    run = case_dir / "run"
    run.mkdir()
    (run / "tasks.jsonl").write_text("")
    evil = "\\u001b[2J\\u009b2J"
    (run / "rejects.jsonl").write_text(
        f'{{"id": "rej-{evil}", "stage": "parse{evil}", "reason": "odd{evil}", "raw": "x{evil}", '
        f'"record": {{"instruction": "Say {evil}"}}, "evidence": {{"why": "{evil}"}}}}\n'
    )
    for args in (["audit", str(run)], ["audit", str(run), "--json"], ["readmit", str(run), "--ids", "rej-x"]):
        res = runner.invoke(app, args)
        assert not CONTROL.search(res.stdout + res.stderr), (args, res.output)
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["audit", str(run)])
    assert res.exit_code == 0 and "\ufffd[2J" in res.stdout, res.output
    res = runner.invoke(app, ["audit", str(run), "--json"])
    assert "\\u001b[2J\\u009b2J" in res.stdout


@pytest.mark.parametrize(
    "text, expect",
    [
        ('{"a": 1,\n "a": 2}', ":1: a: duplicate key"),
        ('{"a": NaN}', ":1: NaN is not JSON"),
        ('{"a": 1}\nmore', ":1: malformed JSON (extra data"),
        ("[1,\n2", ":2: malformed JSON"),
        ("[" * DEEP, ":1: nested deeper"),
        (" \n", ":1: file is empty"),
    ],
)
def test_read_json_is_as_strict_as_records(tmp_path, text, expect):
    from selfinstruct.errors import InputError
    from selfinstruct.jsonl import read_json

    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_json(path)
    assert str(info.value).startswith(str(path) + expect)
    path.write_text('{"ok": [1, 2.5, "\\u00e9"]}')
    assert read_json(path) == {"ok": [1, 2.5, "é"]}


def test_the_printer_keeps_styles_and_drops_control_characters():
    """On a real terminal rich's own colour codes pass; the same bytes inside text do not."""
    import io

    from rich.text import Text

    from selfinstruct.cli.app import SafeConsole

    out = io.StringIO()
    console = SafeConsole(file=out, force_terminal=True, color_system="standard", markup=False)
    console.print(Text("ok", style="red"), Text(f"bad{ESC}\x9b2J\u202eevil\rx"))
    text = out.getvalue()
    assert "\x1b[31mok" in text  # the style
    assert "bad\ufffd[2J\ufffd2J\ufffdevil" in text and ESC not in text and "\r" not in text


def test_leading_blank_lines_keep_line_numbers(case_dir):
    """Blank lines before the first record are counted, not kept (an endless `yes ''` must not fill memory)."""
    jsonl, array = case_dir / "a.jsonl", case_dir / "a.json"
    jsonl.write_text("\n\n  \n" + TASK + "\n{bad\n")
    array.write_text("\n\n[\n" + EXAMPLE + ",\n" + '{"instruction": 1, "output": "y"}' + "\n]")
    for path, expect in ((jsonl, ":5: malformed JSON"), (array, ":5: [1].instruction: must be a string")):
        res = runner.invoke(app, ["seeds", "validate", str(path)])
        assert res.exit_code == 1 and f"{path}{expect}" in res.stderr, res.output
