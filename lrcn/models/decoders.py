"""Caption decoders behind one step interface.

Every decoder, image or video, offers
  ``init_state(features) -> state``           a tuple of batch-first tensors,
  ``step(words, state) -> (log_probs, state)`` one word per row in, log-probabilities [B, V] out,
  ``reorder(state, index) -> state``          gather rows along the batch (beam search uses it),
and ``forward(features, words) -> logits`` for teacher forcing, which agrees with repeated
``step`` calls (tests/test_decoders.py checks it). Decoding code (lrcn.decoding) sees only the
step interface, so a new decoder is one class and every strategy works for it at once.

At inference (eval mode, no autograd, no autocast) ``step`` runs ``inference_step``: the LSTM
cells by hand, where a word's share of the first LSTM's gates is a row of a table [V, 4H]
(``word_gates``) instead of a matrix multiply; the same numbers up to float rounding. Inside
``with decoder.reusing_outputs():`` (the search strategies enter it) that step also writes its
large [B, V] and [B, 4H] results into memory it keeps from one step to the next.

Shapes: B batch, T caption steps, D feature size, E embedding size, H hidden size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

State = tuple[Tensor, ...]


class CaptionDecoder(nn.Module):
    """Word embedding, LSTM stack and output projection shared by every decoder."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 dropout: float = 0.5):
        super().__init__()
        self.vocab_size, self.feature_dim = vocab_size, feature_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self._gate_table_key, self._gate_table, self._gate_table_rows = None, None, 0    # see word_gates
        self._buffers_kept: dict[str, Tensor] | None = None                           # see reusing_outputs

    def init_state(self, features: Tensor) -> State:
        raise NotImplementedError

    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> log_probs [B, V]: ``forward_steps`` on one word, or at inference (eval mode,
        no autograd, no autocast) ``inference_step``, which gives the same numbers faster (inside
        ``reusing_outputs``, in memory that the next step overwrites)."""
        if self.training or torch.is_grad_enabled() or torch.is_autocast_enabled(words.device.type):
            logits, state = self.forward_steps(words[:, None], state)
            return F.log_softmax(logits[:, 0].float(), dim=-1), state
        logits, state = self.inference_step(words, state)
        return _log_softmax_(logits.float()), state

    def inference_step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> logits [B, V] and the next state, without dropout or autograd; decoders
        override it with a cheaper computation of ``forward_steps`` on one word. The logits must
        be a tensor of the call's own, or ``project``'s kept memory: ``step`` turns them into
        log-probs in place."""
        logits, state = self.forward_steps(words[:, None], state)
        return logits[:, 0], state

    @contextlib.contextmanager
    def reusing_outputs(self) -> Iterator[CaptionDecoder]:
        """Within the block, ``step`` at inference writes its log-probs (and ``inference_step``
        its gates) into memory the decoder keeps: **each step's log-probs are valid only until
        the next step call**, which overwrites them. A decoding loop that is done with a step's
        output before the next step (every strategy in lrcn.decoding) saves the cost of fresh
        memory at every step: on the CPU, glibc maps a new allocation over 32 MB from the OS
        each time, and first touching its pages cost a 1000-image beam search 7-20% of its time
        (experiments/benchmarks/RESULTS.md). The numbers are the same bit for bit."""
        kept, self._buffers_kept = self._buffers_kept, {}
        try:
            yield self
        finally:
            self._buffers_kept = kept

    def _buffer(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor | None:
        """A tensor of ``shape`` in the memory kept for ``name`` (the dtype and device of ``like``)
        inside ``reusing_outputs``, None outside it."""
        if self._buffers_kept is None:
            return None
        size, memory = math.prod(shape), self._buffers_kept.get(name)
        if memory is None or memory.numel() < size or memory.dtype != like.dtype or memory.device != like.device:
            memory = self._buffers_kept[name] = like.new_empty(size)
        return memory[:size].view(shape)

    def project(self, h: Tensor) -> Tensor:
        """The output layer at inference: h [B, H] -> logits [B, V], in kept memory inside
        ``reusing_outputs`` (``F.linear`` runs the same ``addmm``)."""
        out = self._buffer("logits", (h.shape[0], self.vocab_size), h)
        if out is None:
            return self.out(h)
        return torch.addmm(self.out.bias, h, self.out.weight.t(), out=out)

    def word_gates(self, words: Tensor, lstm: nn.LSTM) -> Tensor:
        """words [B] -> their share of the gates of ``lstm``'s first layer, whose input starts with
        the word embedding, biases included: ``embed(words) @ W_ih[:, :E].T + b_ih + b_hh`` [B, 4H].

        Rows of a table of every word [V, 4H], kept for one version of the weights (their storage
        and in-place version counters, which optimizer steps, load_state_dict and .to() change).
        The table costs as much as V rows of the multiply, so it is built only once V rows have
        been multiplied with these weights: a small decode, such as SCST's greedy baseline after
        each optimizer step, never pays for it, and none pays more than twice the cheaper way."""
        E = self.embed.embedding_dim
        weights = (self.embed.weight, lstm.weight_ih_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        w_ih, bias = lstm.weight_ih_l0[:, :E], lstm.bias_ih_l0 + lstm.bias_hh_l0     # [4H, E], [4H]
        if any(w.is_inference() for w in weights):                # no version counters: no table
            return torch.addmm(bias, self.embed(words), w_ih.t())
        key = tuple((w.device, w.data_ptr(), w._version) for w in weights)
        if key != self._gate_table_key:
            self._gate_table_key, self._gate_table, self._gate_table_rows = key, None, 0
        self._gate_table_rows += len(words)
        if self._gate_table is None and self._gate_table_rows >= self.vocab_size:
            self._gate_table = torch.addmm(bias, self.embed.weight, w_ih.t())         # [V, 4H]
        if self._gate_table is None:
            return torch.addmm(bias, self.embed(words), w_ih.t())
        out = self._buffer("gates", (len(words), self._gate_table.shape[1]), self._gate_table)
        return torch.index_select(self._gate_table, 0, words, out=out)

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B, T] -> logits [B, T, V] and the state after the last word."""
        raise NotImplementedError

    def forward(self, features: Tensor, words: Tensor) -> Tensor:
        """Teacher forcing: input words [B, T] (starting with <start>) -> logits [B, T, V]."""
        logits, _ = self.forward_steps(words, self.init_state(features))
        return logits

    def reorder(self, state: State, index: Tensor) -> State:
        return tuple(s.index_select(0, index) for s in state)


def _log_softmax_(logits: Tensor) -> Tensor:
    """log_softmax over the last dim of a [B, V] tensor the step owns, on the CPU in its own
    memory: a second [B, V] tensor would cost fresh pages from the OS at every step of a large
    batch (glibc maps allocations over 32 MB anew each time), which made up 1/7 of a 1000-image
    beam search.
    Torch's CPU kernel reads each row whole before writing it, so the result is bit for bit
    F.log_softmax's (tests/test_decoders.py checks it)."""
    if logits.device.type != "cpu" or logits.dim() != 2 or not logits.is_contiguous():
        return F.log_softmax(logits, dim=-1)
    return torch._log_softmax(logits, -1, False, out=logits)


def _lstm_state(h: Tensor, c: Tensor) -> State:
    """nn.LSTM's (h, c) [L, B, H] -> batch-first [B, L, H]."""
    return h.transpose(0, 1), c.transpose(0, 1)


def _lstm_input(h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """batch-first [B, L, H] -> nn.LSTM's (h, c) [L, B, H]."""
    return h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()


def _lstm_cell(gates: Tensor, h: Tensor, c: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One step of an LSTM layer, nn.LSTM's equations: the input's share of the gates [B, 4H]
    (biases included; the step's own tensor, overwritten here), h and c [B, H], w_hh [4H, H] ->
    the next h and c [B, H], fresh tensors."""
    i, f, g, o = gates.addmm_(h, w_hh.t()).chunk(4, dim=1)            # nn.LSTM's gate order
    c = torch.addcmul(f.sigmoid_() * c, i.sigmoid_(), g.tanh_())      # f * c + i * g
    return o.sigmoid_() * torch.tanh(c), c


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

    def inference_step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state                                                 # [B, L, H] each
        gates = self.word_gates(words, self.lstm)                    # [B, 4H]
        hs, cs = [], []
        for layer in range(self.lstm.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.lstm.all_weights[layer]
            if layer > 0:
                gates = torch.addmm(b_ih + b_hh, hs[-1], w_ih.t())
            h_l, c_l = _lstm_cell(gates, h[:, layer], c[:, layer], w_hh)
            hs.append(h_l)
            cs.append(c_l)
        return self.project(hs[-1]), (torch.stack(hs, 1), torch.stack(cs, 1))


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
    inference_step = ShowAndTell.inference_step


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

    def inference_step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        *hc, image = state                                           # [B, 1, H] each, image [B, E]
        new_state = []
        for i, lstm in enumerate(self.layers):
            w_ih, w_hh, b_ih, b_hh = lstm.all_weights[0]             # w_ih [4H, E or H (+ E: image)]
            if i == 0:
                gates = self.word_gates(words, lstm)                 # [B, 4H]
            else:
                gates = torch.addmm(b_ih + b_hh, x, w_ih[:, :x.shape[1]].t())
            if i == self.image_layer:
                gates.addmm_(image, w_ih[:, -image.shape[1]:].t())   # the image's share
            x, c = _lstm_cell(gates, hc[2 * i][:, 0], hc[2 * i + 1][:, 0], w_hh)
            new_state += x[:, None], c[:, None]                     # [B, H] -> [B, 1, H]
        return self.project(x), (*new_state, image)


def _lrcn(layers: int, image_layer: int, name: str):
    """A builder for one LRCN variant, whose number of layers is part of its definition."""
    def build(vocab_size: int, feature_dim: int, num_layers: int | None = None, **kwargs) -> LRCN:
        if num_layers not in (None, layers):
            from lrcn.errors import ConfigError
            raise ConfigError(f"decoder.kind {name} has {layers} LSTM layer(s) by definition; "
                              f"decoder.num_layers={num_layers} does not apply (leave it unset)")
        return LRCN(vocab_size, feature_dim, num_layers=layers, image_layer=image_layer, **kwargs)
    return build


DECODERS = {
    "show_and_tell": ShowAndTell,
    "init_state": InitStateDecoder,
    "lrcn_1u": _lrcn(1, 0, "lrcn_1u"),
    "lrcn_2u": _lrcn(2, 0, "lrcn_2u"),
    "lrcn_2f": _lrcn(2, 1, "lrcn_2f"),
}


def build_decoder(kind: str, vocab_size: int, feature_dim: int, **kwargs) -> CaptionDecoder:
    """An image decoder (``DECODERS``) or a video one (``lrcn.models.temporal.VIDEO_DECODERS``)."""
    from lrcn.errors import ConfigError
    from lrcn.models.attention import ShowAttendTell
    from lrcn.models.temporal import VIDEO_DECODERS   # imports this module, so not at the top
    kinds = {**DECODERS, **VIDEO_DECODERS, "show_attend_tell": ShowAttendTell}
    if kind not in kinds:
        raise ConfigError(f"decoder.kind {kind!r} is unknown; choose one of {sorted(kinds)}")
    return kinds[kind](vocab_size, feature_dim, **kwargs)
