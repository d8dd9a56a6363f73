"""COCO formats in and out: results files, reference annotations, and scoring files.

* results: ``[{"image_id": ..., "caption": ...}, ...]`` as pycocotools' ``COCO.loadRes`` reads;
* references: COCO captions annotations ``{"images": [{"id": ...}], "annotations": [{"image_id":
  ..., "caption": ...}]}``, or a Karpathy split file (``{"images": [{"sentences": [{"raw": ...}],
  "split": ...}]}``, ids from ``cocoid`` when present, else ``imgid``).

Malformed input raises :class:`~lrcn.errors.DataError` naming the file and the line / entry /
image id at fault: invalid JSON, a missing or ill-typed field, an image id given twice in a
results file, an annotation of an image the file does not list.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Hashable, Mapping

import numpy as np

from lrcn.errors import DataError
from lrcn.io import write_json
from lrcn.metrics.scoring import Scores, score

_INT = re.compile(r"-?\d+")


def _read_json(path: str | os.PathLike) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 text: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def _image_id(value: Any, where: str) -> Hashable:
    """An image id as read from JSON: an int or a string (an integral float becomes an int)."""
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise DataError(f"{where}: image_id must be an integer or a string, not {json.dumps(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"{where}: image_id must be an integer or a string, not {value!r}")
        return int(value)
    return value


def load_results(path: str | os.PathLike) -> dict[Hashable, str]:
    """``{image_id: caption}`` of a COCO results file; an image id given twice is an error."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: a results file is a JSON list of {{\"image_id\": ..., \"caption\": ...}} objects")
    captions: dict[Hashable, str] = {}
    first: dict[Hashable, int] = {}
    for k, item in enumerate(data):
        where = f"{path}: entry {k}"
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise DataError(f"{where}: each entry needs \"image_id\" and \"caption\"")
        image_id = _image_id(item["image_id"], where)
        if not isinstance(item["caption"], str):
            raise DataError(f"{where}: the caption of image {image_id!r} must be a string")
        if image_id in captions:
            raise DataError(f"{path}: image id {image_id!r} appears twice (entries {first[image_id]} and {k}); "
                            "a results file holds one caption per image")
        captions[image_id], first[image_id] = item["caption"], k
    return captions


def load_references(path: str | os.PathLike, split: str | None = None) -> dict[Hashable, list[str]]:
    """``{image_id: [captions]}`` of COCO caption annotations or a Karpathy split file (of one
    ``split`` if given; COCO files have no splits)."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: references need an \"images\" list (COCO captions annotations or a Karpathy "
                        "split file)")
    if "annotations" not in data:
        return _karpathy_references(path, data, split)
    if split is not None:
        raise DataError(f"{path}: COCO annotations have no splits; --split is for Karpathy split files")
    if not isinstance(data["annotations"], list):
        raise DataError(f"{path}: \"annotations\" must be a list")
    listed = set()
    for k, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image:
            raise DataError(f"{path}: images[{k}] needs an \"id\"")
        listed.add(_image_id(image["id"], f"{path}: images[{k}]"))
    refs: dict[Hashable, list[str]] = {}
    for k, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{k}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DataError(f"{where}: each annotation needs \"image_id\" and \"caption\"")
        image_id = _image_id(ann["image_id"], where)
        if image_id not in listed:
            raise DataError(f"{where}: image id {image_id!r} is not in the file's \"images\" list")
        if not isinstance(ann["caption"], str):
            raise DataError(f"{where}: the caption of image {image_id!r} must be a string")
        refs.setdefault(image_id, []).append(ann["caption"])
    if not refs:
        raise DataError(f"{path}: no annotations")
    return refs


def _karpathy_references(path, data: dict, split: str | None) -> dict[Hashable, list[str]]:
    refs: dict[Hashable, list[str]] = {}
    for k, image in enumerate(data["images"]):
        where = f"{path}: images[{k}]"
        if not isinstance(image, dict) or not isinstance(image.get("sentences"), list):
            raise DataError(f"{where}: needs a \"sentences\" list (or the file needs \"annotations\")")
        if split is not None and image.get("split") != split:
            continue
        key = "cocoid" if "cocoid" in image else "imgid" if "imgid" in image else None
        if key is None:
            raise DataError(f"{where}: needs an \"imgid\" or \"cocoid\"")
        image_id = _image_id(image[key], where)
        if image_id in refs:
            raise DataError(f"{where}: image id {image_id!r} appears twice")
        captions = []
        for s in image["sentences"]:
            raw = s.get("raw") if isinstance(s, dict) else None
            if raw is None and isinstance(s, dict) and isinstance(s.get("tokens"), list):
                raw = " ".join(map(str, s["tokens"]))
            if not isinstance(raw, str):
                raise DataError(f"{where}: each sentence needs a \"raw\" string")
            captions.append(raw)
        refs[image_id] = captions
    if not refs:
        raise DataError(f"{path}: no images" + (f" in split {split!r}" if split else ""))
    return refs


def json_image_id(image_id: Hashable) -> int | str:
    """An id as written to JSON: an int when it is int-like (NumPy ints, "42"), else a string."""
    if isinstance(image_id, (bool, np.bool_)):
        raise DataError(f"image id {image_id!r} is a boolean")
    if isinstance(image_id, (int, np.integer)):
        return int(image_id)
    if isinstance(image_id, str):
        return int(image_id) if _INT.fullmatch(image_id) else image_id
    if isinstance(image_id, (float, np.floating)) and float(image_id).is_integer():
        return int(image_id)
    raise DataError(f"image id {image_id!r} cannot be written to a results file (use ints or strings)")


def write_results(path: str | os.PathLike, captions: Mapping[Hashable, str]) -> None:
    """Write ``[{"image_id": ..., "caption": ...}]`` atomically; ``COCO.loadRes`` reads it."""
    items = [{"image_id": json_image_id(i), "caption": c} for i, c in captions.items()]
    seen: set = set()
    for item in items:
        if item["image_id"] in seen:
            raise DataError(f"two image ids become {item['image_id']!r} in the results file")
        seen.add(item["image_id"])
    write_json(path, items)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a NaN score (SPICE on an unparsable caption) is written as null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def score_files(results_path: str | os.PathLike, refs_path: str | os.PathLike, split: str | None = None,
                **kwargs) -> Scores:
    """:func:`~lrcn.metrics.score` of a results file against a references file."""
    return score(load_results(results_path), load_references(refs_path, split=split), **kwargs)
