"""Consensus re-ranking of a captioner's n-best list (Devlin et al. 2015, "Exploring nearest
neighbor approaches for image captioning"; Mao et al. 2015's m-RNN re-ranking).

A beam search's best-scoring caption is often a generic one; among its other candidates there is
usually one that says what captions of *similar training images* say. For each input, the k
training images nearest by cosine similarity of their encoder features are found, and each
candidate caption is scored by its mean CIDEr-D against their reference captions (document
frequencies of the whole training set, fixed, so a caption's score does not depend on what else
is decoded with it); the candidates are re-ordered by that consensus, the model's own order
breaking ties. Only training data is used.

Which training images are "nearest" is what the consensus is worth. ``metric="features"`` takes
the cosine of the encoder's features, as Devlin et al. do; ``metric="captions"`` asks a
:class:`CaptionSpace`, a ridge regression fitted on the training set alone (in a second), what the
query's captions would say, and takes the training images whose captions say most nearly that: an
ImageNet CNN's nearest photo shares the texture or the scene, not always what people write about.

Shapes: N training images, Q queries, D feature size, C candidates per query, G caption n-grams.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from lrcn.decoding.search import RERANK_METRICS
from lrcn.errors import ConfigError
from lrcn.metrics import CiderD
from lrcn.text import tokenize

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
    return top_k(query, train, k)


def top_k(query: Tensor, keys: Tensor, k: int) -> Tensor:
    """Indices [Q, k] of the ``k`` rows of ``keys`` [N, D] with the largest dot products with each
    row of ``query`` [Q, D]; a few hundred queries at a time ([Q, N] products for COCO's 113k
    training images would need gigabytes)."""
    if not len(query):
        return torch.zeros(0, k, dtype=torch.long)
    return torch.cat([(rows @ keys.T).topk(k, dim=1).indices for rows in query.split(QUERY_CHUNK)])


def caption_vectors(captions: Sequence[Sequence[str]], max_grams: int = 8192) -> Tensor:
    """What each image's captions say, as a sparse [N, G] matrix of unit rows: TF-IDF weights of
    the unigrams and bigrams (``lrcn.text.tokenize``) of its captions, over the ``max_grams``
    n-grams that most images' captions use (at least two images')."""
    counts = []
    for texts in captions:
        bag: Counter[tuple[str, ...]] = Counter()
        for words in map(tokenize, texts):
            bag.update([(w,) for w in words] + list(zip(words, words[1:])))
        counts.append(bag)
    df = Counter(gram for bag in counts for gram in bag)                 # images whose captions use it
    kept = sorted((g for g, n in df.items() if n >= 2), key=lambda g: (-df[g], g))[:max_grams]
    column = {g: j for j, g in enumerate(kept)}
    rows, cols, values = [], [], []
    for n, bag in enumerate(counts):
        weights = {column[g]: c * np.log(len(counts) / df[g]) for g, c in bag.items() if g in column}
        norm = max(float(np.sqrt(sum(w * w for w in weights.values()))), 1e-12)
        for j, w in sorted(weights.items()):
            rows.append(n)
            cols.append(j)
            values.append(w / norm)
    return torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                   torch.tensor(values, dtype=torch.float32), (len(counts), max(1, len(kept))),
                                   check_invariants=True).coalesce()


class CaptionSpace:
    """Nearest training images by what their captions say, predicted from a query's features.

    A ridge regression (weight ``ridge``) maps the centred, unit-length encoder features of the
    training images to the centred TF-IDF vectors of their captions (:func:`caption_vectors`);
    a query's neighbours are the training images whose *own captions'* centred vectors are most
    cosine-similar to the query's predicted vector. Closed form and deterministic: the solve is
    [D, D], and only [N, D] keys are kept (the cosine with a predicted vector ``xA`` ranks the
    images as ``x . A c_n`` does, c_n an image's unit centred caption vector).
    """

    def __init__(self, features: Tensor, captions: Sequence[Sequence[str]], ridge: float = 0.3):
        x = pooled(features).float()                                           # [N, D]
        if len(x) != len(captions):
            raise ValueError(f"{len(x)} training feature rows for {len(captions)} caption lists")
        self.mean = x.mean(dim=0)
        x = self._inputs(x)
        text = caption_vectors(captions)                                       # sparse [N, G], unit rows
        centre = torch.sparse.sum(text, dim=0).to_dense() / len(x)             # [G]
        xt = torch.sparse.mm(text.t(), x).T - torch.outer(x.sum(dim=0), centre)     # X^T (T - 1 centre^T) [D, G]
        gram = (x.T @ x).double() + ridge * torch.eye(x.shape[1], dtype=torch.float64)   # [D, D], solved in float64
        a = torch.linalg.solve(gram, xt.double()).float()                      # [D, G]
        # keys c_n A^T with c_n = (t_n - centre) / |t_n - centre|: [N, D]
        keys = torch.sparse.mm(text, a.T) - centre @ a.T
        # |t_n - centre| for unit rows t_n (a photo whose captions share no n-gram with another's has a
        # zero row, and so a key a little shorter than it would be: such a photo is no one's neighbour)
        norms = (1 - 2 * torch.mv(text, centre) + centre @ centre).clamp(min=1e-12).sqrt()
        self.keys = keys / norms[:, None]

    def _inputs(self, x: Tensor) -> Tensor:
        return F.normalize(x - self.mean, dim=-1)

    def nearest(self, query_features: Tensor, k: int) -> Tensor:
        """Indices [Q, k] of the training images whose captions best match each query's predicted ones."""
        query = self._inputs(pooled(query_features).float())                  # [Q, D]
        return top_k(query, self.keys, k)


class ConsensusReranker:
    """Re-orders n-best lists by consensus with the captions of the ``k`` nearest training images
    (nearest by the encoder's features, or by what their captions say, :class:`CaptionSpace`: ``metric``)."""

    def __init__(self, train_features: Tensor, train_captions: Sequence[Sequence[str]], k: int,
                 metric: str = "features"):
        if len(train_features) != len(train_captions):
            raise ValueError(f"{len(train_features)} training feature rows for {len(train_captions)} caption lists")
        if not 1 <= k <= len(train_captions):
            raise ConfigError(f"decode.rerank={k}: choose 1 to {len(train_captions)} (the training images)")
        if metric not in RERANK_METRICS:
            raise ConfigError(f"decode.rerank_metric={metric!r}: choose one of {', '.join(RERANK_METRICS)}")
        self.k, self.train_features = k, train_features
        self.space = CaptionSpace(train_features, train_captions) if metric == "captions" else None
        self.scorer = CiderD({n: list(captions) for n, captions in enumerate(train_captions)})

    def consensus(self, query_features: Tensor, candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """For each query, the mean CIDEr-D [C] of its candidates against its neighbours' captions."""
        neighbours = (self.space.nearest(query_features, self.k) if self.space else
                      nearest(self.train_features, query_features, self.k)).tolist()    # [Q][k]
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

