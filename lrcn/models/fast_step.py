"""The CPU fast step: an opt-in layer over a plain decoder's ``step``, same numbers, less time.

A plain decoder (:class:`lrcn.models.decoders.CaptionDecoder`) steps by running its
``forward_steps`` on one word and a log_softmax. A decoder kind opts into the fast step by
putting one of these mixins in front of its plain class, with the same parameters (so the same
checkpoints)::

    class FastShowAndTell(LSTMStackFastStep, ShowAndTell): ...

At inference (eval mode, no autograd, no autocast) ``step`` then runs ``inference_step`` and
normalises its logits in their own memory (:func:`log_softmax_`); in training it is the plain
step. :class:`FastStep` alone does only that; :class:`LSTMStackFastStep` (``ShowAndTell``,
``InitStateDecoder``: one multi-layer ``self.lstm`` whose first input is the word embedding) and
:class:`LRCNFastStep` (``LRCN``'s ``self.layers``) run the LSTM cells by hand, where a word's share
of the first LSTM's gates is a row of a table [V, 4H] (``word_gates``) instead of a matrix
multiply. Inside ``with decoder.reusing_outputs():`` (every strategy in lrcn.decoding enters it
where a model offers it) the step also writes its large [B, V] and [B, 4H] results into memory
it keeps from one step to the next.

The result equals the plain step up to float rounding (1e-5; the in-place log_softmax and the
kept memory are bit for bit): tests/test_decoders.py checks each kind that opts in against the
plain step of its own weights. The word-gate table is an LSTM identity (gates are a sum of the
input's and the state's shares); it does not carry over to a GRU, whose ``b_hn`` is multiplied
by the reset gate, so a new kind opts in only with a fast step of its own, and needs none.

Shapes: B batch, E embedding size, H hidden size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

State = tuple[Tensor, ...]


def reusing_outputs(model: Any) -> contextlib.AbstractContextManager:
    """``model.reusing_outputs()`` where the model offers one (see :meth:`FastStep.reusing_outputs`),
    else a block that changes nothing."""
    reuse = getattr(model, "reusing_outputs", None)
    return reuse() if reuse is not None else contextlib.nullcontext(model)


def log_softmax_(logits: Tensor) -> Tensor:
    """log_softmax over the last dim of a [B, V] tensor the step owns, on the CPU in its own
    memory: a second [B, V] tensor would cost fresh pages from the OS at every step of a large
    batch (glibc maps allocations over 32 MB anew each time), which made up 1/7 of a 1000-image
    beam search.
    Torch's CPU kernel reads each row whole before writing it, so the result is bit for bit
    F.log_softmax's (tests/test_decoders.py checks it)."""
    if logits.device.type != "cpu" or logits.dim() != 2 or not logits.is_contiguous():
        return F.log_softmax(logits, dim=-1)
    return torch._log_softmax(logits, -1, False, out=logits)


def lstm_cell(gates: Tensor, h: Tensor, c: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One step of an LSTM layer, nn.LSTM's equations: the input's share of the gates [B, 4H]
    (biases included; the step's own tensor, overwritten here), h and c [B, H], w_hh [4H, H] ->
    the next h and c [B, H], fresh tensors."""
    i, f, g, o = gates.addmm_(h, w_hh.t()).chunk(4, dim=1)            # nn.LSTM's gate order
    c = torch.addcmul(f.sigmoid_() * c, i.sigmoid_(), g.tanh_())      # f * c + i * g
    return o.sigmoid_() * torch.tanh(c), c


class FastStep:
    """Mixin for a :class:`~lrcn.models.decoders.CaptionDecoder`: ``step`` at inference runs
    ``inference_step`` and an in-place log_softmax; ``reusing_outputs`` keeps its outputs' memory."""

    _buffers_kept: dict[str, Tensor] | None = None                   # see reusing_outputs
    _gate_table_key, _gate_table, _gate_table_rows = None, None, 0   # see word_gates

    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> log_probs [B, V]: the plain step, or at inference (eval mode, no autograd,
        no autocast) ``inference_step``, which gives the same numbers faster (inside
        ``reusing_outputs``, in memory that the next step overwrites)."""
        if self.training or torch.is_grad_enabled() or torch.is_autocast_enabled(words.device.type):
            return super().step(words, state)
        logits, state = self.inference_step(words, state)
        return log_softmax_(logits.float()), state

    def inference_step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> logits [B, V] and the next state, without dropout or autograd; subclasses
        override it with a cheaper computation of ``forward_steps`` on one word. The logits must
        be a tensor of the call's own, or ``project``'s kept memory: ``step`` turns them into
        log-probs in place."""
        logits, state = self.forward_steps(words[:, None], state)
        return logits[:, 0], state

    @contextlib.contextmanager
    def reusing_outputs(self) -> Iterator[FastStep]:
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
        """The output layer ``self.out`` at inference: h [B, H] -> logits [B, V], in kept memory
        inside ``reusing_outputs`` (``F.linear`` runs the same ``addmm``)."""
        out = self._buffer("logits", (h.shape[0], self.vocab_size), h)
        if out is None:
            return self.out(h)
        return torch.addmm(self.out.bias, h, self.out.weight.t(), out=out)

    def word_gates(self, words: Tensor, lstm: nn.LSTM) -> Tensor:
        """words [B] -> their share of the gates of ``lstm``'s first layer, whose input starts with
        the word embedding ``self.embed``, biases included: ``embed(words) @ W_ih[:, :E].T + b_ih + b_hh`` [B, 4H].

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


class LSTMStackFastStep(FastStep):
    """The fast step of a decoder with one (multi-layer) ``self.lstm`` whose input is the word
    embedding, state (h, c) [B, L, H] each, and output layer ``self.out`` on the top layer's h
    (``ShowAndTell``, ``InitStateDecoder``)."""

    def inference_step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state                                                 # [B, L, H] each
        gates = self.word_gates(words, self.lstm)                    # [B, 4H]
        hs, cs = [], []
        for layer in range(self.lstm.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.lstm.all_weights[layer]
            if layer > 0:
                gates = torch.addmm(b_ih + b_hh, hs[-1], w_ih.t())
            h_l, c_l = lstm_cell(gates, h[:, layer], c[:, layer], w_hh)
            hs.append(h_l)
            cs.append(c_l)
        return self.project(hs[-1]), (torch.stack(hs, 1), torch.stack(cs, 1))


class LRCNFastStep(FastStep):
    """The fast step of :class:`lrcn.models.decoders.LRCN`: one-layer LSTMs ``self.layers``, the
    image embedding joining the input of layer ``self.image_layer``; state (h, c) [B, 1, H] of
    every layer, then the image embedding [B, E]."""

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
            x, c = lstm_cell(gates, hc[2 * i][:, 0], hc[2 * i + 1][:, 0], w_hh)
            new_state += x[:, None], c[:, None]                     # [B, H] -> [B, 1, H]
        return self.project(x), (*new_state, image)
