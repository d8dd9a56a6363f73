"""Caption decoders behind one step interface.

Every decoder, image or video, offers
  ``init_state(features) -> state``           a tuple of batch-first tensors,
  ``step(words, state) -> (log_probs, state)`` one word per row in, log-probabilities [B, V] out,
  ``reorder(state, index) -> state``          gather rows along the batch (beam search uses it),
and ``forward(features, words) -> logits`` for teacher forcing, which agrees with repeated
``step`` calls (tests/test_decoders.py checks it). Decoding code (lrcn.decoding) sees only the
step interface, so a new decoder is one class and every strategy works for it at once: subclass
:class:`~lrcn.models.base.CaptionDecoder` and write ``init_state`` and ``forward_steps`` (tests/test_new_decoder.py
adds a GRU decoder so).

The classes here are the plain models. The registered kinds (``DECODERS`` of :mod:`lrcn.models.registry`) are these models with
the CPU fast step of :mod:`lrcn.models.fast_step` at inference: the same parameters and
checkpoints, the same numbers up to float rounding, a cheaper ``step`` in eval mode without
autograd.

Shapes: B batch, T caption steps, D feature size, E embedding size, H hidden size, L layers,
V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lrcn.models.base import CaptionDecoder, State
from lrcn.models.fast_step import LRCNFastStep, LSTMStackFastStep

def _lstm_state(h: Tensor, c: Tensor) -> State:
    """nn.LSTM's (h, c) [L, B, H] -> batch-first [B, L, H]."""
    return h.transpose(0, 1), c.transpose(0, 1)


def _lstm_input(h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """batch-first [B, L, H] -> nn.LSTM's (h, c) [L, B, H]."""
    return h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()


class ShowAndTell(CaptionDecoder):
    """Vinyals et al. (2015): the image embedding is the LSTM's first input, then the words."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 num_layers: int = 1, dropout: float = 0.5):
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, dropout)
        self.image_embed = nn.Linear(feature_dim, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)

    def init_state(self, features: Tensor) -> State:
        x = self.dropout(self.image_embed(features))[:, None]      # [B, 1, E]
        _, (h, c) = self.lstm(x)                                     # [L, B, H] each
        return _lstm_state(h, c)

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        x = self.dropout(self.embed(words))                          # [B, T, E]
        y, (h, c) = self.lstm(x, _lstm_input(*state))                # y [B, T, H]
        return self.out(self.dropout(y)), _lstm_state(h, c)


class InitStateDecoder(CaptionDecoder):
    """The image sets the LSTM's initial hidden and cell states; the first input is <start>."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 num_layers: int = 1, dropout: float = 0.5):
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, dropout)
        self.num_layers, self.hidden_dim = num_layers, hidden_dim
        self.init_h = nn.Linear(feature_dim, num_layers * hidden_dim)
        self.init_c = nn.Linear(feature_dim, num_layers * hidden_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)

    def init_state(self, features: Tensor) -> State:
        f = self.dropout(features)
        shape = (features.shape[0], self.num_layers, self.hidden_dim)
        return torch.tanh(self.init_h(f)).view(shape), self.init_c(f).view(shape)

    forward_steps = ShowAndTell.forward_steps


class LRCN(CaptionDecoder):
    """Donahue et al. (2015): a stack of LSTMs, the image feature entering one layer at every step.

    ``num_layers=1, image_layer=0`` is LRCN-1u, ``2, 0`` is LRCN-2u (image with the word into the
    lower LSTM), ``2, 1`` is LRCN-2f (factored: the lower LSTM sees only words, the upper one sees
    its output together with the image). State: (h, c) of every layer, then the image embedding.
    """

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 num_layers: int = 1, image_layer: int = 0, dropout: float = 0.5):
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, dropout)
        if not 0 <= image_layer < num_layers:
            raise ValueError(f"image_layer {image_layer} is not a layer of a {num_layers}-layer stack")
        self.image_layer = image_layer
        self.image_embed = nn.Linear(feature_dim, embed_dim)
        sizes = [embed_dim] + [hidden_dim] * (num_layers - 1)
        sizes[image_layer] += embed_dim
        self.layers = nn.ModuleList(nn.LSTM(n, hidden_dim, batch_first=True) for n in sizes)

    def init_state(self, features: Tensor) -> State:
        B, H = features.shape[0], self.layers[0].hidden_size
        zeros = features.new_zeros(B, 1, H)
        image = self.dropout(self.image_embed(features))            # [B, E]
        return (*[zeros] * (2 * len(self.layers)), image)

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        *hc, image = state
        x = self.dropout(self.embed(words))                          # [B, T, E]
        new_state = []
        for i, lstm in enumerate(self.layers):
            if i == self.image_layer:
                x = torch.cat([x, image[:, None].expand(-1, x.shape[1], -1)], dim=-1)
            x, (h, c) = lstm(x, _lstm_input(hc[2 * i], hc[2 * i + 1]))
            new_state += _lstm_state(h, c)
            x = self.dropout(x)                                      # [B, T, H]
        return self.out(x), (*new_state, image)


# ----------------------------------------------------------------------------- the registered kinds
# The plain models above with the CPU fast step at inference (lrcn.models.fast_step).

class FastShowAndTell(LSTMStackFastStep, ShowAndTell):
    """:class:`ShowAndTell` with :class:`~lrcn.models.fast_step.LSTMStackFastStep`."""


class FastInitStateDecoder(LSTMStackFastStep, InitStateDecoder):
    """:class:`InitStateDecoder` with :class:`~lrcn.models.fast_step.LSTMStackFastStep`."""


class FastLRCN(LRCNFastStep, LRCN):
    """:class:`LRCN` with :class:`~lrcn.models.fast_step.LRCNFastStep`."""
