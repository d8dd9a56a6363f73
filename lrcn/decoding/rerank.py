"""Consensus re-ranking of a captioner's n-best list (Devlin et al. 2015, "Exploring nearest
neighbor approaches for image captioning"; Mao et al. 2015's m-RNN re-ranking).

A beam search's best-scoring caption is often a generic one; among its other candidates there is
usually one that says what captions of *similar training images* say. For each input, the k
training images nearest by cosine similarity of their encoder features are found, and each
candidate caption is scored by its mean CIDEr-D against their reference captions (document
frequencies of the whole training set, fixed, so a caption's score does not depend on what else
is decoded with it); the candidates are re-ordered by that consensus, the model's own order
breaking ties. Only training data is used.

Shapes: N training images, Q queries, D feature size, C candidates per query.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lrcn.errors import ConfigError
from lrcn.metrics import CiderD

QUERY_CHUNK = 256     # queries whose similarities to every training image are held at once


def pooled(features: Tensor) -> Tensor:
    """One vector per row: [N, D] as is; a grid [N, D, h, w] or a clip [N, T, D] averaged."""
    if features.dim() == 4:
        return features.mean(dim=(2, 3))
    return features.mean(dim=1) if features.dim() == 3 else features


def nearest(train_features: Tensor, query_features: Tensor, k: int) -> Tensor:
    """Indices [Q, k] of the ``k`` training rows most similar (cosine) to each query row."""
    if not 1 <= k <= len(train_features):
        raise ConfigError(f"k={k} nearest neighbours: choose 1 to {len(train_features)} (the training images)")
    train = F.normalize(pooled(train_features).float(), dim=-1)       # [N, D]
    query = F.normalize(pooled(query_features).float(), dim=-1)       # [Q, D]
    if not len(query):
        return torch.zeros(0, k, dtype=torch.long)
    # a few hundred queries at a time: [Q, N] similarities of COCO's 113k training images would need gigabytes
    return torch.cat([(rows @ train.T).topk(k, dim=1).indices for rows in query.split(QUERY_CHUNK)])


class ConsensusReranker:
    """Re-orders n-best lists by consensus with the captions of the ``k`` nearest training images."""

    def __init__(self, train_features: Tensor, train_captions: Sequence[Sequence[str]], k: int):
        if len(train_features) != len(train_captions):
            raise ValueError(f"{len(train_features)} training feature rows for {len(train_captions)} caption lists")
        if not 1 <= k <= len(train_captions):
            raise ConfigError(f"decode.rerank={k}: choose 1 to {len(train_captions)} (the training images)")
        self.k, self.train_features = k, train_features
        self.scorer = CiderD({n: list(captions) for n, captions in enumerate(train_captions)})

    def consensus(self, query_features: Tensor, candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """For each query, the mean CIDEr-D [C] of its candidates against its neighbours' captions."""
        neighbours = nearest(self.train_features, query_features, self.k).tolist()      # [Q][k]
        ids, texts, sizes = [], [], []
        for row, cands in zip(neighbours, candidates):
            for caption in cands:
                ids += row
                texts += [caption] * len(row)
            sizes.append(len(cands))
        scores = self.scorer.score_batch(ids, texts) if ids else np.zeros(0)
        out, start = [], 0
        for size in sizes:
            out.append(np.asarray(scores[start:start + size * self.k]).reshape(size, self.k).mean(axis=1))
            start += size * self.k
        return out

    def order(self, query_features: Tensor, candidates: Sequence[Sequence[str]]) -> list[list[int]]:
        """For each query, its candidates' positions from the most to the least consensual (stable:
        equal consensus keeps the model's order)."""
        return [sorted(range(len(s)), key=lambda j: -s[j]) for s in self.consensus(query_features, candidates)]

