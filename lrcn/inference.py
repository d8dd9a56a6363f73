"""Loading a trained run and turning features into captions, shared by train, evaluate and caption."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch

from lrcn.config import Config
from lrcn.data.loaders import cached_features, load_samples, split as split_of
from lrcn.decoding import DecodeConfig, Hypothesis, generate
from lrcn.decoding.rerank import ConsensusReranker
from lrcn.models.concepts import ConceptCaptioner
from lrcn.models.decoders import CaptionDecoder, build_decoder
from lrcn.models.encoders import ImageEncoder, build_encoder
from lrcn.models.temporal import delta_dims
from lrcn.run import Run
from lrcn.text import Vocabulary


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
    kind reads the concept detectors' [V] probabilities instead)."""
    d = config.decoder
    layers = {"num_layers": d.num_layers} if d.num_layers is not None else {}
    decoder = build_decoder(d.kind, vocab_size, vocab_size if d.concepts else feature_dim, embed_dim=d.embed_dim,
                            hidden_dim=d.hidden_dim, dropout=d.dropout, **layers,
                            **frame_delta_args(config, feature_dim))
    return ConceptCaptioner(decoder, feature_dim, d.dropout) if d.concepts else decoder


def build_models(config: Config, vocab_size: int, pretrained: bool | None = None):
    """The encoder (frozen or partly trainable, per config) and a fresh decoder."""
    encoder = config_encoder(config, pretrained)
    return encoder, config_decoder(config, vocab_size, encoder.out_dim)


def load_models(run: Run, which: str = "best", device: str | torch.device = "cpu"):
    """(config, vocab, encoder, decoder) of a run, in eval mode on ``device``."""
    config, vocab = run.config(), run.vocab()
    ckpt = run.checkpoint(which)
    fine_tuned = "encoder" in ckpt
    encoder, decoder = build_models(config, len(vocab), pretrained=None if not fine_tuned else False)
    decoder.load_state_dict(ckpt["model"])
    if fine_tuned:
        encoder.load_state_dict(ckpt["encoder"])
    return config, vocab, encoder.to(device).eval(), decoder.to(device).eval()


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.inference_mode()
def caption_features(decoder: CaptionDecoder, features: torch.Tensor, vocab: Vocabulary, decode: DecodeConfig,
                     batch_size: int = 256, device: torch.device = torch.device("cpu"), bf16: bool = False,
                     reranker: ConsensusReranker | None = None) -> list[list[Hypothesis]]:
    """n-best hypotheses for each row of ``features`` (decoded in batches on ``device``). With a
    ``reranker`` (``decode.rerank``), every candidate of the search is re-ordered by consensus first."""
    decoder.eval()
    search = dataclasses.replace(decode, n_best=max(decode.n_best, decode.beam_size)) if reranker else decode
    out: list[list[Hypothesis]] = []
    for chunk in features.split(batch_size):
        with autocast(device, bf16):
            out += generate(decoder, chunk.to(device), search, bos=vocab.start, eos=vocab.end, unk=vocab.unk,
                            pad=vocab.pad)
    if reranker is not None:
        orders = reranker.order(features, [[vocab.decode(h.tokens) for h in nbest] for nbest in out])
        out = [[nbest[j] for j in order[:decode.n_best]] for nbest, order in zip(out, orders)]
    return out


def training_reranker(run: Run, config: Config, encoder: ImageEncoder, k: int, device: torch.device,
                      progress: bool = True) -> ConsensusReranker | None:
    """The consensus reranker of ``decode.rerank=k`` (None for 0): the run's training images' features
    (from the feature store, extracted once) and captions."""
    if not k:
        return None
    train = split_of(load_samples(config), "train")
    features, train = cached_features(run_feature_config(run, config), train, encoder, device, progress)
    return ConsensusReranker(features, [s.captions for s in train], k)


def run_feature_config(run: Run, config: Config) -> Config:
    """``config`` reading features from the run's own store when its encoder was fine-tuned (the
    dataset's stores hold the pretrained encoder's features under the same key)."""
    if config.encoder.trainable_blocks == 0:
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, feature_dir=str(run.dir / "features")))


def decode_config(config: Config, **overrides: Any) -> DecodeConfig:
    """The run's ``decode:`` section with ``overrides`` (those not None) applied."""
    return dataclasses.replace(config.decode, **{k: v for k, v in overrides.items() if v is not None})
