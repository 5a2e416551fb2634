"""An unmerged LoRA student (an adapter, not a model) is refused with the setting to change, before any engine
starts. Run: .venv/bin/pytest -q tests/evaluation/test_adapter_refusal.py"""

import pytest

from selfinstruct.errors import SelfInstructError
from selfinstruct.evaluation.backends import EngineSlot


def test_an_adapter_only_student_is_refused_with_the_setting_to_change(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    slot = EngineSlot()
    with pytest.raises(SelfInstructError, match=r"lora\.merge: true"):
        slot(str(tmp_path))
    assert slot.starts == 0
