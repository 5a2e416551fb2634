"""Schema round trips and refusals. Run: pytest tests/test_schema.py"""

import json

import pytest

from selfinstruct.errors import InputError
from selfinstruct.jsonl import dumps, iter_json_objects
from selfinstruct.schema import Example, Instance, Reject, RunManifest, Task, content_id
from selfinstruct.stats import Stats
from selfinstruct.store import read_jsonl


def test_task_round_trip_through_jsonl(tmp_path):
    task = Task(
        id="t-1",
        instruction="Name a prime number.",
        instances=[Instance(output="7", meta={"finish_reason": "stop"})],
        is_classification=False,
        provenance="generated",
        round=3,
        meta={"raw": "1. Name a prime number."},
    )
    path = tmp_path / "tasks.jsonl"
    path.write_text(dumps(task) + "\n")
    (back,) = read_jsonl(path, Task)
    assert back == task
    assert back.examples() == [
        Example(id="t-1#0", instruction="Name a prime number.", input="", output="7", meta={"task_id": "t-1"})
    ]


def test_reject_and_manifest_round_trip():
    rej = Reject(
        id="r-1", stage="rouge", reason="rouge_too_similar", evidence={"score": 0.75}, raw="x", round=1
    )
    assert Reject.model_validate_json(rej.model_dump_json()) == rej
    man = RunManifest(
        name="n", created="c", updated="u", config={"a": 1}, config_hash="h", model="m", backend="vllm"
    )
    assert RunManifest.model_validate(json.loads(man.model_dump_json())) == man


@pytest.mark.parametrize(
    "obj, field",
    [
        ({"id": "a", "instruction": "  ", "instances": []}, "instruction"),
        ({"id": "a", "instruction": "ok", "instances": [{"input": ""}]}, "instances.0.output"),
        ({"id": "a", "instruction": "ok", "instancez": []}, "instancez"),
        ({"id": "a", "instruction": 3}, "instruction"),
    ],
)
def test_bad_task_names_its_field(tmp_path, obj, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "ok", "instruction": "fine"}) + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(InputError) as e:
        list(read_jsonl(path, Task))
    assert e.value.line == 2 and e.value.field == field
    assert str(e.value).startswith(f"{path}:2: {field}: ")


def test_json_array_elements_report_their_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"a": 1},\n  {"b": 2},\n  3\n]\n')
    with pytest.raises(InputError, match=r"a.json:4: \[2\]: expected a JSON object, got int"):
        list(iter_json_objects(path))


def test_content_id_is_stable_and_distinct():
    assert content_id("t", "x", "y") == content_id("t", "x", "y")
    assert content_id("t", "x", "y") != content_id("t", "xy", "")


def test_stats_add():
    a, b = Stats(), Stats()
    a.count("total", 2)
    a.reject("rouge_too_similar")
    b.count("total")
    b.timings["rouge"] = 1.5
    s = a + b
    assert s.counts == {"total": 3, "rejected": 1, "rejected_rouge_too_similar": 1}
    assert s.timings == {"rouge": 1.5}
