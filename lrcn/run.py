"""Run folders: one per training run, holding everything needed to trace back or resume a result.

    runs/NAME/
      config.yaml            the resolved config, exactly what ran
      vocab.json
      checkpoints/last.pt    written at every epoch end (and every train.checkpoint_every steps)
      checkpoints/best.pt    the best epoch by train.val_metric on the val split
      tb/                    TensorBoard events
      metrics_<name>.json / .md, results_<split>.json, per_image_<name>.json   written by evaluate

Besides the folder (:class:`Run`), what every command that reads a trained run needs: its models
loaded in eval mode (:func:`load_models`), its feature store (:func:`run_feature_config`), its
``decode:`` section (:func:`decode_config`) and its consensus re-ranker (:func:`training_reranker`);
for several runs decoding as one, their models with one vocabulary checked (:func:`load_members`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch

from lrcn.config import Config, load_config, save_config
from lrcn.data.loaders import cached_features, load_samples, split as split_of
from lrcn.decoding import DecodeConfig
from lrcn.decoding.rerank import ConsensusReranker
from lrcn.errors import CheckpointError, ConfigError
from lrcn.models.encoders import ImageEncoder, state_tag
from lrcn.models.factory import build_models
from lrcn.text import Vocabulary
from lrcn.train.checkpoint import load_checkpoint


class Run:
    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    config_path = property(lambda self: self.dir / "config.yaml")
    vocab_path = property(lambda self: self.dir / "vocab.json")
    checkpoints = property(lambda self: self.dir / "checkpoints")
    last = property(lambda self: self.dir / "checkpoints" / "last.pt")
    best = property(lambda self: self.dir / "checkpoints" / "best.pt")
    tb = property(lambda self: self.dir / "tb")

    @classmethod
    def create(cls, config: Config, directory: str | os.PathLike | None = None) -> "Run":
        run = cls(directory or Path(config.train.runs_dir) / config.name)
        if run.last.exists():
            raise ConfigError(f"run folder {run.dir} already holds a run; continue it with "
                              f"`lrcn train --resume {run.dir}` or choose another name (--set name=...)")
        run.dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run.config_path)
        return run

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "Run":
        run = cls(directory)
        if not run.config_path.is_file():
            raise CheckpointError(f"{run.dir} is not an lrcn run folder (no config.yaml); "
                                  f"pass the folder that `lrcn train` created, e.g. runs/NAME")
        return run

    def config(self) -> Config:
        try:
            return load_config(self.config_path)
        except ConfigError as e:
            raise CheckpointError(f"{self.config_path} does not fit this lrcn version ({e}); "
                                  f"use the lrcn version that wrote it, or retrain") from None

    def vocab(self) -> Vocabulary:
        return Vocabulary.load(self.vocab_path)

    def checkpoint(self, which: str = "best", map_location="cpu") -> dict:
        """``best`` falls back to ``last`` (a run killed before its first validation)."""
        path = self.best if which == "best" and self.best.exists() else self.last
        if which not in ("best", "last"):
            path = Path(which)
        if not path.exists():
            raise CheckpointError(f"run folder {self.dir} has no checkpoint yet ({path} is missing); "
                                  f"train it first or resume it with `lrcn train --resume {self.dir}`")
        return load_checkpoint(path, map_location)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


def load_models(run: Run, which: str = "best", device: str | torch.device = "cpu"):
    """(config, vocab, encoder, decoder) of a run, in eval mode on ``device``."""
    config, vocab = run.config(), run.vocab()
    ckpt = run.checkpoint(which)
    fine_tuned = "encoder" in ckpt
    encoder, decoder = build_models(config, len(vocab), pretrained=None if not fine_tuned else False)
    decoder.load_state_dict(ckpt["model"])
    if fine_tuned:   # its features are its own: stored under its weights' digest, not the pretrained ones'
        encoder.load_state_dict(ckpt["encoder"])
        encoder.set_weights_tag(state_tag(ckpt["encoder"]))
    return config, vocab, encoder.to(device).eval(), decoder.to(device).eval()


class Member(NamedTuple):
    """One run of an ensemble, loaded (:func:`load_members`)."""
    run: Run
    config: Config
    encoder: ImageEncoder
    decoder: Any


def load_members(run_dirs: Sequence[str | os.PathLike], which: str = "best",
                 device: str | torch.device = "cpu") -> tuple[list[Member], Vocabulary]:
    """The runs of an ensemble (lrcn.models.ensemble) loaded as :func:`load_models` loads one,
    and their vocabulary: a CheckpointError names the first run whose vocabulary differs."""
    members, vocab = [], None
    for directory in run_dirs:
        run = Run.open(directory)
        config, run_vocab, encoder, decoder = load_models(run, which, device)
        if vocab is not None and run_vocab.words != vocab.words:
            raise CheckpointError(f"{run.dir} has another vocabulary than {members[0].run.dir}; ensemble members "
                                  f"must be trained on the same data with the same data.min_word_count")
        vocab = vocab or run_vocab
        members.append(Member(run, config, encoder, decoder))
    return members, vocab


def training_reranker(run: Run, config: Config, encoder: ImageEncoder, decode: DecodeConfig, device: torch.device,
                      progress: bool = True) -> ConsensusReranker | None:
    """The consensus reranker of ``decode.rerank`` / ``decode.rerank_metric`` (None for rerank 0):
    the run's training images' features (from the feature store, extracted once) and captions."""
    if not decode.rerank:
        return None
    train = split_of(load_samples(config), "train")
    features, train = cached_features(run_feature_config(run, config), train, encoder, device, progress)
    return ConsensusReranker(features, [s.captions for s in train], decode.rerank, metric=decode.rerank_metric)


def run_feature_config(run: Run, config: Config) -> Config:
    """``config`` keeping features in the run's own folder when its encoder was fine-tuned: they
    belong to the run (each checkpoint's under its weights' digest, :func:`load_models`)."""
    if config.encoder.trainable_blocks == 0:
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, feature_dir=str(run.dir / "features")))


def decode_config(config: Config, **overrides: Any) -> DecodeConfig:
    """The run's ``decode:`` section with ``overrides`` (those not None) applied."""
    return dataclasses.replace(config.decode, **{k: v for k, v in overrides.items() if v is not None})
