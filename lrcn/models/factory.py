"""The models of a config: its encoder (frozen or partly trainable; its ``key`` names the feature
stores) and a fresh decoder of ``decoder.kind`` (lrcn.models.registry). Training, evaluation,
captioning and activity recognition all build their models here."""

from __future__ import annotations

from typing import Any

from lrcn.config import Config
from lrcn.models.base import CaptionDecoder
from lrcn.models.concepts import ConceptCaptioner
from lrcn.models.encoders import ImageEncoder, build_encoder
from lrcn.models.registry import build_decoder
from lrcn.models.temporal import delta_dims


def config_encoder(config: Config, pretrained: bool | None = None) -> ImageEncoder:
    """The encoder of ``config`` (frozen or partly trainable); its ``key`` names the feature stores."""
    c = config.encoder
    return build_encoder(c.name, pretrained=c.pretrained if pretrained is None else pretrained,
                         trainable_blocks=c.trainable_blocks, weights_path=c.weights_path,
                         image_size=c.image_size, crop=c.crop, attention_map=c.attention_map,
                         flip_average=c.flip_average, features=c.features,
                         grid_size=c.grid_size)


def frame_delta_args(config: Config, feature_dim: int) -> dict[str, Any]:
    """``delta_dims`` / ``delta_gain`` for a video model on features of ``feature_dim``, per
    ``decoder.frame_deltas`` (none when it is ``off``)."""
    d = config.decoder
    if d.frame_deltas == "off":
        return {}
    return {"delta_dims": delta_dims(d.frame_deltas, feature_dim, config.encoder.attention_map),
            "delta_gain": d.delta_gain}


def config_decoder(config: Config, vocab_size: int, feature_dim: int) -> CaptionDecoder:
    """A fresh decoder of ``config`` on features of ``feature_dim`` (with ``decoder.concepts``, the
    kind reads the concept detectors' [V] probabilities instead; with ``decoder.tie_embeddings``, its
    word embedding is its output layer's weights)."""
    d = config.decoder
    layers = {"num_layers": d.num_layers} if d.num_layers is not None else {}
    decoder = build_decoder(d.kind, vocab_size, vocab_size if d.concepts else feature_dim, embed_dim=d.embed_dim,
                            hidden_dim=d.hidden_dim, dropout=d.dropout, **layers,
                            **frame_delta_args(config, feature_dim))
    if d.tie_embeddings:
        decoder.tie_embeddings()
    return ConceptCaptioner(decoder, feature_dim, d.dropout) if d.concepts else decoder


def build_models(config: Config, vocab_size: int, pretrained: bool | None = None):
    """The encoder (frozen or partly trainable, per config) and a fresh decoder."""
    encoder = config_encoder(config, pretrained)
    return encoder, config_decoder(config, vocab_size, encoder.out_dim)
