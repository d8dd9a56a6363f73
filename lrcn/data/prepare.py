"""``lrcn data prepare KIND``: read a downloaded dataset with its reader (image formats in
``lrcn.data.formats``, video ones in ``lrcn.data.video_datasets``) and write the Karpathy split
JSON ``lrcn train`` reads."""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable

from lrcn.data.formats import (_FLICKR, LAYOUTS, Prepared, _first_few, _prepare_coco, _prepare_flickr,
                               _prepare_karpathy)
from lrcn.data.records import Sample, write_karpathy
from lrcn.data.video_datasets import VIDEO_READERS
from lrcn.errors import DataError

log = logging.getLogger(__name__)

READERS: dict[str, Callable[[Path, Path | None, bool], Prepared]] = {
    "coco": _prepare_coco,
    "flickr8k": partial(_prepare_flickr, _FLICKR["flickr8k"]),
    "flickr30k": partial(_prepare_flickr, _FLICKR["flickr30k"]),
    "karpathy": _prepare_karpathy,
    **VIDEO_READERS,
}


# ----------------------------------------------------------------------------- prepare

def _present(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):          # a video's frame folder
        return any(True for _ in path.iterdir())
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


def _drop_missing(prepared: Prepared) -> list[Sample]:
    """The samples whose image file exists and is not empty; the others are reported."""
    kept, missing = [], []
    for s in prepared.samples:
        (kept if _present(s.path) else missing).append(s)
    sources = ", ".join(str(p) for p in prepared.sources)
    if missing and not kept:
        raise DataError(f"none of the {len(missing)} images named by {sources} exist under {prepared.image_root} "
                        f"(first: {missing[0].path}); download the images as data/README.md describes")
    if missing:
        names = [os.path.relpath(s.path, prepared.image_root) for s in missing]
        log.warning("%d of %d images named by %s are missing or empty under %s and were skipped: %s",
                    len(missing), len(prepared.samples), sources, prepared.image_root, _first_few(names))
    return kept


def prepare(kind: str, root: str | os.PathLike, out: str | os.PathLike, *,
            karpathy_json: str | os.PathLike | None = None, restval_to_train: bool = True,
            check_images: bool = True) -> Path:
    """Read the dataset ``kind`` found under ``root`` and write ``out/dataset_{name}.json``.

    The output is a Karpathy split JSON with an ``image_root`` key, read back by
    ``read_karpathy``. A Karpathy JSON (``karpathy_json``, or ``dataset_{kind}.json`` found
    under ``root``) takes precedence over the official annotation files. With ``check_images``,
    images that are missing or empty are skipped with a warning (an error if all are).
    Returns the path written.
    """
    if kind not in READERS:
        raise DataError(f"unknown dataset kind {kind!r}; choose one of {', '.join(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder. lrcn data prepare {kind} expects {LAYOUTS[kind]}")
    if karpathy_json is not None:
        karpathy_json = Path(karpathy_json)
        if not karpathy_json.is_file():
            raise DataError(f"Karpathy split JSON {karpathy_json} does not exist")
    prepared = READERS[kind](root, karpathy_json, restval_to_train)
    samples = _drop_missing(prepared) if check_images else prepared.samples
    if not samples:
        raise DataError(f"no captioned images found in {', '.join(map(str, prepared.sources))}")
    out_json = Path(out) / f"dataset_{prepared.name}.json"
    if out_json.exists() and any(os.path.samefile(out_json, src) for src in prepared.sources):
        raise DataError(f"{out_json} is the input annotation file; choose another --out folder")
    write_karpathy(out_json, prepared.name, samples, prepared.image_root)
    counts = Counter(s.split for s in samples)
    log.info("wrote %s: %s images (%s), %d captions", out_json, len(samples),
             ", ".join(f"{split} {n}" for split, n in sorted(counts.items())),
             sum(len(s.captions) for s in samples))
    return out_json
