"""Training losses behind one interface, chosen by ``train.loss`` in the config.

A loss is built once per run with ``(config, vocab, train_samples)`` and called on every batch as
``loss(decoder, features, words, rows, step) -> (total, count, logs)``:

- ``features`` [B, ...]: one row per training image (or clip);
- ``words`` [B*S, L]: S reference captions per image (``<start> w1 .. wn <end> <pad>*``);
- ``rows`` [B]: the images' indices into ``train_samples`` (SCST looks up their references);
- ``total``: the loss summed over its ``count`` items (tokens, captions); the trainer divides by the
  count summed over all processes, so a distributed run follows the same gradient as one process
  with the same global batch;
- ``logs``: scalar tensors/floats for TensorBoard (``train/<name>``), averaged over the batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from lrcn.config import Config
from lrcn.data.records import Sample
from lrcn.models.decoders import CaptionDecoder
from lrcn.text import Vocabulary


class CrossEntropy:
    """Teacher forcing: cross-entropy of every next word, padding masked, optional label smoothing."""

    def __init__(self, config: Config, vocab: Vocabulary, samples: Sequence[Sample]):
        self.pad, self.smoothing = vocab.pad, config.train.label_smoothing

    def __call__(self, decoder: CaptionDecoder, features: Tensor, words: Tensor, rows: Tensor,
                 step: int) -> tuple[Tensor, dict]:
        per_image = words.shape[0] // features.shape[0]
        logits = decoder(features.repeat_interleave(per_image, 0), words[:, :-1])     # [B*S, L-1, V]
        targets = words[:, 1:].flatten()
        total = F.cross_entropy(logits.flatten(0, 1).float(), targets, ignore_index=self.pad,
                                label_smoothing=self.smoothing, reduction="sum")
        return total, (targets != self.pad).sum(), {}


LOSSES = {"xe": CrossEntropy}


def build_loss(config: Config, vocab: Vocabulary, samples: Sequence[Sample]):
    from lrcn.errors import ConfigError
    if config.train.loss not in LOSSES:
        raise ConfigError(f"train.loss {config.train.loss!r} is unknown; choose one of {sorted(LOSSES)}")
    return LOSSES[config.train.loss](config, vocab, samples)
