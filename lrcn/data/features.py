"""A memory-mapped feature store: a frozen encoder runs once over a dataset, resumably.

Layout of a store folder::

    meta.json      format, encoder, feature shape, the sample ids in row order
    features.npy   float32 [N, *shape], memory-mapped (numpy .npy, readable without lrcn)
    done.npy       bool [N]: rows whose features are written and flushed
    failed.json    {id: reason} for images that could not be read (their rows stay zero)

Rows are flushed to disk before ``done.npy`` is atomically rewritten, so a killed extraction
leaves a store that resumes where it stopped and never marks an unwritten row as done. Under
torchrun each process extracts every WORLD-th missing row and keeps its own ``done.rankR.npy`` /
``failed.rankR.json``; a store reads the union of all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from lrcn.errors import DataError
from lrcn.io import atomic_path, write_json

FORMAT = "lrcn-features-1"


def store_name(encoder_name: str, ids: Sequence[str], grid: bool = False) -> str:
    """A folder name that changes whenever the encoder or the set of samples does."""
    digest = hashlib.sha1("\n".join(ids).encode("utf-8")).hexdigest()[:10]
    return f"{encoder_name}{'-grid' if grid else ''}-{len(ids)}-{digest}"


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
        self.failed: dict[str, str] = {}
        for path in sorted(self.dir.glob("failed*.json")):
            self.failed.update(json.loads(path.read_text(encoding="utf-8")))

    def _save_done(self) -> None:
        with atomic_path(self.dir / f"done{self.part}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.done)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def missing(self) -> list[int]:
        return np.flatnonzero(~self.done).tolist()

    def write(self, rows: Sequence[int], values: np.ndarray, failed: dict[str, str] | None = None) -> None:
        """Store ``values`` [n, *shape] at ``rows``; ``failed`` rows (by id) are marked done but listed."""
        if len(rows):
            self.features[np.asarray(rows)] = values
            self.features.flush()
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


def extract(encoder: torch.nn.Module, paths: Sequence[Path], ids: Sequence[str], directory: str | os.PathLike,
            *, grid: bool = False, batch_size: int = 64, num_workers: int = 2, device: str | torch.device = "cpu",
            max_pixels: int | None = None, progress: bool = True,
            forward: Callable[[torch.Tensor], torch.Tensor] | None = None, dist=None) -> FeatureStore:
    """Run ``encoder`` over the images at ``paths`` into a store (resuming one that exists).

    Images that cannot be read are reported in the store's ``failed.json`` and skipped. With
    ``dist`` (lrcn.train.distributed.Dist) each process extracts its share of the missing rows.
    """
    from lrcn.data.media import ImageFolderDataset, collate_skip_bad

    if len(paths) != len(ids):
        raise ValueError("paths and ids differ in length")
    forward = forward or (encoder.forward_grid if grid else encoder)
    encoder.eval().to(device)
    shape = _output_shape(encoder, forward, device)
    name = encoder.key + ("-grid" if grid else "")
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if rank == 0:
        store = FeatureStore(directory, ids, shape, name, part=f".rank{rank}" if world > 1 else "")
    if dist is not None:
        dist.barrier()
    if rank != 0:
        store = FeatureStore(directory, ids, shape, name, part=f".rank{rank}")
    todo = store.missing()[rank::world]
    if not todo:
        return store
    # JPEGs decode at a reduced DCT scale when that still covers the encoder's resize (PIL's draft mode)
    dataset = ImageFolderDataset([paths[i] for i in todo], encoder.transform, max_pixels=max_pixels,
                                 min_side=round(encoder.image_size * 8 / 7))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_skip_bad, persistent_workers=False)
    with torch.inference_mode(), tqdm(total=len(todo), desc=f"features {encoder.name}", disable=not progress,
                                      unit="img") as bar:
        for batch in loader:
            rows = [todo[j] for j in batch.indices]
            values = forward(batch.images.to(device)).float().cpu().numpy() if rows else np.zeros((0, *shape))
            failed = {ids[todo[j]]: reason for j, reason in batch.errors.items()}
            for name, reason in failed.items():
                tqdm.write(f"skipped {paths[store.row[name]]}: {reason}")
            store.write(rows, values, failed)
            bar.update(len(rows) + len(failed))
    return store


def _output_shape(encoder, forward, device) -> tuple[int, ...]:
    size = encoder.image_size
    with torch.inference_mode():
        return tuple(forward(torch.zeros(1, 3, size, size, device=device)).shape[1:])
