"""Baselines that put a captioner's scores in context: captions chosen without a caption model
(``lrcn baseline`` scores them, lrcn.commands.evaluate)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from lrcn.data.records import Sample
from lrcn.errors import DataError
from lrcn.decoding.rerank import nearest
from lrcn.metrics import CiderD


def consensus_caption(references: Mapping[str, Sequence[str]], max_candidates: int = 500, max_images: int = 500,
                      seed: int = 0) -> str:
    """The blind baseline: the training caption with the highest mean CIDEr-D against the training
    images' references (over a seeded sample of ``max_candidates`` captions and ``max_images`` images),
    i.e. the best single caption to give every image without looking at it."""
    g = torch.Generator().manual_seed(seed)
    ids = list(references)
    ids = [ids[i] for i in torch.randperm(len(ids), generator=g)[:max_images].tolist()]
    candidates = sorted({c.strip() for i in references for c in references[i] if c.strip()})
    candidates = [candidates[i] for i in torch.randperm(len(candidates), generator=g)[:max_candidates].tolist()]
    scorer = CiderD({i: references[i] for i in ids})
    means = [float(scorer.score_batch(ids, [c] * len(ids)).mean()) for c in candidates]
    return candidates[max(range(len(candidates)), key=means.__getitem__)]


def most_consensual(pools: Sequence[Sequence[str]]) -> list[str]:
    """For each pool of captions, the one with the highest CIDEr-D against the pool's *other*
    captions (Devlin et al. 2015's consensus re-ranking). Document frequencies are counted over
    the leave-one-out reference sets of all the pools given; ties go to the earlier caption."""
    pools = [[c for c in pool if c.strip()] for pool in pools]
    for n, pool in enumerate(pools):
        if not pool:
            raise DataError(f"caption pool {n} has no non-empty caption")
    references = {(n, j): pool[:j] + pool[j + 1:] for n, pool in enumerate(pools) for j in range(len(pool))
                  if len(pool) > 1}
    scores = {}
    if references:
        keys = list(references)
        values = CiderD(references).score_batch(keys, [pools[n][j] for n, j in keys])
        scores = dict(zip(keys, values.tolist()))
    best = []
    for n, pool in enumerate(pools):
        values = [scores.get((n, j), 0.0) for j in range(len(pool))]
        best.append(pool[max(range(len(pool)), key=values.__getitem__)])
    return best


def nearest_neighbour_captions(train_features: Tensor, train_samples: Sequence[Sample], query_features: Tensor,
                               k: int = 1) -> list[str]:
    """The nearest-neighbour baseline (Devlin et al. 2015): for each query row of ``query_features``
    [Q, D], the training images whose features (``train_features`` [N, D], rows of ``train_samples``)
    are closest by cosine similarity, and of their captions the most consensual (``most_consensual``).
    With ``k=1`` that is the most consensual caption of the single nearest training image, with
    document frequencies over the whole training set; with ``k>1`` the captions of the ``k``
    nearest images are pooled. Video features [N, T, D] are averaged over time first, grids over space
    (``lrcn.decoding.rerank.nearest``)."""
    if len(train_features) != len(train_samples):
        raise ValueError(f"{len(train_features)} training feature rows for {len(train_samples)} samples")
    rows = nearest(train_features, query_features, k).tolist()          # [Q][k]
    if k == 1:
        consensus = most_consensual([s.captions for s in train_samples])
        return [consensus[row[0]] for row in rows]
    return most_consensual([[c for i in row for c in train_samples[i].captions] for row in rows])


# kind -> what it gives each image (`lrcn baseline --kind`)
BASELINES = {"blind": "the most consensual training caption, the same for every image",
             "nn": "the most consensual caption of the nearest training image(s) by encoder features"}


def baseline_name(kind: str, k: int = 1) -> str:
    """File-name label of a baseline: blind, nn, nn-k5."""
    return kind if kind == "blind" or k == 1 else f"{kind}-k{k}"
