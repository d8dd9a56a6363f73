"""The record every dataset reader produces, and the Karpathy split JSON they are prepared into."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from lrcn.errors import DataError
from lrcn.io import write_json
from lrcn.text import tokenize

SPLITS = ("train", "val", "test")
# keys write_karpathy sets itself; a sample's meta (e.g. an old "imgid") never overrides them
_STRUCTURAL_KEYS = ("filepath", "filename", "imgid", "split", "id", "sentids", "sentences")


@dataclass
class Sample:
    """One image (or video) with its reference captions."""

    id: str                 # stable id, unique within the dataset (COCO id, file stem, video id)
    path: Path              # absolute path of the image / video / frame folder
    split: str              # train | val | test | restval
    captions: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # reader-specific extras (e.g. cocoid, objects, label)


def safe_join(root: str | os.PathLike, relative: str | os.PathLike, source: str = "") -> Path:
    """``root / relative`` as an absolute path, refusing absolute paths and ``..`` that leave ``root``.

    The check is on the path as written (after collapsing ``.`` and ``..``), not on where symlinks
    point: an annotation file cannot name a file outside the dataset, while a dataset folder the
    user assembled from symlinks (``ROOT/train2014 -> /datasets/coco/train2014``) still works.
    """
    root_path = Path(os.path.abspath(root))
    if "\0" in str(relative):
        raise DataError(f"image path {str(relative)!r}{f' (named in {source})' if source else ''} holds a NUL "
                        f"character; refused")
    normal = os.path.normpath(relative)
    if os.path.isabs(normal) or normal == os.pardir or normal.startswith(os.pardir + os.sep):
        where = f" (named in {source})" if source else ""
        raise DataError(f"image path {str(relative)!r}{where} leaves the dataset root {root_path}; refused")
    return root_path / normal


def read_json(path: str | os.PathLike, what: str = "JSON file") -> object:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{what} {path} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text: {e}") from None


def read_karpathy(json_path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                  restval_to_train: bool = True) -> list[Sample]:
    """Read a Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr8k.json``, ...).

    Image root: ``image_root`` if given, else the file's own ``"image_root"`` key (written by
    ``lrcn data prepare``; relative to the JSON's folder), else the JSON's folder.
    COCO's ``restval`` split joins ``train`` when ``restval_to_train`` is true.
    """
    json_path = Path(json_path)
    data = read_json(json_path, "split file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"split file {json_path} has no 'images' list; expected a Karpathy split JSON")
    if image_root is None:
        if not isinstance(data.get("image_root", "."), str):
            raise DataError(f"split file {json_path}: 'image_root' must be a string (a folder)")
        image_root = json_path.parent / data.get("image_root", ".")
    samples = []
    for n, entry in enumerate(data["images"]):
        where = f"split file {json_path}: image entry #{n}"
        if not isinstance(entry, dict):
            raise DataError(f"{where} is a {type(entry).__name__}, not an object")
        try:
            filename, split, sentences = entry["filename"], entry["split"], entry["sentences"]
        except KeyError as e:
            raise DataError(f"{where} lacks key {e}") from None
        filepath = entry.get("filepath") or ""
        if not all(isinstance(v, str) for v in (filename, split, filepath)) or not isinstance(sentences, list):
            raise DataError(f"{where}: 'filename', 'split' and 'filepath' must be strings and 'sentences' a list")
        captions = [s.get("raw") if isinstance(s, dict) else s for s in sentences]
        if not all(isinstance(c, str) for c in captions):
            raise DataError(f"{where} ({filename}): every sentence needs a 'raw' string")
        if split == "restval" and restval_to_train:
            split = "train"
        relative = Path(filepath) / filename
        image_id = entry.get("id", entry.get("cocoid", Path(filename).stem))
        meta = {k: v for k, v in entry.items() if k not in ("id", "filename", "filepath", "split", "sentences", "sentids")}
        samples.append(Sample(str(image_id), safe_join(image_root, relative, str(json_path)), split, captions, meta))
    counts = Counter(s.id for s in samples)
    dup = next((i for i, c in counts.items() if c > 1), None)
    if dup is not None:
        raise DataError(f"split file {json_path}: image id {dup!r} appears more than once")
    return samples


def write_karpathy(json_path: str | os.PathLike, name: str, samples: Iterable[Sample],
                   image_root: str | os.PathLike) -> None:
    """Write samples as a Karpathy split JSON whose paths are relative to ``image_root``."""
    json_path = Path(json_path)
    root = os.path.abspath(image_root)
    images, sentid = [], 0
    for imgid, s in enumerate(samples):
        rel = Path(os.path.relpath(os.path.abspath(s.path), root))
        if rel.parts[:1] == (os.pardir,):
            raise DataError(f"image {s.path} of sample {s.id!r} is not under the image root {root}")
        sentences = []
        for c in s.captions:
            sentences.append({"raw": c, "tokens": tokenize(c), "imgid": imgid, "sentid": sentid})
            sentid += 1
        entry = {k: v for k, v in s.meta.items() if k not in _STRUCTURAL_KEYS}
        entry.update({"filepath": str(rel.parent) if str(rel.parent) != "." else "", "filename": rel.name,
                      "imgid": imgid, "split": s.split, "id": s.id,
                      "sentids": [x["sentid"] for x in sentences], "sentences": sentences})
        images.append(entry)
    write_json(json_path, {"dataset": name, "image_root": os.path.relpath(root, os.path.abspath(json_path.parent)),
                           "images": images}, indent=None)
