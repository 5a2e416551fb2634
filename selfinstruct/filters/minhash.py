"""MinHash near-duplicates over whole examples: instruction + every input and output.

A datasketch `MinHash` of word n-gram shingles, with fixed permutations (the config's seed), indexed in a
`MinHashLSH` that lives in memory or, with `MinHashConfig.redis`, in Redis via datasketch's `storage_config`
so several generator processes share one index. LSH only proposes candidates; a candidate counts as a
near-duplicate when the estimated Jaccard of the two signatures is at least the threshold, and that estimate
and the neighbour's key are the evidence. Signatures are kept beside the index (a Redis hash when shared),
so a neighbour admitted by another process can be scored too. This module knows nothing of ROUGE or rules.
"""

from __future__ import annotations

import re

import numpy as np
from datasketch import MinHash, MinHashLSH

from selfinstruct.errors import SelfInstructError
from selfinstruct.filters.base import reject
from selfinstruct.filters.config import MinHashConfig
from selfinstruct.schema import Reject, Task

STAGE = "minhash"
_WORD = re.compile(r"\w+")


def example_text(task: Task) -> str:
    """The text a task is compared on: its instruction, then each instance's input and output."""
    parts = [task.instruction]
    for inst in task.instances:
        parts += [inst.input, inst.output]
    return "\n".join(parts)


def shingles(text: str, n: int) -> set[bytes]:
    """Lowercased word n-grams; a text shorter than n words is one shingle, a text with no words its own."""
    words = _WORD.findall(text.lower())
    if not words:
        return {text.strip().encode("utf-8")}
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


class MinHashIndex:
    """Keys and signatures of admitted examples, with LSH candidate search."""

    def __init__(self, config: MinHashConfig | None = None):
        self.config = c = config or MinHashConfig()
        # One MinHash made once, so every signature reuses its permutations instead of regenerating them.
        self._proto = MinHash(num_perm=c.num_perm, seed=c.seed)
        self._dtype = self._proto.hashvalues.dtype
        storage = None
        self._redis = None
        if c.redis is not None:
            import redis

            storage = {
                "type": "redis",
                "basename": c.redis.basename.encode(),
                "redis": {"host": c.redis.host, "port": c.redis.port},
            }
            self._redis = redis.Redis(host=c.redis.host, port=c.redis.port)
            self._sig_key = f"{c.redis.basename}:signatures"
            try:
                self._redis.ping()
            except redis.exceptions.ConnectionError as e:
                raise SelfInstructError(
                    f"minhash.redis: cannot reach Redis at {c.redis.host}:{c.redis.port} ({e})"
                ) from None
        self.lsh = MinHashLSH(threshold=c.threshold, num_perm=c.num_perm, storage_config=storage)
        self._sigs: dict[str, np.ndarray] = {}

    def signature(self, text: str) -> MinHash:
        m = MinHash(
            num_perm=self.config.num_perm,
            seed=self.config.seed,
            permutations=self._proto.permutations,
            scheme=self._proto.scheme,
        )
        m.update_batch(shingles(text, self.config.ngram))
        return m

    def query(self, sig: MinHash) -> tuple[str, float] | None:
        """The most similar admitted key with estimated Jaccard >= threshold (ties: smallest key), or None."""
        keys = self.lsh.query(sig)
        if not keys:
            return None
        best = None
        for key, hv in zip(keys, self._signatures(keys), strict=True):
            if hv is None:
                continue
            j = float(np.count_nonzero(hv == sig.hashvalues)) / len(hv)
            if j >= self.config.threshold and (best is None or (-j, key) < (-best[1], best[0])):
                best = (key, j)
        return best

    def add(self, key: str, sig: MinHash) -> None:
        if key in self._sigs or (self._redis is not None and key in self.lsh):
            return  # already admitted (a resumed task, or the same id from another process)
        self.lsh.insert(key, sig)
        self._sigs[key] = sig.hashvalues.copy()
        if self._redis is not None:
            self._redis.hset(self._sig_key, key, sig.hashvalues.tobytes())

    def _signatures(self, keys: list[str]) -> list[np.ndarray | None]:
        out = [self._sigs.get(k) for k in keys]
        missing = [k for k, v in zip(keys, out, strict=True) if v is None]
        if missing and self._redis is not None:
            found = dict(zip(missing, self._redis.hmget(self._sig_key, missing), strict=True))
            out = [
                v if v is not None else (None if found[k] is None else np.frombuffer(found[k], self._dtype))
                for k, v in zip(keys, out, strict=True)
            ]
        return out


class MinHashFilter:
    """`check` a task against the index (no changes); the chain calls `add` once it admits the task."""

    def __init__(self, config: MinHashConfig | None = None):
        self.index = MinHashIndex(config)
        self.config = self.index.config

    def signature(self, task: Task) -> MinHash:
        return self.index.signature(example_text(task))

    def check(self, task: Task, sig: MinHash, *, round: int | None = None) -> Reject | None:
        found = self.index.query(sig)
        if found is None:
            return None
        key, j = found
        evidence = {"neighbour_id": key, "jaccard": round_(j), "threshold": self.config.threshold}
        return reject(task, STAGE, "minhash_near_duplicate", evidence, round=round)

    def add(self, task: Task, sig: MinHash | None = None) -> None:
        self.index.add(task.id, sig if sig is not None else self.signature(task))


def round_(x: float) -> float:
    return float(f"{x:.4f}")
