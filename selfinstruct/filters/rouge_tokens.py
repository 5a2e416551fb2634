"""Tokens and features of the ROUGE-L index, compiled: rouge-score's tokenizer over one byte buffer per batch.

In Python, tokenizing a batch cost more than every comparison on a near-duplicate stream (issue 12: one word
object and one dict lookup per token, then a sort to number repeats). Here one compiled pass walks the bytes,
finds the runs of [a-z0-9], looks each word up in a hash table, and numbers repeats with a per-token counter.
A word of at most 8 bytes is its own key (its bytes, packed); a longer one is keyed by its hash, and the table
keeps its bytes, so a hash collision is resolved by comparing them, never by guessing.

The buffer holds each text's UTF-8 bytes (lone surrogates passed through), but none of an exact repeat of an
earlier text of the batch, whose tokens are copied instead. A-Z is lowered here, and every byte of a character
outside ASCII is >= 0x80, which is not in [a-z0-9]. `str.lower`, rouge-score's first step, runs only on a text
holding one of the two characters it turns into ASCII letters ("İ", the Kelvin sign); lowering every text
outside ASCII cost more than encoding it on text with curly quotes. Texts are cut by their offsets and byte
counts, never by a separator character, so any text, NUL bytes included, tokenizes alone.

Ids: a word gets a token number (dense, in order of first sight) and a feature id, and the k-th repeat of a
token within one text (k >= 1) is a feature of its own, so a text's features form a set whose overlap with
another's is the multiset overlap of their tokens. Token numbers and feature ids never change once given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from selfinstruct.filters.rouge import grown

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TOP = np.uint64(1 << 63)
# byte -> itself for [a-z0-9], its lowercase for [A-Z], 0 for every other byte
_CLASS = np.zeros(256, np.uint8)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789":
    _CLASS[_c] = _c
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _CLASS[_c] = _c + 32


# The only characters outside ASCII whose lowercase holds one in [a-z0-9] ("İ" -> "i" + a combining dot, the
# Kelvin sign -> "k"); tests/filters checks this against every code point with this Python's str.lower. Any
# other text's UTF-8 bytes tokenize as its lowercase does: A-Z is lowered by `_CLASS`, and every byte of a
# character outside ASCII is >= 0x80, a separator, as that character's lowercase is.
LOWERS_TO_ASCII = "\u0130\u212a"


class Vocab:
    """Words and repeats seen so far; the arrays belong to the compiled `_encode`, which grows them."""

    def __init__(self) -> None:
        # two open-addressing tables (keys, values; value -1 where empty): word hash -> token number (the
        # word's bytes then compared), and (token << 32 | k) -> the feature id of the token's k-th repeat
        self.wkeys, self.wvals = np.zeros(1 << 10, np.int64), np.full(1 << 10, -1, np.int32)
        self.rkeys, self.rvals = np.zeros(1 << 10, np.int64), np.full(1 << 10, -1, np.int32)
        self.off = np.zeros((1 << 9) + 1, np.int64)  # per token: its bytes are data[off[t]:off[t + 1]]
        self.data = np.zeros(1 << 12, np.uint8)
        self.feature = np.zeros(1 << 9, np.int32)  # per token: the feature id of its first occurrence
        self.ntok = 0
        self.nrep = 0
        self.nf = 0  # feature ids in use
        self.count = np.zeros(1 << 9, np.int32)  # scratch: occurrences per token (zero between calls)

    def encode(
        self,
        texts: Sequence[str],
        tok: np.ndarray,
        feat: np.ndarray,
        at: int,
        same: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The texts' token numbers and feature ids, in text order, written into tok/feat (int32) from
        position `at` on: (tok, feat, token count per text), the arrays grown (copied) when they could be too
        short. Writing in place spares a copy of every token and the page faults of fresh arrays.

        `same[i]`, if given, is j < i where texts[j] == texts[i] (-1 if none): text i's tokens are copied."""
        if same is None:
            same = np.full(len(texts), -1, np.int64)
        own = np.flatnonzero(same < 0)  # a copy has no bytes of its own
        buf, start, size = _bytes(texts if len(own) == len(texts) else [texts[i] for i in own.tolist()])
        if len(own) < len(texts):
            start, size = _placed(start, own, len(texts)), _placed(size, own, len(texts))
        ends = np.cumsum(size)  # in text order: how the compiled step plans its table growth
        # a token takes a byte and ends at a non-word byte or its text's end (a copy: its original's bytes);
        # grown here, not in the compiled step: numpy's zeros leave the pages never written unmapped, numba's
        # write them all
        copied = np.where(same >= 0, size[same], size)  # (size[-1] where same is -1, not taken)
        tok = grown(tok, at + int(copied.sum()) // 2 + len(texts) + 1)
        feat = grown(feat, len(tok))
        out = _encode(
            buf, start, ends, same, _CLASS, self.wkeys, self.wvals, self.off, self.data, self.feature, self.ntok,
            self.rkeys, self.rvals, self.nrep, self.nf, self.count, tok, feat, at,
        )  # fmt: skip
        lens = out[0]
        (self.wkeys, self.wvals, self.off, self.data, self.feature, self.ntok) = out[1:7]
        (self.rkeys, self.rvals, self.nrep, self.nf, self.count) = out[7:]
        return tok, feat, lens

    def word(self, token: int) -> str:
        """Token number -> the word (for tests and debugging)."""
        return self.data[self.off[token] : self.off[token + 1]].tobytes().decode("ascii")


def _bytes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texts' UTF-8 bytes in one buffer (lone surrogates passed through; "İ" and the Kelvin sign lowered
    first, module doc), and where each text's bytes start and how many there are. ASCII texts are joined in
    one call, then the others are appended one by one: encoding each text alone cost more than tokenizing it
    on short texts, and joining ASCII with non-ASCII text widens the whole string."""
    n = len(texts)
    size = np.fromiter(map(len, texts), np.int64, n)  # the byte count of an ASCII text
    ascii_ = np.fromiter(map(str.isascii, texts), np.bool_, n)
    if ascii_.all():
        start = np.zeros(n, np.int64)
        np.cumsum(size[:-1], out=start[1:])
        return np.frombuffer("".join(texts).encode("ascii"), np.uint8), start, size
    plain, wide = np.flatnonzero(ascii_), np.flatnonzero(~ascii_)
    dotted_i, kelvin = LOWERS_TO_ASCII
    pieces = [
        (t.lower() if dotted_i in t or kelvin in t else t).encode("utf-8", "surrogatepass")
        for t in map(texts.__getitem__, wide.tolist())
    ]
    head = "".join(map(texts.__getitem__, plain.tolist())).encode("ascii")
    size[wide] = np.fromiter(map(len, pieces), np.int64, len(pieces))
    order = np.concatenate([plain, wide])  # the buffer's order of texts
    start = np.zeros(n, np.int64)
    start[order[1:]] = np.cumsum(size[order])[:-1]
    return np.frombuffer(head + b"".join(pieces), np.uint8), start, size


def _placed(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """`values` at `rows` of n zeros."""
    out = np.zeros(n, np.int64)
    out[rows] = values
    return out


@njit(cache=True, nogil=True)
def _grow(a: np.ndarray, size: int) -> np.ndarray:
    """`a`, or a zero-padded copy at least twice as long when it cannot hold `size` elements."""
    if size <= len(a):
        return a
    out = np.zeros(max(size, 2 * len(a)), a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True, nogil=True)
def _cell(key: int, mask: int) -> int:
    """Cell of an int64 key in a table of mask + 1 cells (Fibonacci hashing: the top bits of key * golden)."""
    return int((np.uint64(key) * _GOLDEN) >> np.uint64(32)) & mask


@njit(cache=True, nogil=True)
def _rehash(keys: np.ndarray, vals: np.ndarray, used: int) -> tuple[np.ndarray, np.ndarray]:
    """An open-addressing table (int64 keys, int32 values, -1 where empty) that holds `used` entries at most
    half full: the one given, or a larger copy (a power of two) with every entry placed again."""
    if 2 * used <= len(keys):
        return keys, vals
    m = len(keys)
    while m < 2 * used:
        m *= 2
    grown_keys, grown_vals = np.zeros(m, np.int64), np.full(m, -1, np.int32)
    for e in range(len(keys)):
        if vals[e] >= 0:
            c = _cell(keys[e], m - 1)
            while grown_vals[c] >= 0:
                c = (c + 1) & (m - 1)
            grown_keys[c], grown_vals[c] = keys[e], vals[e]
    return grown_keys, grown_vals


@njit(cache=True, nogil=True)
def _stored(
    u: int, toff: np.ndarray, data: np.ndarray, buf: np.ndarray, p: int, q: int, cls: np.ndarray
) -> bool:
    """Whether token u's stored bytes are the word buf[p:q] (lowered by `cls`)."""
    if toff[u + 1] - toff[u] != q - p:
        return False
    for e in range(q - p):
        if data[toff[u] + e] != cls[buf[p + e]]:
            return False
    return True


# Bytes per chunk: tables are grown between chunks, never inside the hot loop (an array reassigned in a
# compiled loop costs reference counting on every turn: 4x slower on bench/filters.py's near-copy stream).
_CHUNK = 1 << 13


@njit(cache=True, nogil=True)
def _encode(
    buf, bstart, ends, same, cls, wkeys, wvals, toff, data, tfeat, ntok, rkeys, rvals, nrep, nf, count, tok,
    feat, at,
):  # noqa: ANN001  # fmt: skip
    """Tokens and features of the texts (text i: `buf` from bstart[i], ends[i] - ends[i - 1] bytes) into
    tok/feat from `at` (long enough), growing the tables it is given (module doc)."""
    n_texts = len(ends)
    lens = np.zeros(n_texts, np.int64)
    starts = np.zeros(n_texts, np.int64)
    n, i = at, 0
    while i < n_texts:
        start = ends[i - 1] if i else 0
        j = i + 1
        while j < n_texts and ends[j] - start <= _CHUNK:
            j += 1
        room = (ends[j - 1] - start) // 2 + (j - i) + 1  # its tokens, so its new words or repeats, at most
        toff = _grow(toff, ntok + room + 1)
        tfeat = _grow(tfeat, ntok + room)
        count = _grow(count, ntok + room)
        data = _grow(data, toff[ntok] + 2 * room)
        wkeys, wvals = _rehash(wkeys, wvals, ntok + room)
        rkeys, rvals = _rehash(rkeys, rvals, nrep + room)
        n, ntok, nrep, nf = _chunk(
            buf, bstart, ends, same, i, j, cls, wkeys, wvals, toff, data, tfeat, ntok, rkeys, rvals, nrep, nf, count, tok,
            feat, starts, lens, n,
        )  # fmt: skip
        i = j
    return lens, wkeys, wvals, toff, data, tfeat, ntok, rkeys, rvals, nrep, nf, count


@njit(cache=True, nogil=True)
def _chunk(
    buf,
    bstart,
    ends,
    same,
    i0,
    i1,
    cls,
    wkeys,
    wvals,
    toff,
    data,
    tfeat,
    ntok,
    rkeys,
    rvals,
    nrep,
    nf,
    count,
    tok,
    feat,
    starts,
    lens,
    n,
):  # noqa: ANN001
    """Texts i0..i1-1 into tok/feat/lens from position n; the tables have room for all their words."""
    wmask = len(wkeys) - 1
    rmask = len(rkeys) - 1
    for i in range(i0, i1):
        first = n
        if same[i] >= 0:  # an exact repeat of an earlier text: its tokens and features, copied
            j = same[i]
            m = lens[j]
            src = starts[j]
            for e in range(m):
                tok[n + e] = tok[src + e]
                feat[n + e] = feat[src + e]
            n += m
            starts[i], lens[i] = first, m
            continue
        p = bstart[i]
        end = p + ends[i] - (ends[i - 1] if i else 0)
        while True:
            while p < end and cls[buf[p]] == 0:
                p += 1
            if p == end:
                break
            # a word of at most 8 bytes is its own key: its bytes, packed (all nonzero and below 0x80, so the
            # top bit stays 0); a longer one is keyed by its hash with the top bit set, and its bytes compared
            q = p
            packed = np.uint64(0)
            while q < end:
                b = np.uint64(cls[buf[q]])
                if b == 0:
                    break
                packed = (packed << np.uint64(8)) | b
                q += 1
            short = q - p <= 8
            if short:
                key = np.int64(packed)
            else:
                h = _FNV_OFFSET
                for e in range(p, q):
                    h = (h ^ np.uint64(cls[buf[e]])) * _FNV_PRIME
                key = np.int64(h | _TOP)
            c = _cell(key, wmask)
            t = -1
            while wvals[c] >= 0:
                u = wvals[c]
                if wkeys[c] == key and (short or _stored(u, toff, data, buf, p, q, cls)):
                    t = u
                    break
                c = (c + 1) & wmask
            if t < 0:  # a new word
                t = ntok
                ntok += 1
                base = toff[t]
                for e in range(q - p):
                    data[base + e] = cls[buf[p + e]]
                toff[t + 1] = base + q - p
                tfeat[t] = nf
                nf += 1
                wkeys[c], wvals[c] = key, t
            tok[n] = t
            n += 1
            p = q
        # features: a token's k-th repeat in this text is (token, k), looked up or given the next id
        for e in range(first, n):
            t = tok[e]
            k = count[t]
            count[t] = k + 1
            if k == 0:
                feat[e] = tfeat[t]
                continue
            key = (np.int64(t) << 32) | k
            c = _cell(key, rmask)
            while rvals[c] >= 0 and rkeys[c] != key:
                c = (c + 1) & rmask
            if rvals[c] < 0:
                rkeys[c], rvals[c] = key, nf
                nf += 1
                nrep += 1
            feat[e] = rvals[c]
        for e in range(first, n):
            count[tok[e]] = 0
        starts[i], lens[i] = first, n - first
    return n, ntok, nrep, nf
