"""The decoder kinds, image and video, in one registry: ``decoder.kind`` -> a builder
``(vocab_size, feature_dim, **sizes) -> CaptionDecoder``. A new decoder is one class in
lrcn/models/ and one entry here.

``DECODERS``: the image decoders (lrcn.models.decoders, lrcn.models.attention), with the opt-in
CPU fast step where they have one. ``VIDEO_DECODERS``: S2VT, and every temporal encoder of
lrcn.models.temporal in front of every image decoder (``"<temporal>+<image decoder>"``).
"""

from __future__ import annotations

from functools import partial

from lrcn.errors import ConfigError
from lrcn.models.attention import ShowAttendTell
from lrcn.models.base import CaptionDecoder
from lrcn.models.decoders import FastInitStateDecoder, FastLRCN, FastShowAndTell
from lrcn.models.temporal import S2VT, TEMPORAL_ENCODERS, FrameDeltas, VideoCaptioner, build_temporal


def _lrcn(layers: int, image_layer: int, name: str):
    """A builder for one LRCN variant, whose number of layers is part of its definition."""
    def build(vocab_size: int, feature_dim: int, num_layers: int | None = None, **kwargs) -> FastLRCN:
        if num_layers not in (None, layers):
            raise ConfigError(f"decoder.kind {name} has {layers} LSTM layer(s) by definition; "
                              f"decoder.num_layers={num_layers} does not apply (leave it unset)")
        return FastLRCN(vocab_size, feature_dim, num_layers=layers, image_layer=image_layer, **kwargs)
    return build


DECODERS = {
    "show_and_tell": FastShowAndTell,
    "init_state": FastInitStateDecoder,
    "lrcn_1u": _lrcn(1, 0, "lrcn_1u"),
    "lrcn_2u": _lrcn(2, 0, "lrcn_2u"),
    "lrcn_2f": _lrcn(2, 1, "lrcn_2f"),
    "show_attend_tell": ShowAttendTell,
}


def _video_captioner(temporal: str, decoder: str, vocab_size: int, feature_dim: int, *,
                     hidden_dim: int = 512, dropout: float = 0.5, delta_dims: int = 0, delta_gain: float = 1.0,
                     **kwargs) -> VideoCaptioner:
    """``temporal`` over frame features (and their deltas), then the image decoder ``decoder`` on the clip vector."""
    encoder = build_temporal(temporal, feature_dim + delta_dims, hidden_dim, dropout)
    return VideoCaptioner(encoder, DECODERS[decoder](vocab_size, encoder.out_dim, hidden_dim=hidden_dim,
                                                     dropout=dropout, **kwargs), FrameDeltas(delta_dims, delta_gain))


VIDEO_DECODERS = {
    "s2vt": S2VT,
    **{f"{t}+{d}": partial(_video_captioner, t, d) for t in TEMPORAL_ENCODERS for d in DECODERS},
}


def build_decoder(kind: str, vocab_size: int, feature_dim: int, **kwargs) -> CaptionDecoder:
    """An image decoder (``DECODERS``) or a video one (``VIDEO_DECODERS``)."""
    kinds = {**DECODERS, **VIDEO_DECODERS}
    if kind not in kinds:
        raise ConfigError(f"decoder.kind {kind!r} is unknown; choose one of {sorted(kinds)}")
    return kinds[kind](vocab_size, feature_dim, **kwargs)
