"""BLEU-1..4 exactly as pycocoevalcap's ``Bleu(4)`` computes it, vectorised.

pycocoevalcap (bleu/bleu_scorer.py) clips each candidate n-gram count by its largest count in
one reference of the image, takes the reference length closest to the candidate's ("closest";
a tie goes to the shorter one), smooths every precision with tiny=1e-15 / small=1e-9, and
reports both per-image scores and a corpus score over summed counts.
"""

from __future__ import annotations

import numpy as np

from lrcn.metrics.ngrams import MAX_N, Ngrams, ReferenceSet

TINY, SMALL = 1e-15, 1e-9


def closest_reference_length(refs: ReferenceSet, image: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per candidate, the length of its image's reference closest to ``length`` (shorter on ties)."""
    n_refs = refs.n_refs[image]
    owner = np.repeat(np.arange(len(image)), n_refs)                     # candidate of each pair
    within = np.arange(len(owner)) - np.repeat(np.cumsum(n_refs) - n_refs, n_refs)
    ref_length = refs.lengths[refs.first[image][owner] + within]
    big = int(ref_length.max(initial=0)) + 1
    key = np.abs(ref_length - length[owner]) * big + ref_length
    return np.minimum.reduceat(key, np.cumsum(n_refs) - n_refs) % big


def bleu(refs: ReferenceSet, image: np.ndarray, candidates: Ngrams,
         slot: np.ndarray | None = None) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..4 and per-candidate BLEU ``[C, 4]`` of candidates for image positions
    ``image``; ``slot`` is ``refs.match(image, candidates)`` if already computed."""
    n_cand = len(image)
    e = candidates
    slot = refs.match(image, e) if slot is None else slot
    matched = np.flatnonzero(slot >= 0)
    clipped = np.minimum(e.count[matched], refs.max_count[slot[matched]])
    correct = np.bincount(e.sentence[matched] * MAX_N + e.order[matched], weights=clipped,
                          minlength=n_cand * MAX_N).reshape(n_cand, MAX_N)
    test_len = e.lengths.astype(np.float64)
    guess = np.maximum(0, e.lengths[:, None] - np.arange(MAX_N)[None, :]).astype(np.float64)
    ref_len = closest_reference_length(refs, image, e.lengths).astype(np.float64)

    exponents = 1.0 / np.arange(1, MAX_N + 1)
    per_image = np.cumprod((correct + TINY) / (guess + SMALL), axis=1) ** exponents
    ratio = (test_len + TINY) / (ref_len + SMALL)
    short = ratio < 1
    per_image[short] *= np.exp(1 - 1 / ratio[short])[:, None]

    total_ratio = (test_len.sum() + TINY) / (ref_len.sum() + SMALL)
    corpus = np.cumprod((correct.sum(axis=0) + TINY) / (guess.sum(axis=0) + SMALL)) ** exponents
    if total_ratio < 1:
        corpus = corpus * np.exp(1 - 1 / total_ratio)
    return corpus.tolist(), per_image
