"""Diversity and language statistics for comparing decoding strategies."""

from __future__ import annotations

from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

from lrcn.metrics.bleu import bleu
from lrcn.metrics.ngrams import ReferenceSet
from lrcn.metrics.ptb import ptb_tokenize_batch


def _distinct(token_lists: Sequence[Sequence[str]], n: int) -> tuple[int, int]:
    grams = [tuple(t[i:i + n]) for t in token_lists for i in range(len(t) - n + 1)]
    return len(set(grams)), len(grams)


def mbleu4(nbest: Sequence[Sequence[str]]) -> float:
    """Mean BLEU-4 of each caption of an n-best list against the list's other captions (Shetty et
    al. 2017's mBLEU-4; lower is more diverse), sentence-level with pycocoevalcap's smoothing,
    averaged over the captions of each list, then over lists with at least two captions."""
    lists = [list(captions) for captions in nbest if len(captions) >= 2]
    if not lists:
        return float("nan")
    refs = [[c for k, c in enumerate(captions) if k != j] for captions in lists for j in range(len(captions))]
    hyps = [c for captions in lists for c in captions]
    ref_set = ReferenceSet(refs)
    _, per = bleu(ref_set, np.arange(len(hyps)), ref_set.index.encode(hyps))
    owner = np.repeat(np.arange(len(lists)), [len(c) for c in lists])
    per_list = np.bincount(owner, weights=per[:, 3]) / np.bincount(owner)
    return float(per_list.mean())


def diversity(captions: Mapping[Hashable, str] | Sequence[str], train_captions: Iterable[str] | None = None,
              nbest: Mapping[Hashable, Sequence[str]] | None = None, tokenize: bool = True) -> dict[str, float]:
    """Language statistics of generated captions, on COCO-evaluation tokens:

    * ``vocab_size``: distinct words used; ``mean_length``: words per caption;
    * ``distinct_1`` / ``distinct_2``: distinct unigrams / bigrams over all unigrams / bigrams;
    * ``novel_fraction`` (with ``train_captions``): captions not found among the training captions;
    * with ``nbest`` (image id -> n-best list): ``mbleu_4`` (see :func:`mbleu4`), and ``div_1`` /
      ``div_2``: per list, distinct unigrams / bigrams over its number of words, averaged.
    """
    texts = list(captions.values()) if isinstance(captions, Mapping) else list(captions)
    if tokenize:
        texts = ptb_tokenize_batch(texts)
    tokens = [t.split() for t in texts]
    d1, n1 = _distinct(tokens, 1)
    d2, n2 = _distinct(tokens, 2)
    stats = {
        "vocab_size": float(d1),
        "distinct_1": d1 / n1 if n1 else 0.0,
        "distinct_2": d2 / n2 if n2 else 0.0,
        "mean_length": n1 / len(tokens) if tokens else 0.0,
    }
    if train_captions is not None:
        train = list(train_captions)
        known = set(ptb_tokenize_batch(train) if tokenize else (" ".join(t.split()) for t in train))
        stats["novel_fraction"] = (sum(" ".join(t) not in known for t in tokens) / len(tokens)) if tokens else 0.0
    if nbest is not None:
        lists = [list(v) for v in nbest.values()]
        if tokenize:
            flat = iter(ptb_tokenize_batch([c for v in lists for c in v]))
            lists = [[next(flat) for _ in v] for v in lists]
        stats["mbleu_4"] = mbleu4(lists)
        div = {1: [], 2: []}
        for v in lists:
            words = [c.split() for c in v]
            total = sum(map(len, words))
            for n in (1, 2):
                div[n].append(_distinct(words, n)[0] / total if total else 0.0)
        stats["div_1"] = float(np.mean(div[1])) if lists else float("nan")
        stats["div_2"] = float(np.mean(div[2])) if lists else float("nan")
    return stats
