"""Logit processors: small callables that edit next-word scores before a decoder picks words.

Every processor is called as ``processor(scores, tokens)`` with

* ``scores``: ``[N, V]`` next-word log-probabilities (or logits) of ``N`` rows. A processor may
  edit it in place and returns the edited tensor. Under autograd, pass a tensor that may be
  edited (``search`` clones the model's output first).
* ``tokens``: ``[N, t]`` long, the words each row has generated so far (no ``<start>``), so
  ``t`` is the number of the word about to be chosen, counting from 0.

They come in two kinds, as in Hugging Face ``generate``: *constraints* forbid words (score
``-inf``) and are used by every strategy; *warpers* reshape the distribution a sampler draws
from (temperature, top-k, top-p) and are used only when sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import torch
from torch import Tensor

NEG_INF = float("-inf")


class LogitsProcessor(Protocol):
    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor: ...


class ProcessorList(list):
    """Processors applied one after the other."""

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        for processor in self:
            scores = processor(scores, tokens)
        return scores


@dataclass
class SuppressTokens:
    """Never generate the given ids (e.g. ``<start>``, ``<pad>``, ``<unk>``)."""

    token_ids: Sequence[int]
    _index: dict = field(default_factory=dict, init=False, repr=False)  # device -> LongTensor

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        if not self.token_ids:
            return scores
        index = self._index.get(scores.device)
        if index is None:
            index = self._index[scores.device] = torch.tensor(list(self.token_ids), device=scores.device)
        return scores.index_fill_(1, index, NEG_INF)


@dataclass
class MinLength:
    """Forbid ``<end>`` until ``min_len`` words have been generated."""

    min_len: int
    eos: int

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        if tokens.size(1) < self.min_len:
            scores[:, self.eos] = NEG_INF
        return scores


@dataclass
class MaxLength:
    """Force ``<end>`` once ``max_len`` words have been generated (its log-prob still counts)."""

    max_len: int
    eos: int

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        if tokens.size(1) >= self.max_len:
            eos_scores = scores[:, self.eos].clone()
            scores.fill_(NEG_INF)
            scores[:, self.eos] = eos_scores
        return scores


@dataclass
class NoRepeatNGram:
    """Forbid any word that would repeat an n-gram already present in the row's words."""

    n: int

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        n, t = self.n, tokens.size(1)
        if n <= 0 or t < n:
            return scores
        windows = tokens.unfold(1, n, 1)                    # [N, t-n+1, n] every n-gram so far
        if n > 1:
            # n-grams whose first n-1 words equal the row's last n-1 words
            match = (windows[:, :, :-1] == tokens[:, None, t - n + 1:]).all(-1)  # [N, t-n+1]
        else:
            match = torch.ones_like(windows[:, :, 0], dtype=torch.bool)
        # their last words are banned; scatter the minimum so repeated indices are harmless
        fill = torch.full(match.shape, float("inf"), dtype=scores.dtype, device=scores.device)
        fill.masked_fill_(match, NEG_INF)
        return scores.scatter_reduce_(1, windows[:, :, -1], fill, reduce="amin")


@dataclass
class Temperature:
    """Divide the scores by ``temperature`` (> 1 flattens, < 1 sharpens the distribution)."""

    temperature: float

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        return scores.div_(self.temperature)


@dataclass
class TopK:
    """Keep the ``k`` highest-scoring words of each row (and any tied with the k-th)."""

    k: int

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        k = min(self.k, scores.size(-1))
        kth = scores.detach().topk(k, dim=-1).values[:, -1:]     # [N, 1]
        return scores.masked_fill_(scores.detach() < kth, NEG_INF)


@dataclass
class TopP:
    """Nucleus: keep the smallest set of most probable words whose probability sums to >= ``p``."""

    p: float

    def __call__(self, scores: Tensor, tokens: Tensor) -> Tensor:
        with torch.no_grad():
            sorted_scores, order = scores.sort(dim=-1, descending=True)   # [N, V]
            probs = sorted_scores.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs   # probability of the words ranked above
            drop_sorted = mass_before >= self.p           # the top word always stays (mass 0 < p)
            drop = drop_sorted.scatter(1, order, drop_sorted)
        return scores.masked_fill_(drop, NEG_INF)


def build_constraints(*, min_len: int, max_len: int, eos: int, suppress: Iterable[int] = (),
                      block_ngram: int = 0) -> ProcessorList:
    """The hard constraints every strategy applies, in order."""
    processors = ProcessorList([SuppressTokens(tuple(sorted(set(suppress))))])
    if block_ngram > 0:
        processors.append(NoRepeatNGram(block_ngram))
    if min_len > 0:
        processors.append(MinLength(min_len, eos))
    processors.append(MaxLength(max_len, eos))
    return processors


def build_warpers(*, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> ProcessorList:
    """The processors that shape the sampling distribution: temperature, then top-k, then top-p."""
    processors = ProcessorList()
    if temperature != 1.0:
        processors.append(Temperature(temperature))
    if top_k > 0:
        processors.append(TopK(top_k))
    if top_p < 1.0:
        processors.append(TopP(top_p))
    return processors
