"""One feature store for images and clips: a frozen encoder runs once over a dataset, resumably.

What a row holds is a :class:`FeatureSpec`: an image's pooled vector [D] or spatial grid
[D, h, w], or, for a clip (``modality="video"``), the same per frame, [T, D] or [T, D, h, w]; a
clip's ``num_frames`` sampled frames go through the same encoder, all B x T frames of a batch in
one forward (``ImageEncoder.encode_frames``); with ``crop_area``, a random crop of an image (a
training view, ``data.train_views``), drawn from the row's id so that every extraction gives it
alike. :func:`extract` fills a store; ``lrcn train``, ``lrcn extract``, ``lrcn evaluate``,
``lrcn activity`` and the demos all reach it through ``lrcn.data.loaders`` (``cached_features`` /
``cached_views`` / ``extract_splits``), and ``lrcn caption`` reads its inputs with the same
:meth:`FeatureSpec.loader` and :meth:`FeatureSpec.encode`.

Layout of a store folder::

    meta.json      format, encoder (and feature kind, frame sampling), feature shape, the sample ids in row order
    features.npy   float32 [N, *shape], memory-mapped (numpy .npy, readable without lrcn)
    done.npy       bool [N]: rows whose features are written and flushed
    failed.json    {id: reason} for inputs that could not be read (their rows stay zero)
    notes.json     {id: note} for clips that were patched (padded, frames replaced); see lrcn.data.video

Rows are flushed to disk before ``done.npy`` is atomically rewritten, so a killed extraction
leaves a store that resumes where it stopped and never marks an unwritten row as done. Under
torchrun each process extracts every WORLD-th missing row and keeps its own ``done.rankR.npy`` /
``failed.rankR.json`` / ``notes.rankR.json``; a store reads the union of all of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lrcn.data.media import DEFAULT_MAX_PIXELS, ImageFolderDataset, collate_skip_bad
from lrcn.data.video import VideoDataset, check_sampling, collate_videos, sampling_name
from lrcn.errors import ConfigError, DataError
from lrcn.io import atomic_path, write_json

FORMAT = "lrcn-features-1"
MODALITIES = ("image", "video")


def store_name(key: str, ids: Sequence[str]) -> str:
    """A folder name that changes whenever the encoder or its weights, the feature spec (``key``) or
    the set of samples does."""
    digest = hashlib.sha1("\n".join(ids).encode("utf-8")).hexdigest()[:10]
    return f"{key}-{len(ids)}-{digest}"


@dataclass(frozen=True)
class FeatureSpec:
    """What one row of a feature store holds, and how its input is read and encoded."""

    modality: str = "image"              # image | video: a clip, num_frames frames through the same encoder
    num_frames: int = 16                 # video: frames sampled per clip (lrcn.data.video.sample_indices)
    frame_sampling: str = "uniform"      # video: uniform | fps
    fps: float | None = None             # video: frames per second with frame_sampling=fps
    source_fps: float | None = None      # video: frame rate of frame folders
    max_pixels: int | None = DEFAULT_MAX_PIXELS   # larger images / frames are refused
    batch_size: int = 64                 # images (frames) per forward; clips per batch: batch_size // num_frames
    num_workers: int = 2                 # DataLoader workers decoding the inputs
    crop_area: float = 0.0               # > 0: each row is a random crop of at least this share of its image
                                         # (a training view: lrcn.data.loaders.cached_views), drawn from its id

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ConfigError(f"data.modality={self.modality!r}: choose one of {', '.join(MODALITIES)}")
        if self.crop_area and (self.video or not 0 < self.crop_area <= 1):
            raise ConfigError(f"random crops (data.train_views) need images and a share of the image in (0, 1]; "
                              f"got modality {self.modality!r} and view_min_area {self.crop_area!r}")
        if self.video:
            check_sampling(self.num_frames, self.frame_sampling, self.fps)

    @property
    def video(self) -> bool:
        return self.modality == "video"

    @property
    def unit(self) -> str:
        return "clip" if self.video else "img"

    def key(self, encoder) -> str:
        """The encoder (its key names its feature kind) and frame sampling: names a store and is
        checked when it is reopened."""
        frames = f"-{sampling_name(self.num_frames, self.frame_sampling, self.fps)}" if self.video else ""
        crops = f"-crop{self.crop_area:g}" if self.crop_area else ""
        return f"{encoder.key}{frames}{crops}"

    def loader(self, paths: Sequence[str | os.PathLike], encoder,
               ids: Sequence[str] | None = None) -> torch.utils.data.DataLoader:
        """Batches of the inputs at ``paths`` prepared by ``encoder.transform`` (with ``crop_area``: a
        random crop of each, drawn from its row's id in ``ids``); an unreadable input is an error of its
        batch (``batch.errors``), a patched clip a note (``batch.notes``), never a crash."""
        if self.video:
            dataset = VideoDataset(paths, self.num_frames, encoder.transform, mode=self.frame_sampling, fps=self.fps,
                                   source_fps=self.source_fps, max_pixels=self.max_pixels)
            batch_size, collate = max(1, self.batch_size // self.num_frames), collate_videos
        else:   # JPEGs decode at a reduced DCT scale when that still covers the encoder's resize (PIL's draft mode)
            min_side = round(encoder.image_size * 8 / 7)
            if self.crop_area:
                if ids is None:
                    raise ValueError("random crops are drawn from the rows' ids: pass ids")
                transform, seeds = encoder.random_crop_transform(self.crop_area), [zlib.crc32(i.encode()) for i in ids]
                min_side = round(min_side / math.sqrt(self.crop_area))      # the smallest crop keeps full detail
            else:
                transform, seeds = encoder.transform, None
            dataset = ImageFolderDataset(paths, transform, max_pixels=self.max_pixels, min_side=min_side, seeds=seeds)
            batch_size, collate = self.batch_size, collate_skip_bad
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=self.num_workers if paths else 0,
                                           collate_fn=collate, persistent_workers=False)

    def inputs(self, batch) -> Tensor:
        """A loader batch's tensor: images [B, 3, S, S] or clips [B, T, 3, S, S]."""
        return batch.clips if self.video else batch.images

    def encode(self, encoder, inputs: Tensor) -> Tensor:
        """Images [B, 3, S, S] -> the encoder's features, [B, D] or a grid [B, D, h, w]; clips
        [B, T, 3, S, S] -> [B, T, ...] in one forward over all B x T frames."""
        return encoder.encode_frames(inputs) if self.video else encoder(inputs)

    def shape(self, encoder, device: str | torch.device = "cpu") -> tuple[int, ...]:
        """The shape of one row: [D] or [D, h, w], with [T] in front for a clip."""
        if encoder.features == "pooled":
            frame = (encoder.out_dim,)
        else:       # a grid's side follows from the backbone's strides: one probe forward
            size = encoder.image_size
            with torch.inference_mode():
                frame = tuple(encoder(torch.zeros(1, 3, size, size, device=device)).shape[1:])
        return (self.num_frames, *frame) if self.video else frame


class FeatureStore:
    def __init__(self, directory: str | os.PathLike, ids: Sequence[str], shape: Sequence[int], encoder: str,
                 part: str = ""):
        self.dir = Path(directory)
        self.part = part            # "" or ".rankR": the progress files this process writes
        self.ids = list(ids)
        self.row = {i: n for n, i in enumerate(self.ids)}
        meta = {"format": FORMAT, "encoder": encoder, "shape": list(shape), "ids": self.ids}
        meta_path = self.dir / "meta.json"
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                old = None
            if old != meta:
                raise DataError(f"feature store {self.dir} was made for other samples or another encoder; "
                                f"delete the folder or set data.feature_dir elsewhere")
            self.features = np.load(self.dir / "features.npy", mmap_mode="r+")
            self.done = np.zeros(len(self.ids), dtype=bool)
            for path in self.dir.glob("done*.npy"):
                self.done |= np.load(path)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.features = np.lib.format.open_memmap(self.dir / "features.npy", mode="w+", dtype=np.float32,
                                                      shape=(len(self.ids), *shape))
            self.done = np.zeros(len(self.ids), dtype=bool)
            self._save_done()
            write_json(meta_path, meta, indent=None)
        self.failed = self._read_union("failed")
        self.notes = self._read_union("notes")

    def _read_union(self, what: str) -> dict[str, str]:
        """{id: text} of ``what*.json``: this store's, and each process's under torchrun."""
        out: dict[str, str] = {}
        for path in sorted(self.dir.glob(f"{what}*.json")):
            out.update(json.loads(path.read_text(encoding="utf-8")))
        return out

    def _save_done(self) -> None:
        with atomic_path(self.dir / f"done{self.part}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.done)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def missing(self) -> list[int]:
        return np.flatnonzero(~self.done).tolist()

    def write(self, rows: Sequence[int], values: np.ndarray, failed: dict[str, str] | None = None,
              notes: dict[str, str] | None = None) -> None:
        """Store ``values`` [n, *shape] at ``rows``; ``failed`` rows (by id) are marked done but listed;
        ``notes`` (by id) say what was patched in a row's input."""
        if len(rows):
            self.features[np.asarray(rows)] = values
            self.features.flush()
        if notes:
            self.notes.update(notes)
            write_json(self.dir / f"notes{self.part}.json", self.notes)
        if failed:
            self.failed.update(failed)
            write_json(self.dir / f"failed{self.part}.json", self.failed)
            for i in failed:
                self.done[self.row[i]] = True
        self.done[np.asarray(rows, dtype=np.int64)] = True
        self._save_done()

    def tensor(self, ids: Sequence[str] | None = None) -> torch.Tensor:
        """Features of ``ids`` (all rows when None) as a float tensor in memory."""
        if ids is None:
            return torch.from_numpy(np.array(self.features))
        return torch.from_numpy(np.array(self.features[[self.row[i] for i in ids]]))


def extract(encoder, paths: Sequence[str | os.PathLike], ids: Sequence[str], directory: str | os.PathLike,
            spec: FeatureSpec = FeatureSpec(), *, device: str | torch.device = "cpu", progress: bool = True,
            dist=None) -> FeatureStore:
    """Run the frozen ``encoder`` over the images or clips at ``paths`` (rows ``ids``, as ``spec``
    says) into the store at ``directory``, resuming one that exists.

    Inputs that cannot be read are reported in the store's ``failed.json`` and skipped; patched
    clips in its ``notes.json``. With ``dist`` (lrcn.train.distributed.Dist) each process
    extracts its share of the missing rows.
    """
    if len(paths) != len(ids):
        raise ValueError("paths and ids differ in length")
    encoder.eval().to(device)
    shape = spec.shape(encoder, device)
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if rank == 0:
        store = FeatureStore(directory, ids, shape, spec.key(encoder), part=f".rank{rank}" if world > 1 else "")
    if dist is not None:
        dist.barrier()
    if rank != 0:
        store = FeatureStore(directory, ids, shape, spec.key(encoder), part=f".rank{rank}")
    todo = store.missing()[rank::world]
    if not todo:
        return store
    what = "frame features" if spec.video else "features"
    with torch.inference_mode(), tqdm(total=len(todo), desc=f"{what} {encoder.name}", disable=not progress,
                                      unit=spec.unit) as bar:
        for batch in spec.loader([paths[i] for i in todo], encoder, [ids[i] for i in todo]):
            rows = [todo[j] for j in batch.indices]
            values = (spec.encode(encoder, spec.inputs(batch).to(device)).float().cpu().numpy() if rows
                      else np.zeros((0, *shape), dtype=np.float32))
            failed = {ids[todo[j]]: reason for j, reason in batch.errors.items()}
            notes = {ids[todo[j]]: note for j, note in batch.notes.items()}
            for name, reason in failed.items():
                tqdm.write(f"skipped {paths[store.row[name]]}: {reason}")
            for note in notes.values():
                tqdm.write(note)
            store.write(rows, values, failed, notes)
            bar.update(len(rows) + len(failed))
    return store
