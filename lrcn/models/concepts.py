"""Explicit concepts between the image and the words (Wu et al. 2016, "What value do explicit high
level concepts have in vision to language problems?"; Fang et al. 2015's visual word detectors).

A linear layer over the image features predicts, for every word of the vocabulary, whether one of
the image's reference captions uses it (a multi-label problem: "dog", "grass", "running" ...),
and the caption decoder sees those probabilities [B, V] instead of the CNN features. The
prediction is trained by the caption loss through the decoder *and* directly: the decoder offers
``auxiliary_loss``, the binary cross-entropy of the predictions against the words of the image's
captions, which lrcn.train.losses.CrossEntropy adds. With few training images the direct signal
is the point: every caption of an image says which words belong to it, so the mapping from CNN
features to words is learnt from all of them at once rather than only through the LSTM.

Shapes: B images, S captions per image, L caption length, D feature size, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lrcn.models.base import CaptionDecoder, State, WrappedDecoder

SPECIAL_WORDS = 4     # <pad> <start> <end> <unk>: never concepts (lrcn.text.Vocabulary's first ids)


def words_of_images(words: Tensor, per_image: int, vocab_size: int) -> Tensor:
    """captions [B*S, L] (S consecutive rows per image) -> [B, V]: 1 where any of the image's captions
    has the word; the special words are always 0."""
    present = torch.zeros(words.shape[0], vocab_size, device=words.device).scatter_(1, words, 1.0)
    present[:, :SPECIAL_WORDS] = 0
    return present.view(-1, per_image, vocab_size).amax(dim=1)


class ConceptCaptioner(WrappedDecoder):
    """Concept probabilities [B, V] from the features, then any caption decoder on them.
    State and steps are the inner decoder's."""

    def __init__(self, decoder: CaptionDecoder, feature_dim: int, dropout: float = 0.5):
        nn.Module.__init__(self)     # the inner decoder holds the embedding and output layers
        self.decoder = decoder
        self.vocab_size, self.feature_dim = decoder.vocab_size, feature_dim
        self.dropout = nn.Dropout(dropout)
        self.detect = nn.Linear(feature_dim, decoder.vocab_size)     # features -> a logit per word

    def concept_logits(self, features: Tensor) -> Tensor:
        """features [B, D] (a grid [B, D, h, w] is averaged) -> [B, V]."""
        pooled = features.mean(dim=(2, 3)) if features.dim() == 4 else features
        return self.detect(self.dropout(pooled))

    def concepts(self, features: Tensor) -> Tensor:
        """The probability [B, V] that each word belongs to the image."""
        return torch.sigmoid(self.concept_logits(features))

    def init_state(self, features: Tensor) -> State:
        return self.decoder.init_state(self.concepts(features))

    def auxiliary_loss(self, features: Tensor, words: Tensor) -> Tensor:
        """The summed binary cross-entropy (nats) of the concept predictions for the images
        ``features`` [B, ...] against the words of their captions ``words`` [B*S, L]."""
        logits = self.concept_logits(features)
        targets = words_of_images(words, words.shape[0] // features.shape[0], self.vocab_size)
        return F.binary_cross_entropy_with_logits(logits[:, SPECIAL_WORDS:].float(), targets[:, SPECIAL_WORDS:],
                                                  reduction="sum")
