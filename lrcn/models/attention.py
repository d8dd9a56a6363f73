"""Show, Attend and Tell (Xu et al. 2015): an LSTM decoder that looks at image regions through soft attention.

Features are a set of N region vectors: an image's spatial grid [B, D, h, w] (N = h*w, the
``encoder.features: grid`` store), a clip's frames [B, T, D] (N = T: temporal attention, Yao et
al. 2015) or one pooled vector [B, D] (N = 1). At every step the previous hidden state scores each
region (an MLP over the region's key and the state), the softmax of the scores weighs the regions
into a context vector, a sigmoid gate of the state scales it (the paper's beta), and the LSTM reads
the word embedding together with the context. The initial state comes from the mean region.

Shapes: B batch, N regions, D feature size, R region size (= E), A attention size, H hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lrcn.models.base import CaptionDecoder, State


def regions_of(features: Tensor) -> Tensor:
    """[B, D, h, w] grid -> [B, h*w, D]; [B, T, D] frames as they are; [B, D] -> [B, 1, D]."""
    if features.dim() == 4:
        return features.flatten(2).transpose(1, 2)
    return features[:, None] if features.dim() == 2 else features


class ShowAttendTell(CaptionDecoder):
    """Soft attention over regions; state: (h [B, H], c [B, H], regions [B, N, R], keys [B, N, A])."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 attention_dim: int | None = None, dropout: float = 0.5):
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, dropout)
        A = attention_dim or hidden_dim
        self.region_embed = nn.Linear(feature_dim, embed_dim)         # D -> R
        self.init_h = nn.Linear(embed_dim, hidden_dim)
        self.init_c = nn.Linear(embed_dim, hidden_dim)
        self.key = nn.Linear(embed_dim, A)                            # region -> its attention key
        self.query = nn.Linear(hidden_dim, A)                         # state -> what it looks for
        self.score = nn.Linear(A, 1)
        self.gate = nn.Linear(hidden_dim, embed_dim)                  # beta: how much context to let in
        self.cell = nn.LSTMCell(2 * embed_dim, hidden_dim)            # word + context

    def init_state(self, features: Tensor) -> State:
        regions = self.dropout(F.relu(self.region_embed(regions_of(features))))     # [B, N, R]
        mean = regions.mean(dim=1)                                                  # [B, R]
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), regions, self.key(regions)

    def attend(self, h: Tensor, regions: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """h [B, H] -> (gated context [B, R], attention weights [B, N])."""
        scores = self.score(torch.tanh(keys + self.query(h)[:, None])).squeeze(-1)   # [B, N]
        alpha = scores.softmax(dim=-1)
        context = torch.bmm(alpha[:, None], regions).squeeze(1)                     # [B, R]
        return torch.sigmoid(self.gate(h)) * context, alpha

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        logits, _, state = self.attention_steps(words, state)
        return logits, state

    def attention_steps(self, words: Tensor, state: State) -> tuple[Tensor, Tensor, State]:
        """words [B, T] -> logits [B, T, V], attention weights [B, T, N] and the state after the last word."""
        h, c, regions, keys = state
        embedded = self.dropout(self.embed(words))                                  # [B, T, E]
        outputs, alphas = [], []
        for t in range(words.shape[1]):
            context, alpha = self.attend(h, regions, keys)
            h, c = self.cell(torch.cat([embedded[:, t], context], dim=-1), (h, c))
            outputs.append(h)
            alphas.append(alpha)
        logits = self.out(self.dropout(torch.stack(outputs, dim=1)))                # [B, T, V]
        return logits, torch.stack(alphas, dim=1), (h, c, regions, keys)

    def attention_maps(self, features: Tensor, words: Tensor) -> Tensor:
        """Where the model looked while reading ``words`` [B, T] (from <start>): weights [B, T, N]."""
        return self.attention_steps(words, self.init_state(features))[1]
