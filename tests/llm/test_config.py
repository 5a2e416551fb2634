"""Backend config sections: validation messages, the `kind` switch, no secret in any dump, and errors
raised before any engine or request.

Run: .venv/bin/pytest -q tests/llm/test_config.py
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from selfinstruct.errors import SelfInstructError
from selfinstruct.llm import OpenAIBackend, OpenAIConfig, VLLMConfig, make_backend, parse_backend_config


def test_kind_selects_the_section():
    assert isinstance(parse_backend_config({"kind": "vllm", "max_model_len": 2048}), VLLMConfig)
    cfg = parse_backend_config({"kind": "openai", "base_urls": ["http://127.0.0.1:8000/v1/"], "model": "m"})
    assert isinstance(cfg, OpenAIConfig)
    assert cfg.base_urls == ["http://127.0.0.1:8000/v1"]  # trailing slash dropped, so paths join cleanly


def test_unknown_key_is_an_error_with_its_location():
    with pytest.raises(ValidationError) as e:
        parse_backend_config({"kind": "vllm", "max_modle_len": 10})
    assert "max_modle_len" in str(e.value)
    with pytest.raises(ValidationError):
        parse_backend_config({"kind": "sglang"})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"kind": "vllm", "gpu_memory_utilization": 1.5},
            "`gpu_memory_utilization` must be in (0, 1], got 1.5",
        ),
        ({"kind": "vllm", "dtype": "fp7"}, "`dtype` must be one of"),
        ({"kind": "vllm", "tensor_parallel_size": 0}, "`tensor_parallel_size` must be >= 1, got 0"),
        ({"kind": "vllm", "extra_sampling": {"seed": 1}}, "`extra_sampling` must be free of per-request"),
        (
            {"kind": "openai", "base_urls": ["localhost:8000"], "model": "m"},
            "`base_urls` must be a list of http",
        ),
        (
            {"kind": "openai", "base_urls": ["http://a/v1"], "model": "m", "concurrency": 0},
            "`concurrency` must be >= 1",
        ),
        (
            {"kind": "openai", "base_urls": ["http://a/v1"], "model": "m", "timeout_s": 0},
            "`timeout_s` must be > 0",
        ),
        (
            {
                "kind": "openai",
                "base_urls": ["http://a/v1"],
                "model": "m",
                "backoff_base_s": 5,
                "backoff_max_s": 1,
            },
            "`backoff_max_s` must be >= backoff_base_s (5.0), got 1.0",
        ),
    ],
)
def test_bad_values_name_the_field(section, message):
    with pytest.raises(ValidationError) as e:
        parse_backend_config(section)
    assert message in str(e.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity_are_refused(value):
    """NaN compares False with every bound, so `timeout_s: .nan` and `temperature: .inf` passed validation."""
    from selfinstruct.llm import Sampling

    with pytest.raises(ValidationError, match="finite number"):
        parse_backend_config(
            {"kind": "openai", "base_urls": ["http://a/v1"], "model": "m", "timeout_s": value}
        )
    with pytest.raises(ValidationError, match="finite number"):
        Sampling(temperature=value)


def test_a_pasted_key_is_refused_without_being_echoed():
    secret = "sk-live-abc123-XYZ"
    with pytest.raises(ValidationError) as e:
        OpenAIConfig(base_urls=["http://a/v1"], model="m", api_key_env=secret)
    assert "`api_key_env` must be the NAME" in str(e.value)
    assert secret not in str(e.value)  # a config error printed to a CI log must not leak it


def test_credentials_in_a_url_are_refused_without_being_echoed():
    """A URL's user:password would be written to the manifest and echoed by `filter --json`."""
    with pytest.raises(ValidationError) as e:
        OpenAIConfig(base_urls=["http://alice:S3cret@127.0.0.1:9/v1"], model="m")
    assert "`base_urls` must be free of credentials" in str(e.value) and "S3cret" not in str(e.value)


def test_the_api_key_never_appears_in_config_dumps_or_reprs(monkeypatch):
    secret = "sk-test-0123456789"
    monkeypatch.setenv("SI_TEST_KEY", secret)
    cfg = OpenAIConfig(base_urls=["http://127.0.0.1:9/v1"], model="m", api_key_env="SI_TEST_KEY")
    backend = make_backend(cfg)
    for text in (cfg.model_dump_json(), repr(cfg), repr(backend), str(vars(backend))):
        assert secret not in text
    assert cfg.model_dump()["api_key_env"] == "SI_TEST_KEY"


def test_a_missing_key_variable_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("SI_ABSENT_KEY", raising=False)
    with pytest.raises(SelfInstructError, match="environment variable SI_ABSENT_KEY"):
        OpenAIBackend("m", base_urls="http://127.0.0.1:9/v1", api_key_env="SI_ABSENT_KEY")


def test_a_missing_model_directory_is_a_clear_error_before_any_engine_starts(tmp_path):
    with pytest.raises(SelfInstructError, match="model directory .*nope does not exist"):
        make_backend({"kind": "vllm", "model": str(tmp_path / "nope")})


def test_a_query_or_fragment_in_a_url_is_refused_without_being_echoed():
    """`?api_key=...` was stored verbatim in manifest.json; the client appends the API path after the URL, so a
    query or fragment there is never what a server reads anyway."""
    for url in ("http://127.0.0.1:9/v1?api_key=QSECRET77", "http://127.0.0.1:9/v1#QSECRET77"):
        with pytest.raises(ValidationError) as e:
            OpenAIConfig(base_urls=[url], model="m")
        assert "`base_urls` take no query or fragment" in str(e.value) and "QSECRET77" not in str(e.value)
