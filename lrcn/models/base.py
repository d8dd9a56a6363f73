"""The base of every caption decoder: word embedding, dropout, output projection and the step
interface written once on ``forward_steps`` (see lrcn.models.decoders for the interface).

Shapes: B batch, T caption steps, D feature size, E embedding size, H hidden size, V vocabulary.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lrcn.models.fast_step import reusing_outputs

State = tuple[Tensor, ...]


class CaptionDecoder(nn.Module):
    """Word embedding, dropout and output projection shared by every decoder; a subclass writes
    ``init_state`` and ``forward_steps``."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 dropout: float = 0.5):
        super().__init__()
        self.vocab_size, self.feature_dim = vocab_size, feature_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def tie_embeddings(self) -> None:
        """One [V, E] matrix for the word embedding and the output layer (Press & Wolf, 2017), which
        needs the output layer to read E = H units. It starts uniform in [-0.1, 0.1] (PyTorch's
        word_language_model does so): the embedding's own N(0, 1) would give logits of std sqrt(H)."""
        if self.out.in_features != self.embed.embedding_dim:
            raise ValueError(f"cannot tie a [{self.vocab_size}, {self.embed.embedding_dim}] word embedding to an "
                             f"output layer reading {self.out.in_features} units: embed_dim must equal hidden_dim")
        with torch.no_grad():
            self.embed.weight.uniform_(-0.1, 0.1)
            if self.embed.padding_idx is not None:
                self.embed.weight[self.embed.padding_idx].zero_()
        self.out.weight = self.embed.weight

    def init_state(self, features: Tensor) -> State:
        """features [B, D] -> the state before the first word."""
        raise NotImplementedError

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B, T] -> logits [B, T, V] and the state after the last word."""
        raise NotImplementedError

    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> log_probs [B, V] (float32) and the next state."""
        logits, state = self.forward_steps(words[:, None], state)    # [B, 1, V]
        return F.log_softmax(logits[:, 0].float(), dim=-1), state

    def forward(self, features: Tensor, words: Tensor) -> Tensor:
        """Teacher forcing: input words [B, T] (starting with <start>) -> logits [B, T, V]."""
        logits, _ = self.forward_steps(words, self.init_state(features))
        return logits

    def reorder(self, state: State, index: Tensor) -> State:
        """Rows ``index`` [B'] of every state tensor."""
        return tuple(s.index_select(0, index) for s in state)


class WrappedDecoder(CaptionDecoder):
    """A decoder around an inner caption decoder ``self.decoder`` that only prepares its features
    (``init_state``): the words, state and steps are the inner decoder's."""

    decoder: CaptionDecoder

    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        return self.decoder.step(words, state)

    def tie_embeddings(self) -> None:
        self.decoder.tie_embeddings()

    def reusing_outputs(self) -> contextlib.AbstractContextManager:
        return reusing_outputs(self.decoder)

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        return self.decoder.forward_steps(words, state)

    def reorder(self, state: State, index: Tensor) -> State:
        return self.decoder.reorder(state, index)
