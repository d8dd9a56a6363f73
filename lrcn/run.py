"""Run folders: one per training run, holding everything needed to trace back or resume a result.

    runs/NAME/
      config.yaml            the resolved config, exactly what ran
      vocab.json
      checkpoints/last.pt    written at every epoch end (and every train.checkpoint_every steps)
      checkpoints/best.pt    the best epoch by train.val_metric on the val split
      tb/                    TensorBoard events
      metrics_<name>.json / .md, results_<split>.json, per_image_<name>.json   written by evaluate
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lrcn.config import Config, load_config, save_config
from lrcn.errors import CheckpointError, ConfigError
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
