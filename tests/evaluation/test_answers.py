"""What a model is (fingerprint), how it is prompted (from its own files), and one engine at a time.
Run: .venv/bin/pytest -q tests/evaluation/test_answers.py"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from selfinstruct.errors import InputError, SelfInstructError
from selfinstruct.evaluation.answers import PLAIN_STOP, AnswerBook, Item, fingerprint, model_ref, request_for
from selfinstruct.evaluation.backends import EngineSlot
from selfinstruct.llm.base import Sampling
from selfinstruct.llm.config import OpenAIConfig


def _checkpoint(path, *, chat: bool, weights: bytes = b"w" * 100):
    path.mkdir()
    (path / "config.json").write_text('{"architectures": ["X"]}')
    (path / "model.safetensors").write_bytes(weights)
    cfg = {"eos_token": "<e>"} | ({"chat_template": "{{ messages }}"} if chat else {})
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return path


def test_fingerprint_follows_the_files_not_the_path(tmp_path):
    a = _checkpoint(tmp_path / "a", chat=True)
    moved = tmp_path / "elsewhere"
    shutil.copytree(a, moved)
    assert fingerprint(a) == fingerprint(moved)
    (moved / "metrics.jsonl").write_text("{}\n")  # training logs and eval outputs are not the model
    (moved / "eval").mkdir()
    assert fingerprint(a) == fingerprint(moved)
    (moved / "model.safetensors").write_bytes(b"v" * 100)  # retrained: same size, other weights
    assert fingerprint(a) != fingerprint(moved)
    assert fingerprint("my-served-model") == "served:my-served-model"


def test_prompting_comes_from_the_checkpoint(tmp_path):
    chat = model_ref(_checkpoint(tmp_path / "chat", chat=True))
    base = model_ref(_checkpoint(tmp_path / "base", chat=False))
    trained = _checkpoint(tmp_path / "student", chat=True)
    (trained / "sft.json").write_text(
        json.dumps({"result": {"template": "plain", "base_model": str(tmp_path)}})
    )
    assert (chat.mode, base.mode, model_ref(trained).mode) == ("chat", "plain", "plain")
    item = Item(id="x", instruction="Name a colour.")
    s = Sampling(temperature=0.0, max_tokens=8)
    assert request_for(chat, item, s).messages == ({"role": "user", "content": "Name a colour."},)
    raw = request_for(base, item, s)
    assert raw.prompt.endswith("## Reply\n") and "Name a colour." in raw.prompt
    assert raw.sampling.stop == PLAIN_STOP and raw.sampling.max_tokens == 8


def test_a_torn_last_answer_is_cut_and_regenerated(tmp_path, scripted):
    ref = model_ref("served-model")
    items = [Item(id=f"i{k}", instruction=f"Say {k}.") for k in range(3)]
    backend = scripted(lambda r: "ok")
    book = AnswerBook(tmp_path / "answers.jsonl")
    book.answer(ref, items, Sampling(temperature=0.0), lambda _: backend)
    text = (tmp_path / "answers.jsonl").read_text()
    (tmp_path / "answers.jsonl").write_text(text[:-20])  # a crash in the middle of the last line
    backend.requests = 0
    again = AnswerBook(tmp_path / "answers.jsonl").answer(
        ref, items, Sampling(temperature=0.0), lambda _: backend
    )
    assert backend.requests == 1 and all(a.text == "ok" for a in again.values())


def test_engine_slot_keeps_one_backend_per_model():
    slot = EngineSlot(OpenAIConfig(base_urls=["http://127.0.0.1:9/v1"], model="-"))
    a = slot("model-a")
    assert slot("model-a") is a and slot.starts == 1 and a.model == "model-a"
    b = slot("model-b")
    assert b is not a and b.model == "model-b" and slot.starts == 2
    slot.close()
    assert slot("model-b") is not b and slot.starts == 3
    slot.close()


def _answers(tmp_path, scripted, n: int = 2) -> bytes:
    """The bytes of a real answers file with `n` answers."""
    items = [Item(id=f"i{k}", instruction=f"Say {k}.") for k in range(n)]
    AnswerBook(tmp_path / "answers.jsonl").answer(
        model_ref("served-model"), items, Sampling(temperature=0.0), lambda _: scripted(lambda r: "ok")
    )
    return (tmp_path / "answers.jsonl").read_bytes()


@pytest.mark.parametrize(
    "text",
    [
        b"line one of my notes\nmy last line, no newline at end",  # not JSON at all
        b"my notes, one line with no newline",  # nothing before the tail to tell
        b'{"a": 1}\n{"b": 2}',  # JSON records, not answers
        b"ANSWERS my last line, no newline",  # answers before it, a tail that is no answer's start
        b'ANSWERS{"key": "k", "note": "mine"}',  # a whole record that only lacks its newline, not an answer
        b'ANSWERS[{"key": ',  # not the start of an answer line either
    ],
)
def test_a_file_that_is_not_an_answers_file_is_refused_untouched(tmp_path, scripted, text):
    # Only a torn tail of our own file is a crash's: anything else is the user's, and cutting it loses data.
    if text.startswith(b"ANSWERS"):
        text = _answers(tmp_path, scripted) + text.removeprefix(b"ANSWERS")
    path = tmp_path / "answers.jsonl"
    path.write_bytes(text)
    with pytest.raises(SelfInstructError) as err:
        AnswerBook(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == text


def test_a_line_that_is_no_answer_is_one_error_naming_file_line_and_field(tmp_path, scripted):
    good = _answers(tmp_path, scripted)
    path = tmp_path / "answers.jsonl"
    path.write_bytes(good + b'{"key": "k", "model": "m"}\n')
    with pytest.raises(InputError) as err:
        AnswerBook(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, "fingerprint")
    assert path.read_bytes() == good + b'{"key": "k", "model": "m"}\n'


def test_a_whole_last_answer_without_its_newline_is_kept(tmp_path, scripted):
    # A crash between a line and its newline: the answer is whole, so it gets its newline and is reused.
    good = _answers(tmp_path, scripted)
    path = tmp_path / "answers.jsonl"
    path.write_bytes(good[:-1])
    assert len(AnswerBook(path).answers) == 2 and path.read_bytes() == good
    path.write_bytes(good[: good.index(b"\n") + 12])  # torn inside the second answer: it is cut
    assert len(AnswerBook(path).answers) == 1 and path.read_bytes() == good[: good.index(b"\n") + 1]
    path.write_bytes(b'{"key": "ab')  # a crash inside the very first write
    assert AnswerBook(path).answers == {} and path.read_bytes() == b""


@pytest.mark.parametrize("kind", ["link", "dangling", "directory", "fifo"])
def test_a_link_or_a_file_that_is_not_regular_is_refused_before_anything_is_written(tmp_path, scripted, kind):
    target = tmp_path / "elsewhere" / "precious.jsonl"
    target.parent.mkdir()
    path = tmp_path / "out" / "answers.jsonl"
    path.parent.mkdir()
    if kind == "link":
        target.write_bytes(_answers(tmp_path, scripted)[:-1])  # even a file of answers: it is not ours
        path.symlink_to(target)
    elif kind == "dangling":
        path.symlink_to(target)
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    before = target.read_bytes() if target.exists() else None
    with pytest.raises(SelfInstructError, match="is not a regular file"):
        AnswerBook(path)
    assert (target.read_bytes() if target.exists() else None) == before


def test_a_damaged_sft_json_in_a_model_folder_is_one_line(tmp_path):
    """`model_ref` read sft.json's template with bare indexing: a damaged file was a KeyError traceback."""
    (tmp_path / "config.json").write_text("{}")
    for text in ('{"result": {}}', "[1]", '{"result": {"base_model": '):
        (tmp_path / "sft.json").write_text(text)
        with pytest.raises(InputError, match="sft.json"):
            model_ref(tmp_path)
