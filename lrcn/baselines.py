"""Baselines that put a captioner's scores in context."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

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
