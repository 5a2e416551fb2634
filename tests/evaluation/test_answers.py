"""What a model is (fingerprint), how it is prompted (from its own files), and one engine at a time.
Run: .venv/bin/pytest -q tests/evaluation/test_answers.py"""

from __future__ import annotations

import json
import shutil

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
    (trained / "sft.json").write_text(json.dumps({"result": {"template": "plain"}}))
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
