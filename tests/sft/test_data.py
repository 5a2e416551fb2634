"""Reading training data (run directory, alpaca, messages) and packing.

Run: .venv/bin/pytest -q tests/sft/test_data.py
"""

from __future__ import annotations

import json

import pytest

from selfinstruct.errors import InputError
from selfinstruct.schema import Example, Instance, Task
from selfinstruct.sft.data import IGNORE, PackCollator, encode, load_examples, preview
from selfinstruct.sft.render import Renderer
from selfinstruct.stats import Stats


def test_run_directory_gives_one_example_per_instance(tmp_path):
    tasks = [
        Task(
            id="t1",
            instruction="Add the numbers.",
            instances=[Instance(input="2 3", output="5"), Instance(input="1 1", output="2")],
        ),
        Task(id="t2", instruction="Say hello.", instances=[Instance(output="Hello!")]),
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "tasks.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in tasks))
    examples = load_examples(run)
    assert [(e.id, e.input, e.output) for e in examples] == [
        ("t1#0", "2 3", "5"),
        ("t1#1", "1 1", "2"),
        ("t2#0", "", "Hello!"),
    ]


def test_alpaca_and_messages_files(tmp_path, external):
    alpaca = load_examples(external / "stanford_alpaca_pr152_alpaca_5000.json")
    assert len(alpaca) == 5000 and all(e.instruction for e in alpaca)
    assert len({e.id for e in alpaca}) > 4990  # content ids; the file holds a few exact duplicates
    path = tmp_path / "msgs.jsonl"
    path.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
        )
        + "\n"
    )
    (ex,) = load_examples(path)
    assert (ex.instruction, ex.input, ex.output) == ("Hi?", "", "Hello.")


def test_self_instruct_task_files_need_no_ids(tmp_path, external):
    """Task files follow the seed-file rules (`seeds validate`): a missing id is derived from the content."""
    seeds = load_examples(external / "self_instruct_seed_tasks.jsonl")
    assert len(seeds) >= 175 and all(e.meta["task_id"] for e in seeds)
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"instruction": "Add 1 and 2.", "instances": [{"input": "", "output": "3"}]}\n')
    (ex,) = load_examples(path)
    assert (ex.instruction, ex.output) == ("Add 1 and 2.", "3") and ex.id.startswith("task-")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"instruction": "x"}', r"bad.jsonl:2: output: Field required"),
        ('{"instruction": "x", "output": "y", "extra": 1}', r"bad.jsonl:2: extra: Extra inputs"),
        ('{"prompt": "x"}', r"bad.jsonl:2: record: expected alpaca fields"),
        (
            '{"messages": [{"role": "assistant", "content": "y"}]}',
            r"bad.jsonl:2: messages: expected one user",
        ),
        ('{"instruction": "x", "output": "y"', r"bad.jsonl:2: malformed JSON"),
        ('{"instruction": "x", "instances": []}', r"bad.jsonl:2: instances: no instances"),
        ('{"instruction": "   ", "output": "y"}', r"bad.jsonl:2: instruction: is empty"),
        ('{"instruction": "", "output": "y"}', r"bad.jsonl:2: instruction: is empty"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "ok", "output": "ok"}\n' + line + "\n")
    with pytest.raises(InputError, match=match):
        load_examples(path)


def test_run_directory_without_tasks_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="needs a tasks.jsonl"):
        load_examples(tmp_path)


def test_packed_batch_equals_separate_forwards(bpe_pad_eos, tiny_llama):
    """Packing puts examples in one row with position ids restarting at 0; the model's attention (sdpa reads
    the boundaries from the position ids here) must give every example exactly the logits it gets alone."""
    import torch
    from transformers import AutoModelForCausalLM

    r = Renderer(bpe_pad_eos, template="chat")
    exs = [
        Example(id=str(i), instruction=f"Count to {i}.", output=" ".join(map(str, range(1, i + 2))))
        for i in (1, 4, 2)
    ]
    rows = [encode(e, r, 256, Stats()) for e in exs]
    batch = PackCollator()(rows)
    lengths = [len(row["input_ids"]) for row in rows]
    assert batch["input_ids"].shape == (1, sum(lengths)) and "attention_mask" not in batch
    assert batch["position_ids"][0].tolist() == [p for n in lengths for p in range(n)]
    assert batch["labels"][0].tolist() == [lab for row in rows for lab in row["labels"]]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa").eval()
    with torch.no_grad():
        # use_cache=False as in training (the Trainer sets it): with a cache, transformers stops reading
        # boundaries from the position ids, and attention would cross examples.
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        start = 0
        for row, n in zip(rows, lengths, strict=True):
            alone = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            assert torch.allclose(packed[start : start + n], alone, atol=1e-4)
            start += n


def test_preview_colours_the_supervised_tokens(bpe_pad_eos):
    r = Renderer(bpe_pad_eos, template="plain")
    row = encode(Example(id="p", instruction="Say yes.", output="Yes."), r, 256, Stats())
    text = preview(row, bpe_pad_eos)
    green = "".join(text.plain[s.start : s.end] for s in text.spans if "green" in str(s.style))
    assert green == "Yes." + r.stop_token
    assert row["labels"][0] == IGNORE
