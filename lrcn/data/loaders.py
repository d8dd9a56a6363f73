"""From a config to tensors: samples of a split, their cached features, caption batches.

Whether a run reads images or clips is ``data.modality`` (the feature store's ``FeatureSpec``);
nothing here depends on the models."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lrcn.config import Config
from lrcn.data.features import FeatureSpec, FeatureStore, extract, store_name
from lrcn.data.records import Sample, read_karpathy
from lrcn.errors import ConfigError, DataError
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


def feature_spec(config: Config) -> FeatureSpec:
    """What the feature store of ``config`` holds: its ``data.modality`` (images or clips, with the
    frame sampling) and how inputs are read (``data.*``, ``encoder.batch_size``); the feature kind
    (pooled or grid, ``encoder.features``) is the encoder's."""
    d = config.data
    return FeatureSpec(modality=d.modality, num_frames=d.num_frames,
                       frame_sampling=d.frame_sampling, fps=d.fps, source_fps=d.source_fps, max_pixels=d.max_pixels,
                       batch_size=config.encoder.batch_size, num_workers=d.num_workers)


def feature_store(config: Config, samples: list[Sample], encoder, spec: FeatureSpec | None = None,
                  device="cpu", progress: bool = True, dist=None) -> FeatureStore:
    """The store of the ``samples``' features (``feature_spec(config)`` unless ``spec``) under the
    config's feature folder, extracting what is missing; under torchrun the processes share the work."""
    spec = spec or feature_spec(config)
    ids = [s.id for s in samples]
    directory = feature_dir(config) / store_name(spec.key(encoder), ids)
    return extract(encoder, [s.path for s in samples], ids, directory, spec, device=device, progress=progress,
                   dist=dist)


def view_store(config: Config, samples: list[Sample], encoder, device="cpu", progress: bool = True,
               dist=None) -> FeatureStore:
    """The store of the ``samples``' training views: ``data.train_views`` random crops of each image
    (at least ``data.view_min_area`` of it), rows ``<id>#view1`` ... ``<id>#viewK``, each crop drawn
    from its row's id (the same crops in every run), extracted once like the images' own features."""
    views = config.data.train_views
    spec = replace(feature_spec(config), crop_area=config.data.view_min_area)
    ids = [f"{s.id}#view{k}" for s in samples for k in range(1, views + 1)]
    directory = feature_dir(config) / store_name(spec.key(encoder), ids)
    return extract(encoder, [s.path for s in samples for _ in range(views)], ids, directory, spec, device=device,
                   progress=progress, dist=dist)


def cached_views(config: Config, samples: list[Sample], features: torch.Tensor, encoder, device="cpu",
                 progress: bool = True) -> torch.Tensor:
    """The training views of the readable ``samples`` whose own features are ``features`` [N, ...]:
    [N, 1 + K, ...], the whole image first, then its K = ``data.train_views`` random crops
    (:func:`view_store`; a crop that could not be read is the whole image again)."""
    views = config.data.train_views
    store = view_store(config, samples, encoder, device, progress)
    crops = store.tensor().view(len(samples), views, *features.shape[1:])
    if store.failed:
        bad = torch.tensor([i in store.failed for i in store.ids]).view(len(samples), views)
        crops[bad] = features[:, None].expand_as(crops)[bad]
    return torch.cat([features[:, None], crops], dim=1)


def extract_splits(config: Config, encoder, splits: tuple[str, ...] = ("train", "val", "test"),
                   device="cpu", progress: bool = True, dist=None) -> dict[str, Path]:
    """``lrcn extract``: fill the feature stores that training and evaluation read, split by split
    (resuming any that exist), and the training views' (``data.train_views``). Returns split (and
    ``train views``) -> store folder."""
    samples = load_samples(config)
    spec = feature_spec(config)
    stores = {}
    for name in splits:
        chosen = [s for s in samples if s.split == name]
        if not chosen:
            continue
        store = feature_store(config, chosen, encoder, spec, device, progress, dist)
        if store.failed:
            print(f"{name}: {len(store.failed)} of {len(chosen)} {spec.modality}s could not be read; "
                  f"listed in {store.dir / 'failed*.json'}")
        stores[name] = store.dir
        if name == "train" and config.data.train_views:
            readable = [s for s in chosen if s.id not in store.failed]
            stores["train views"] = view_store(config, readable, encoder, device, progress, dist).dir
    if not stores:
        raise DataError(f"the dataset has none of the splits {splits}")
    return stores


def cached_features(config: Config, samples: list[Sample], encoder, device="cpu",
                    progress: bool = True) -> tuple[torch.Tensor, list[Sample]]:
    """Features of the readable ``samples`` from the feature store, extracted once: [N, D] per image,
    [N, T, D] per clip (``encoder.features: grid``: [N, D, h, w] / [N, T, D, h, w]), and the samples kept."""
    spec = feature_spec(config)
    store = feature_store(config, samples, encoder, spec, device, progress)
    kept = [s for s in samples if s.id not in store.failed]
    if not kept:
        raise DataError(f"none of the {len(samples)} {spec.modality}s could be read; "
                        f"see {store.dir / 'failed*.json'}")
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
