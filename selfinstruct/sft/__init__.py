"""Masked SFT: train a student on generated data with the loss on response tokens only, then compare it
with its base.

Modules: `config` (SFTConfig), `render` (templates, chat-template split, neutralising special tokens, the
stop-token rule), `data` (reading, labels, collators, preview), `identity` (a run's fingerprint, resume
checks, `--fresh`), `metrics` (metrics.jsonl), `train` (the transformers Trainer), `save` (a checkpoint that
serves itself: template, stop ids, model card), `eval` (base vs student through vLLM). Nothing here imports
torch or transformers at import time; the functions do.
"""
