"""Video captioning: temporal encoders over per-frame features, and decoders behind the step interface.

A temporal encoder maps frame features [B, T, D] to a clip vector [B, D'] and per-step outputs
[B, T, D']:

* ``mean``:   the average frame feature (Venugopalan et al. 2015a, "mean pool").
* ``lstm``:   an LSTM over the frames; the clip vector is its last hidden state.
* ``bilstm``: a bidirectional LSTM; the clip vector joins the forward LSTM's last state and the
  backward LSTM's last state (the one after reading the first frame).

Video decoders (``VIDEO_DECODERS`` of :mod:`lrcn.models.registry`, where ``build_decoder`` knows them):

* ``"<temporal>+<image decoder>"``, e.g. ``mean+show_and_tell``, ``lstm+lrcn_2f``,
  ``bilstm+init_state``: :class:`VideoCaptioner`, the clip vector fed to any image decoder's
  ``init_state``; the words are then decoded by that image decoder unchanged.
* ``s2vt``: :class:`S2VT` (Venugopalan et al. 2015b, "Sequence to Sequence - Video to Text").

``delta_dims=k`` and ``delta_gain`` (config ``decoder.frame_deltas`` and ``delta_gain``) put
:class:`FrameDeltas` in front of either: each frame's features are followed by the change of
their last k values since the previous frame, a cheap motion signal in the spirit of LRCN's
optical-flow input.

Both take features [B, T, D] (an image's [B, D] counts as a one-frame clip) and offer the step
interface of :class:`lrcn.models.decoders.CaptionDecoder`, so every strategy in
``lrcn.decoding`` (greedy, beam, diverse beam, sampling) decodes them unchanged.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor, nn

from lrcn.errors import ConfigError
from lrcn.models.base import CaptionDecoder, State, WrappedDecoder
from lrcn.models.decoders import _lstm_input, _lstm_state
from lrcn.models.fast_step import FastStep


def _frames(features: Tensor) -> Tensor:
    """[B, T, D] as is; an image's [B, D] as a one-frame clip [B, 1, D]."""
    return features[:, None] if features.dim() == 2 else features


# ----------------------------------------------------------------------------- motion

class FrameDeltas(nn.Module):
    """frames [B, T, D] -> [B, T, D + k]: each frame, then gain * (x_t[-k:] - x_{t-1}[-k:]) (zeros at t = 0).

    With ``encoder.attention_map`` the last A*A features are the frame's spatial attention map, and
    their change says where things went: a linear layer reads "moved left" from it, where an LSTM
    would have to learn to compare positions across steps. Motion is small next to appearance
    (on shapes-video the deltas' norm is about 0.2 of the pooled features'), and under Adam an input
    block's effective learning rate grows with its scale, hence ``gain``. ``k = 0`` passes the
    frames unchanged.
    """

    def __init__(self, dims: int = 0, gain: float = 1.0):
        super().__init__()
        if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
            raise ConfigError(f"decoder.delta_gain={gain!r}: must be a positive number")
        self.dims, self.gain = dims, float(gain)

    def forward(self, frames: Tensor) -> Tensor:
        if not self.dims:
            return frames
        tail = frames[..., -self.dims:]                                            # [B, T, k]
        before = torch.cat([tail[:, :1], tail[:, :-1]], dim=1)                     # x_{t-1}, x_0 at t = 0
        return torch.cat([frames, self.gain * (tail - before)], dim=-1)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, gain={self.gain}"


FRAME_DELTAS = ("off", "where", "all")


def delta_dims(frame_deltas: str, feature_dim: int, attention_map: int = 0) -> int:
    """How many trailing features ``decoder.frame_deltas`` differences: none (``off``), the
    attention map (``where``, needs ``encoder.attention_map``) or the whole feature (``all``)."""
    if frame_deltas not in FRAME_DELTAS:
        raise ConfigError(f"decoder.frame_deltas={frame_deltas!r}: choose one of {', '.join(FRAME_DELTAS)}")
    if frame_deltas == "where" and not attention_map:
        raise ConfigError("decoder.frame_deltas=where differences the attention map, but encoder.attention_map "
                          "is 0; set encoder.attention_map (e.g. 8) or use frame_deltas=all")
    return {"off": 0, "where": attention_map ** 2, "all": feature_dim}[frame_deltas]


# ----------------------------------------------------------------------------- temporal encoders

class MeanPool(nn.Module):
    """Clip vector = the mean frame feature; per-step outputs = the frame features."""

    def __init__(self, feature_dim: int, hidden_dim: int = 512, dropout: float = 0.0):
        super().__init__()
        self.feature_dim = self.out_dim = feature_dim

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames [B, T, D] -> (clip [B, D], steps [B, T, D])."""
        return frames.mean(dim=1), frames


class LSTMEncoder(nn.Module):
    """An LSTM over the frames: clip vector = last hidden state, per-step outputs = its outputs.

    ``bidirectional``: a forward and a backward LSTM of ``hidden_dim`` each; the clip vector
    joins the forward one's state after the last frame and the backward one's after the first.
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 512, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(feature_dim, hidden_dim, batch_first=True, bidirectional=bidirectional)
        self.feature_dim = feature_dim
        self.out_dim = hidden_dim * (2 if bidirectional else 1)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames [B, T, D] -> (clip [B, H or 2H], steps [B, T, H or 2H])."""
        steps, (h, _) = self.lstm(self.dropout(frames))     # h [directions, B, H]
        return torch.cat(list(h), dim=-1), steps


TEMPORAL_ENCODERS = {
    "mean": MeanPool,
    "lstm": LSTMEncoder,
    "bilstm": partial(LSTMEncoder, bidirectional=True),
}


def build_temporal(kind: str, feature_dim: int, hidden_dim: int = 512, dropout: float = 0.0) -> nn.Module:
    if kind not in TEMPORAL_ENCODERS:
        raise ConfigError(f"temporal encoder {kind!r} is unknown; choose one of {sorted(TEMPORAL_ENCODERS)}")
    return TEMPORAL_ENCODERS[kind](feature_dim, hidden_dim, dropout)


# ----------------------------------------------------------------------------- video decoders

class VideoCaptioner(WrappedDecoder):
    """A temporal encoder whose clip vector sets up an image decoder (``init_state``); the image
    decoder then produces the words. State and steps are the image decoder's own."""

    def __init__(self, temporal: nn.Module, decoder: CaptionDecoder, deltas: FrameDeltas | None = None):
        nn.Module.__init__(self)   # the image decoder holds the embedding and output layers
        self.deltas = deltas or FrameDeltas(0)
        self.temporal, self.decoder = temporal, decoder
        self.vocab_size, self.feature_dim = decoder.vocab_size, temporal.feature_dim - self.deltas.dims

    def init_state(self, features: Tensor) -> State:
        """features [B, T, D] -> the image decoder's state for the clip vector."""
        clip, _ = self.temporal(self.deltas(_frames(features)))
        return self.decoder.init_state(clip)


class S2VT(FastStep, CaptionDecoder):
    """Venugopalan et al. (2015): two stacked LSTMs read the frames, then emit the words.

    Encoding (``init_state``): the top LSTM reads the embedded frames while the bottom one reads
    the top's outputs next to a padding word (zeros). Decoding (``forward_steps`` / ``step``):
    the top LSTM reads padding (zeros) and the bottom one reads the top's outputs next to the
    previous word; the bottom LSTM's output predicts the next word. No loss falls on the
    encoding steps. State: (h, c) of the top LSTM, then of the bottom one, each [B, 1, H].
    ``num_layers`` is there for a uniform constructor: S2VT always stacks two LSTMs (1, the
    config default, or 2 are accepted). ``delta_dims``: see :class:`FrameDeltas`. Its step at
    inference is :class:`~lrcn.models.fast_step.FastStep`'s: nn.LSTM, the log_softmax in place.
    """

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 num_layers: int = 2, dropout: float = 0.5, delta_dims: int = 0, delta_gain: float = 1.0):
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, dropout)
        if num_layers not in (1, 2):
            raise ConfigError(f"decoder.num_layers={num_layers}: S2VT is a stack of exactly two LSTMs; use 2")
        self.embed_dim = embed_dim
        self.deltas = FrameDeltas(delta_dims, delta_gain)
        self.frame_embed = nn.Linear(feature_dim + delta_dims, embed_dim)
        self.top = nn.LSTM(embed_dim, hidden_dim, batch_first=True)                 # frames
        self.bottom = nn.LSTM(hidden_dim + embed_dim, hidden_dim, batch_first=True)  # top's output + word

    def init_state(self, features: Tensor) -> State:
        frames = self.deltas(_frames(features))                            # [B, T, D (+ k)]
        x = self.dropout(self.frame_embed(frames))                         # [B, T, E]
        y, (h1, c1) = self.top(x)                                          # y [B, T, H]
        pad = x.new_zeros(*x.shape[:2], self.embed_dim)                   # no word yet
        _, (h2, c2) = self.bottom(torch.cat([self.dropout(y), pad], dim=-1))
        return (*_lstm_state(h1, c1), *_lstm_state(h2, c2))

    def forward_steps(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        h1, c1, h2, c2 = state
        w = self.dropout(self.embed(words))                                # [B, L, E]
        y, (h1, c1) = self.top(w.new_zeros(*w.shape[:2], self.embed_dim), _lstm_input(h1, c1))
        z, (h2, c2) = self.bottom(torch.cat([self.dropout(y), w], dim=-1), _lstm_input(h2, c2))
        return self.out(self.dropout(z)), (*_lstm_state(h1, c1), *_lstm_state(h2, c2))
