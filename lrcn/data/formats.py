"""Readers for the official image caption dataset formats, used by ``lrcn.data.prepare`` to turn a
download into the Karpathy split JSON ``lrcn train`` reads (``lrcn data prepare KIND --root DIR --out DIR``).

Formats: Karpathy split JSON (``dataset_{coco,flickr8k,flickr30k}.json``), COCO caption
annotations (``captions_train2014.json``, read with pycocotools) and the Flickr token files
(``Flickr8k.token.txt``, Flickr30k's ``results_20130124.token`` or Kaggle ``results.csv``) with
their split lists. Where each kind expects its files under ``--root`` is in ``LAYOUTS`` and
data/README.md.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from pathlib import Path
from typing import Callable, NamedTuple

from lrcn.data.records import Sample, read_json, read_karpathy, safe_join
from lrcn.errors import DataError

log = logging.getLogger(__name__)

# split names of the official split lists -> ours (Flickr8k calls its validation split "dev")
SPLIT_ALIASES = {"train": "train", "dev": "val", "val": "val", "test": "test", "restval": "restval"}

LAYOUTS = {
    "coco": (
        "ROOT/annotations/captions_train2014.json, ROOT/annotations/captions_val2014.json, "
        "ROOT/train2014/, ROOT/val2014/ (2017 names also accepted) and, recommended, Karpathy's "
        "ROOT/dataset_coco.json, whose train/restval/val/test splits then take precedence"),
    "flickr8k": (
        "ROOT/Flickr8k.token.txt, ROOT/Flickr_8k.{train,dev,test}Images.txt (also accepted in "
        "ROOT/Flickr8k_text/) and the images in ROOT/Flicker8k_Dataset/ (the official spelling) "
        "or ROOT/Flickr8k_Dataset/; or Karpathy's ROOT/dataset_flickr8k.json with the images"),
    "flickr30k": (
        "Karpathy's ROOT/dataset_flickr30k.json and the images in ROOT/flickr30k-images/ "
        "(or Kaggle's ROOT/flickr30k_images/flickr30k_images/); without the Karpathy file, "
        "ROOT/results_20130124.token (or results.csv) plus split lists ROOT/{train,val,test}.txt"),
    "karpathy": (
        "any Karpathy split JSON given with --karpathy-json (or the single ROOT/dataset_*.json), "
        "ROOT being the folder its filepath/filename entries are relative to"),
    "msvd": (
        "ROOT/YouTubeClips/*.avi, ROOT/youtube_mapping.txt (clip name -> vidN, "
        "which fixes the standard 1200/100/670 split) and the captions ROOT/MSR Video Description Corpus.csv "
        "or ROOT/AllVideoDescriptions.txt"),
    "msrvtt": (
        "ROOT/train_val_videodatainfo.json and ROOT/test_videodatainfo.json (also accepted in ROOT/annotation/) "
        "and the videos ROOT/TrainValVideo/video*.mp4, ROOT/TestVideo/video*.mp4 (or ROOT/videos/all/)"),
}

_KARPATHY_DIRS = (".", "caption_datasets", "annotations")


class Prepared(NamedTuple):
    """What a prepare reader found under a dataset root."""

    name: str               # dataset name, also the output file name dataset_{name}.json
    samples: list[Sample]
    image_root: Path        # every sample path lies under it
    sources: list[Path]     # the annotation files read


# ----------------------------------------------------------------------------- Flickr token files

def _parse_tab(line: str) -> tuple[str, str] | None:
    """``1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ...``"""
    key, tab, caption = line.partition("\t")
    name, hash_, number = key.strip().rpartition("#")
    if not tab or not hash_ or not name or not number.isdigit():
        return None
    return name, caption


def _parse_pipe(line: str) -> tuple[str, str] | None:
    """Kaggle's Flickr30k ``results.csv``: ``1000092795.jpg| 0| Two young guys ...``.

    One official line lacks its second ``|`` (``2199200615.jpg| 4 A dog runs ...``); it is read.
    """
    name, bar, rest = line.partition("|")
    number, caption = rest.strip(), ""
    if "|" in number:
        number, _, caption = number.partition("|")
    else:
        number, _, caption = number.partition(" ")
    if not bar or not name.strip() or not number.strip().isdigit():
        return None
    return name.strip(), caption


def _parse_csv(line: str) -> tuple[str, str] | None:
    """Kaggle's ``captions.txt``: ``image,caption`` with CSV quoting."""
    fields = next(csv.reader([line]), [])
    if len(fields) < 2 or not fields[0].strip():
        return None
    return fields[0].strip(), ",".join(fields[1:])


# format name -> (line parser, expected line shape for error messages)
_TOKEN_FORMATS: dict[str, tuple[Callable[[str], tuple[str, str] | None], str]] = {
    "token": (_parse_tab, "IMAGE.jpg#N<TAB>caption"),
    "pipe": (_parse_pipe, "IMAGE.jpg| N| caption"),
    "csv": (_parse_csv, "IMAGE.jpg,caption"),
}
# first line of a file -> (format, whether that line is a header to skip)
_HEADERS = {"image_name|": "pipe", "image,caption": "csv"}


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file with their 1-based numbers."""
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            return [(n, line.rstrip("\r\n")) for n, line in enumerate(f, 1) if line.strip()]
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path} is not UTF-8 text: {e}") from None


def read_token_file(token_file: str | os.PathLike, image_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Captions per image file name from a Flickr token file (tab, ``|`` or CSV form, detected).

    Raises :class:`DataError` with the file and line number for a malformed line and for an
    image name that would leave ``image_dir``.
    """
    token_file = Path(token_file)
    lines = _read_lines(token_file, "caption file")
    if not lines:
        raise DataError(f"caption file {token_file} is empty")
    first = lines[0][1].strip().lower().replace(" ", "")
    kind = next((k for prefix, k in _HEADERS.items() if first.startswith(prefix)), "token")
    parse, shape = _TOKEN_FORMATS[kind]
    if kind != "token":
        lines = lines[1:]
    captions: dict[str, list[str]] = {}
    checked: set[str] = set()
    for lineno, line in lines:
        parsed = parse(line)
        if parsed is None:
            raise DataError(f"{token_file}:{lineno}: malformed line {line[:80]!r}; expected {shape}")
        name, caption = parsed
        if name not in checked:
            safe_join(image_dir, name, f"{token_file}:{lineno}")
            checked.add(name)
        caption = caption.strip()
        if not caption:
            log.warning("%s:%d: empty caption for %s skipped", token_file, lineno, name)
            continue
        captions.setdefault(name, []).append(caption)
    return captions


def read_flickr_tokens(token_file: str | os.PathLike, split_files: dict[str, str | os.PathLike],
                       image_dir: str | os.PathLike) -> list[Sample]:
    """Samples of the images listed in ``split_files`` (``{"train": path, "dev": path, ...}``).

    Split lists hold one image file name per line (``x.jpg``, or ``x`` as in Flickr30k
    Entities); ``dev`` becomes ``val``. Sample ids are file stems. Images listed but without
    captions are skipped with a warning; an image listed in two splits is an error.
    """
    token_file, image_dir = Path(token_file), Path(image_dir)
    captions = read_token_file(token_file, image_dir)
    by_stem = {Path(name).stem: name for name in captions}
    samples: list[Sample] = []
    listed: dict[str, tuple[str, str]] = {}   # image name -> (split, "file:line")
    uncaptioned: list[str] = []
    for split_name, split_path in split_files.items():
        split = SPLIT_ALIASES.get(split_name)
        if split is None:
            raise DataError(f"unknown split name {split_name!r} for {split_path}; use one of {sorted(SPLIT_ALIASES)}")
        split_path = Path(split_path)
        for lineno, line in _read_lines(split_path, "split list"):
            where = f"{split_path}:{lineno}"
            name = line.strip()
            safe_join(image_dir, name, where)
            key = name if name in captions else by_stem.get(name)
            if key is None:
                uncaptioned.append(name)
                continue
            if key in listed:
                if listed[key][0] != split:
                    raise DataError(f"{where}: image {name} is also in split {listed[key][0]!r} "
                                    f"({listed[key][1]}); an image belongs to one split only")
                continue  # listed twice in the same split
            listed[key] = (split, where)
            samples.append(Sample(Path(key).stem, safe_join(image_dir, key, where), split, captions[key]))
    if uncaptioned:
        log.warning("%d images in the split lists have no caption in %s and were skipped: %s",
                    len(uncaptioned), token_file, _first_few(uncaptioned))
    unlisted = len(captions) - len(listed)
    if unlisted:
        log.info("%d captioned images of %s are in no split list and were left out", unlisted, token_file)
    return samples


# ----------------------------------------------------------------------------- COCO annotations

def _check_coco_json(data: object, path: Path) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError(f"COCO annotation file {path} needs 'images' and 'annotations' lists; "
                        f"expected e.g. annotations/captions_train2014.json")
    for n, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            raise DataError(f"COCO annotation file {path}: images[{n}] needs an integer 'id' and a 'file_name'")
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int) \
                or not isinstance(ann.get("caption"), str) or not isinstance(ann.get("id"), (int, str)):
            raise DataError(f"COCO annotation file {path}: annotations[{n}] needs an 'id' (integer or string), "
                            f"an integer 'image_id' and a 'caption' string")


def read_coco_captions(annotation_json: str | os.PathLike, image_root: str | os.PathLike,
                       split: str) -> list[Sample]:
    """Samples of a COCO caption annotation file; ids are the COCO image ids as strings.

    Image paths are ``image_root / file_name``. Images without captions are skipped with a warning.
    """
    from pycocotools.coco import COCO   # imported only when COCO annotations are read

    annotation_json = Path(annotation_json)
    data = read_json(annotation_json, "COCO annotation file")
    _check_coco_json(data, annotation_json)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    orphans = sum(1 for ann in data["annotations"] if ann["image_id"] not in coco.imgs)
    if orphans:
        log.warning("%s: %d captions refer to image ids not in its 'images' list; ignored", annotation_json, orphans)
    samples, uncaptioned = [], []
    for n, img in enumerate(data["images"]):
        captions = [ann["caption"].strip() for ann in coco.imgToAnns.get(img["id"], [])]
        captions = [c for c in captions if c]
        path = safe_join(image_root, img["file_name"], f"{annotation_json} images[{n}]")
        if not captions:
            uncaptioned.append(img["file_name"])
            continue
        samples.append(Sample(str(img["id"]), path, split, captions, {"cocoid": img["id"]}))
    if uncaptioned:
        log.warning("%s: %d images have no caption and were skipped: %s",
                    annotation_json, len(uncaptioned), _first_few(uncaptioned))
    return samples


# ----------------------------------------------------------------------------- prepare readers

def _first_few(names: list[str], k: int = 5) -> str:
    return ", ".join(str(n) for n in names[:k]) + (", ..." if len(names) > k else "")


def _find(root: Path, candidates: tuple[str, ...], want_dir: bool = False) -> Path | None:
    """The first of ``root / candidate`` that exists (as a folder when ``want_dir``)."""
    for c in candidates:
        p = root / c
        if (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def _karpathy_candidates(name: str) -> tuple[str, ...]:
    return tuple(os.path.join(d, f"dataset_{name}.json") for d in _KARPATHY_DIRS)


def _not_found(kind: str, root: Path, what: str) -> DataError:
    return DataError(f"could not find {what} under {root}. lrcn data prepare {kind} expects {LAYOUTS[kind]}; "
                     f"see data/README.md for the downloads")


class _FlickrLayout(NamedTuple):
    name: str
    token_files: tuple[str, ...]
    image_dirs: tuple[str, ...]
    split_files: dict[str, tuple[str, ...]]   # split -> candidate file names
    splits_required: bool                     # True: no official split, Karpathy's is needed


_FLICKR = {
    "flickr8k": _FlickrLayout(
        "flickr8k",
        ("Flickr8k.token.txt", "Flickr8k_text/Flickr8k.token.txt", "captions.txt"),
        ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images"),
        {split: (f"Flickr_8k.{official}Images.txt", f"Flickr8k_text/Flickr_8k.{official}Images.txt")
         for split, official in (("train", "train"), ("dev", "dev"), ("test", "test"))},
        False),
    "flickr30k": _FlickrLayout(
        "flickr30k",
        ("results_20130124.token", "flickr30k/results_20130124.token", "results.csv",
         "flickr30k_images/results.csv", "captions.txt"),
        ("flickr30k-images", "flickr30k_images/flickr30k_images", "flickr30k_images", "Images"),
        {split: (f"{split}.txt",) for split in ("train", "val", "test")},
        True),
}


def _prepare_flickr(layout: _FlickrLayout, root: Path, karpathy_json: Path | None,
                    restval_to_train: bool) -> Prepared:
    image_dir = _find(root, layout.image_dirs, want_dir=True)
    karpathy = karpathy_json or _find(root, _karpathy_candidates(layout.name))
    if karpathy is not None:
        if image_dir is None:
            raise _not_found(layout.name, root, f"the image folder ({' or '.join(layout.image_dirs)})")
        return Prepared(layout.name, read_karpathy(karpathy, image_dir, restval_to_train), image_dir, [karpathy])
    token = _find(root, layout.token_files)
    if token is None:
        raise _not_found(layout.name, root, f"Karpathy's dataset_{layout.name}.json or a caption file "
                                            f"({' or '.join(layout.token_files)})")
    if image_dir is None:
        raise _not_found(layout.name, root, f"the image folder ({' or '.join(layout.image_dirs)})")
    split_files = {}
    for split, candidates in layout.split_files.items():
        found = _find(root, candidates)
        if found is None:
            log.warning("%s: no %s split list (%s) under %s; the prepared dataset has no %s split",
                        layout.name, split, candidates[0], root, SPLIT_ALIASES[split])
        else:
            split_files[split] = found
    if not split_files:
        what = (f"Karpathy's dataset_{layout.name}.json (this dataset has no official split)"
                if layout.splits_required else "the split lists")
        raise _not_found(layout.name, root, what)
    samples = read_flickr_tokens(token, split_files, image_dir)
    return Prepared(layout.name, samples, image_dir, [token, *split_files.values()])


def _prepare_coco(root: Path, karpathy_json: Path | None, restval_to_train: bool) -> Prepared:
    karpathy = karpathy_json or _find(root, _karpathy_candidates("coco"))
    if karpathy is not None:
        return Prepared("coco", read_karpathy(karpathy, root, restval_to_train), root, [karpathy])
    for year in ("2014", "2017"):
        files = {split: root / "annotations" / f"captions_{split}{year}.json" for split in ("train", "val")}
        if not any(f.is_file() for f in files.values()):
            continue
        samples, sources = [], []
        for split, f in files.items():
            if not f.is_file():
                log.warning("coco: %s is missing; the prepared dataset has no %s split", f, split)
                continue
            samples += read_coco_captions(f, root / f"{split}{year}", split)
            sources.append(f)
        log.warning("coco: no Karpathy split (dataset_coco.json) under %s: val%s becomes the val split and "
                    "there is no test split; published COCO results use the Karpathy split", root, year)
        return Prepared("coco", samples, root, sources)
    raise _not_found("coco", root, "annotations/captions_train2014.json (or dataset_coco.json)")


def _prepare_karpathy(root: Path, karpathy_json: Path | None, restval_to_train: bool) -> Prepared:
    if karpathy_json is None:
        found = sorted(root.glob("dataset_*.json"))
        if len(found) != 1:
            raise DataError(f"found {len(found)} dataset_*.json files under {root}; "
                            f"name the Karpathy split JSON with --karpathy-json")
        karpathy_json = found[0]
    name = karpathy_json.stem.removeprefix("dataset_") or "karpathy"
    return Prepared(name, read_karpathy(karpathy_json, root, restval_to_train), root, [karpathy_json])
