"""From a config to tensors: samples of a split, their cached features, caption batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lrcn.config import Config
from lrcn.data.features import extract, store_name
from lrcn.data.records import Sample, read_karpathy
from lrcn.data.video import cached_video_features
from lrcn.errors import ConfigError, DataError
from lrcn.models.temporal import VIDEO_DECODERS
from lrcn.text import Vocabulary


def load_samples(config: Config) -> list[Sample]:
    if not config.data.split_json:
        raise ConfigError("data.split_json is not set: point it at a split JSON written by "
                          "`lrcn data prepare` or `lrcn data shapes`")
    path = Path(config.data.split_json)
    if not path.is_file():
        raise DataError(f"data.split_json {path} does not exist; prepare the dataset first (see data/README.md)")
    return read_karpathy(path, config.data.image_root, config.data.restval_to_train)


def split(samples: list[Sample], name: str) -> list[Sample]:
    chosen = [s for s in samples if s.split == name]
    if not chosen:
        found = sorted({s.split for s in samples})
        raise DataError(f"the dataset has no {name!r} split (it has {found})")
    return chosen


def feature_dir(config: Config) -> Path:
    return Path(config.data.feature_dir or Path(config.data.split_json).parent / "features")


def extract_splits(config: Config, encoder, splits: tuple[str, ...] = ("train", "val", "test"), grid: bool = False,
                   device="cpu", progress: bool = True, dist=None) -> dict[str, Path]:
    """``lrcn extract``: fill the feature stores that training and evaluation read, split by split
    (resuming any that exist); under torchrun the processes share the work. Returns split -> store."""
    samples = load_samples(config)
    stores = {}
    for name in splits:
        chosen = [s for s in samples if s.split == name]
        if not chosen:
            continue
        ids = [s.id for s in chosen]
        directory = feature_dir(config) / store_name(encoder.key, ids, grid=grid)
        store = extract(encoder, [s.path for s in chosen], ids, directory, grid=grid,
                        batch_size=config.encoder.batch_size, num_workers=config.data.num_workers, device=device,
                        max_pixels=config.data.max_pixels, progress=progress, dist=dist)
        if store.failed:
            print(f"{name}: {len(store.failed)} of {len(ids)} images could not be read; "
                  f"listed in {directory / 'failed*.json'}")
        stores[name] = directory
    if not stores:
        raise DataError(f"the dataset has none of the splits {splits}")
    return stores


def cached_features(config: Config, samples: list[Sample], encoder, device="cpu",
                    progress: bool = True) -> tuple[torch.Tensor, list[Sample]]:
    """Features [N, D] (videos: [N, T, D]) of the readable ``samples``, extracted once into the feature store."""
    if config.decoder.kind in VIDEO_DECODERS:
        d = config.data
        return cached_video_features(samples, encoder, feature_dir(config), d.num_frames, mode=d.frame_sampling,
                                     fps=d.fps, source_fps=d.source_fps,
                                     batch_size=max(1, config.encoder.batch_size // d.num_frames),
                                     num_workers=d.num_workers, device=device, max_pixels=d.max_pixels,
                                     progress=progress)
    ids = [s.id for s in samples]
    directory = feature_dir(config) / store_name(encoder.key, ids)
    store = extract(encoder, [s.path for s in samples], ids, directory, batch_size=config.encoder.batch_size,
                    num_workers=config.data.num_workers, device=device, max_pixels=config.data.max_pixels,
                    progress=progress)
    kept = [s for s in samples if s.id not in store.failed]
    if not kept:
        raise DataError(f"none of the {len(samples)} images could be read; see {directory / 'failed.json'}")
    return store.tensor([s.id for s in kept]), kept


@dataclass
class CaptionTable:
    """Every caption of every sample as padded ids: ``words`` [N, C, L+2] (<start> ... <end> <pad>*)."""

    words: torch.Tensor
    counts: torch.Tensor  # [N] number of real captions per sample

    @classmethod
    def build(cls, samples: list[Sample], vocab: Vocabulary, max_len: int) -> "CaptionTable":
        per_sample = [[vocab.encode(c, max_len) for c in s.captions if c.strip()] for s in samples]
        for s, caps in zip(samples, per_sample):
            if not caps:
                raise DataError(f"sample {s.id} ({s.path}) has no non-empty caption")
        C = max(len(c) for c in per_sample)
        words = torch.zeros(len(samples), C, max_len + 2, dtype=torch.long)
        for n, caps in enumerate(per_sample):
            for k, ids in enumerate(caps):
                words[n, k, : len(ids) + 2] = torch.tensor([vocab.start, *ids, vocab.end])
        return cls(words, torch.tensor([len(c) for c in per_sample]))

    def sample(self, rows: torch.Tensor, per_sample: int, generator: torch.Generator) -> torch.Tensor:
        """``per_sample`` captions for each row (all of them once when there are exactly that many,
        a random subset when more, repeated when fewer) -> [len(rows) * per_sample, L+2]."""
        counts = self.counts[rows]                                              # [B]
        C = self.words.shape[1]
        keys = torch.rand(len(rows), C, generator=generator)
        keys = keys.masked_fill(torch.arange(C)[None] >= counts[:, None], float("inf"))
        order = keys.argsort(dim=1)                              # real captions first, in random order
        picks = order.gather(1, torch.arange(per_sample)[None] % counts[:, None])   # [B, S]
        words = self.words[rows[:, None], picks]                                # [B, S, L+2]
        words = words.flatten(0, 1)
        return words[:, : int((words != 0).sum(1).max())]                       # trim padding columns
