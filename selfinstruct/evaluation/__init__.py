"""Evaluation: does the student do better than its base, and by how much, with what uncertainty?

`answers` generates and keeps every model's answer (resumable, keyed by model fingerprint, item and decoding),
`stats` holds the paired bootstrap, `ifeval_paired` scores base and student on IFEval, `judge` asks a third
model which answer is better. This package knows nothing of generation runs or training beyond reading a
checkpoint's files.
"""
