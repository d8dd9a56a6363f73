"""Several trained caption decoders decoding as one, behind the same step interface.

The ensemble's next-word distribution is the mean of its members' probabilities,
``log((1/M) * sum_m exp(log_probs_m))``, so greedy, beam search and sampling in
lrcn.decoding work for it unchanged. Members share the vocabulary; each may read its own
image features (members trained on different encoder settings, pooled vectors [D] beside
region grids [D, h, w] or frame sequences [T, D]): the ensemble then takes each sample's
features flattened and concatenated, ``[B, n_1 + ... + n_M]`` (n_m the size of member m's
features), and hands each member its slice in its own shape.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch
from torch import Tensor, nn

from lrcn.errors import CheckpointError, ConfigError
from lrcn.models.base import CaptionDecoder, State
from lrcn.models.fast_step import reusing_outputs


class Ensemble(nn.Module):
    """Decoders over one vocabulary whose step averages their next-word probabilities.

    ``feature_shapes=None``: every member reads the same features [B, ...]. Otherwise member m
    reads features of shape [B, *feature_shapes[m]] (an int: [B, D]); the ensemble's are theirs
    flattened and concatenated in member order, [B, sum of their sizes].
    State: the members' state tensors, concatenated as one flat tuple.
    """

    def __init__(self, decoders: Sequence[CaptionDecoder],
                 feature_shapes: Sequence[int | Sequence[int]] | None = None):
        super().__init__()
        if not decoders:
            raise ConfigError("an ensemble needs at least one decoder")
        sizes = {d.vocab_size for d in decoders}
        if len(sizes) != 1:
            raise CheckpointError(f"ensemble members have different vocabulary sizes {sorted(sizes)}; "
                                  "they must be trained with the same vocabulary")
        if feature_shapes is not None and len(feature_shapes) != len(decoders):
            raise ConfigError(f"{len(feature_shapes)} feature shapes for {len(decoders)} ensemble members")
        self.members = nn.ModuleList(decoders)
        self.vocab_size = sizes.pop()
        self.feature_shapes = (None if feature_shapes is None else
                               [(s,) if isinstance(s, int) else tuple(s) for s in feature_shapes])
        self.feature_sizes = [math.prod(shape) for shape in self.feature_shapes or []]   # n_m per member
        self.state_sizes: list[int] = []          # tensors per member state, known after init_state

    def _split(self, state: State) -> list[State]:
        bounds = [0, *torch.tensor(self.state_sizes).cumsum(0).tolist()]
        return [state[a:b] for a, b in zip(bounds, bounds[1:])]

    def init_state(self, features: Tensor) -> State:
        """features [B, ...] (shared) or [B, n_1 + ... + n_M] (members' own) -> the members'
        states, flattened."""
        if self.feature_shapes is None:
            parts = [features] * len(self.members)
        else:
            sizes = self.feature_sizes
            if features.dim() != 2 or features.shape[1] != sum(sizes):
                raise ConfigError(f"ensemble features have shape {list(features.shape)}, its members read "
                                  f"[B, {' + '.join(map(str, sizes))}]")
            parts = [f.reshape(len(f), *shape)
                     for f, shape in zip(features.split(sizes, dim=1), self.feature_shapes)]
        states = [m.init_state(f) for m, f in zip(self.members, parts)]
        self.state_sizes = [len(s) for s in states]
        return tuple(t for s in states for t in s)

    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> log of the mean of the members' probabilities [B, V], next state."""
        outs = [m.step(words, s) for m, s in zip(self.members, self._split(state))]
        log_probs = torch.stack([lp for lp, _ in outs]).logsumexp(0) - math.log(len(outs))   # [B, V]
        return log_probs, tuple(t for _, s in outs for t in s)

    @contextlib.contextmanager
    def reusing_outputs(self):
        """Every member's ``reusing_outputs`` (where it has one, see lrcn.models.fast_step); the
        ensemble's own log-probs are fresh at every step."""
        with contextlib.ExitStack() as stack:
            for member in self.members:
                stack.enter_context(reusing_outputs(member))
            yield self

    def reorder(self, state: State, index: Tensor) -> State:
        parts = [m.reorder(s, index) for m, s in zip(self.members, self._split(state))]
        return tuple(t for s in parts for t in s)
