"""ROUGE-L exactly as pycocoevalcap's ``Rouge`` computes it, with a bit-parallel LCS.

pycocoevalcap (rouge/rouge.py) splits captions at single spaces (``split(" ")``, so an empty
caption is one empty token), takes the longest common subsequence of the candidate with each
reference, the largest precision and the largest recall over the references (possibly from
different references), and F = (1 + b^2) P R / (R + b^2 P) with b = 1.2.

The LCS length uses the bit-vector algorithm of Allison & Dix / Hyyro on 64-bit words: one
sequence (at most 64 tokens) is a bit mask per token, the other is read token by token, for all
(candidate, reference) pairs at once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BETA = 1.2


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (bit-parallel with Python integers, any length)."""
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def _lcs_pairs(a: list[list[int]], b: list[list[int]]) -> np.ndarray:
    """LCS lengths of pairs of id sequences, ``len(a[k]) <= 64``: ``[P]`` int64."""
    n_pairs = len(a)
    if not n_pairs:
        return np.zeros(0, dtype=np.int64)
    a_len = np.fromiter(map(len, a), dtype=np.int64, count=n_pairs)
    b_len = np.fromiter(map(len, b), dtype=np.int64, count=n_pairs)
    a_ids = np.full((n_pairs, 64), -1, dtype=np.int64)
    a_ids[np.arange(64)[None, :] < a_len[:, None]] = np.fromiter((t for s in a for t in s), dtype=np.int64,
                                                                  count=int(a_len.sum()))
    width = int(b_len.max(initial=0))
    b_ids = np.full((n_pairs, max(width, 1)), -2, dtype=np.int64)
    b_ids[np.arange(max(width, 1))[None, :] < b_len[:, None]] = np.fromiter((t for s in b for t in s),
                                                                            dtype=np.int64, count=int(b_len.sum()))
    v = np.full(n_pairs, np.iinfo(np.uint64).max, dtype=np.uint64)
    for t in range(width):
        match = np.packbits(a_ids == b_ids[:, t:t + 1], axis=1, bitorder="little").view(np.uint64)[:, 0]
        u = v & match
        v = (v + u) | (v - u)
    full = np.where(a_len >= 64, np.iinfo(np.uint64).max,
                    (np.uint64(1) << np.minimum(a_len, 63).astype(np.uint64)) - np.uint64(1)).astype(np.uint64)
    return a_len - _popcount(v & full)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):                       # NumPy >= 2.0
        return np.bitwise_count(x).astype(np.int64)
    return np.unpackbits(x.view(np.uint8)).reshape(len(x), 64).sum(axis=1).astype(np.int64)


def rouge_l(candidates: Sequence[str], references: Sequence[Sequence[str]], beta: float = BETA) -> np.ndarray:
    """ROUGE-L of ``candidates[i]`` against ``references[i]`` (tokenized captions): ``[I]`` float64."""
    vocab: dict[str, int] = {}
    cand = [[vocab.setdefault(t, len(vocab)) for t in c.split(" ")] for c in candidates]
    refs = [[[vocab.setdefault(t, len(vocab)) for t in r.split(" ")] for r in rs] for rs in references]
    pairs = [(i, c_ids, r_ids) for i, (c_ids, rs) in enumerate(zip(cand, refs)) for r_ids in rs]
    lcs = np.zeros(len(pairs), dtype=np.int64)
    short, long_ = [], []
    for k, (_, c_ids, r_ids) in enumerate(pairs):
        (short if min(len(c_ids), len(r_ids)) <= 64 else long_).append(k)
    if short:
        a = [min(pairs[k][1], pairs[k][2], key=len) for k in short]
        b = [pairs[k][2] if a_k is pairs[k][1] else pairs[k][1] for a_k, k in zip(a, short)]
        lcs[short] = _lcs_pairs(a, b)
    for k in long_:
        lcs[k] = lcs_length(pairs[k][1], pairs[k][2])
    image = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
    cand_len = np.fromiter((len(p[1]) for p in pairs), dtype=np.float64, count=len(pairs))
    ref_len = np.fromiter((len(p[2]) for p in pairs), dtype=np.float64, count=len(pairs))
    precision = np.zeros(len(candidates))
    recall = np.zeros(len(candidates))
    np.maximum.at(precision, image, lcs / cand_len)
    np.maximum.at(recall, image, lcs / ref_len)
    both = (precision != 0) & (recall != 0)
    score = np.zeros(len(candidates))
    p, r = precision[both], recall[both]
    score[both] = ((1 + beta ** 2) * p * r) / (r + beta ** 2 * p)
    return score
