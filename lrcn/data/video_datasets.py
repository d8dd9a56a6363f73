"""Readers for the video captioning datasets MSVD and MSR-VTT, used by ``lrcn data prepare
{msvd,msrvtt}`` (registered in ``lrcn.data.prepare.READERS``).

Each turns the official annotation files into :class:`Sample` records whose ``path`` is the
clip's video file (or, where the videos were unpacked into frames, its frame folder), with the
dataset's standard split. ``prepare`` then writes them as a Karpathy split JSON.

* MSVD (Chen & Dolan 2011): captions from ``MSR Video Description Corpus.csv`` (English rows) or
  ``AllVideoDescriptions.txt``; ``youtube_mapping.txt`` maps clip names (``-4wsuPCjDBc_5_15``)
  to ``vid1 ... vid1970``; the standard split (Venugopalan et al. 2015, Yao et al. 2015) is
  vid1-vid1200 train, vid1201-vid1300 val, vid1301-vid1970 test. Ids are the ``vidN`` names.
* MSR-VTT (Xu et al. 2016): ``train_val_videodatainfo.json`` (splits ``train``, ``validate``)
  and ``test_videodatainfo.json`` (``test``): ``"videos"`` entries with ``video_id`` and
  ``split``, ``"sentences"`` with ``video_id`` and ``caption``. Ids are ``video0 ... video9999``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from functools import partial
from pathlib import Path
from typing import Callable

from lrcn.data.formats import SPLIT_ALIASES, Prepared, _first_few, _find, _not_found, _read_lines
from lrcn.data.records import Sample, read_json, read_karpathy, safe_join
from lrcn.data.video import VIDEO_EXTENSIONS
from lrcn.errors import DataError

log = logging.getLogger(__name__)

# vidN ranges of the standard MSVD split (inclusive)
MSVD_SPLIT = {"train": (1, 1200), "val": (1201, 1300), "test": (1301, 1970)}
MSVD_CAPTION_FILES = ("MSR Video Description Corpus.csv", "video_corpus.csv", "AllVideoDescriptions.txt")
MSVD_VIDEO_DIRS = ("YouTubeClips", "youtubeclips", "YouTubeClips/YouTubeClips", "videos")
MSVD_MAPPING = "youtube_mapping.txt"

MSRVTT_ANNOTATION_DIRS = (".", "annotation", "annotations", "msrvtt_data")
MSRVTT_VIDEO_DIRS = ("TrainValVideo", "TestVideo", "videos/all", "videos", "train-video", "test-video",
                     "TrainValVideo/TrainValVideo", "TestVideo/TestVideo")
MSRVTT_SPLITS = {**SPLIT_ALIASES, "validate": "val", "validation": "val"}


def index_videos(root: Path, folders: tuple[str, ...]) -> dict[str, Path]:
    """Clip name (file stem or folder name) -> video file or frame folder, over the ``folders``
    of ``root`` that exist; earlier folders win, and within one a video file beats a frame folder."""
    found: dict[str, Path] = {}
    for name in folders:
        folder = root / name
        if not folder.is_dir():
            continue
        entries = sorted(folder.iterdir(), key=lambda p: (p.is_dir(), p.name))
        for p in entries:
            if p.name.startswith("."):
                continue
            if p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS:
                found.setdefault(p.stem if p.is_file() else p.name, p)
    return found


# ----------------------------------------------------------------------------- MSVD

def _msvd_csv(path: Path) -> dict[str, list[str]]:
    """English captions per clip name from the Microsoft CSV
    (``VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description``)."""
    lines = _read_lines(path, "MSVD caption file")
    if not lines:
        raise DataError(f"MSVD caption file {path} is empty")
    header = next(csv.reader([lines[0][1]]))
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    needed = ("videoid", "start", "end", "language", "description")
    absent = [c for c in needed if c not in columns]
    if absent:
        raise DataError(f"MSVD caption file {path}: the header lacks {', '.join(absent)}; expected "
                        f"VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description")
    last = columns["description"]
    captions: dict[str, list[str]] = {}
    for lineno, line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if len(fields) <= last:
            raise DataError(f"{path}:{lineno}: malformed line {line[:80]!r}; expected {len(header)} "
                            f"comma-separated fields")
        if fields[columns["language"]].strip().lower() != "english":
            continue
        description = ",".join(fields[last:]).strip()   # an unquoted comma in the text splits it
        try:
            start, end = int(float(fields[columns["start"]])), int(float(fields[columns["end"]]))
        except ValueError:
            raise DataError(f"{path}:{lineno}: Start/End {fields[columns['start']]!r}, "
                            f"{fields[columns['end']]!r} are not numbers") from None
        if description:
            captions.setdefault(f"{fields[columns['videoid']].strip()}_{start}_{end}", []).append(description)
    return captions


def _msvd_txt(path: Path) -> dict[str, list[str]]:
    """Captions per clip name from ``AllVideoDescriptions.txt`` (``CLIP caption``; ``#`` comments)."""
    captions: dict[str, list[str]] = {}
    for lineno, line in _read_lines(path, "MSVD caption file"):
        if line.lstrip().startswith("#"):
            continue
        name, _, caption = line.strip().partition(" ")
        if not caption.strip():
            log.warning("%s:%d: no caption after the clip name %r; skipped", path, lineno, name)
            continue
        captions.setdefault(name, []).append(caption.strip())
    return captions


def read_msvd_mapping(path: Path) -> dict[str, int]:
    """``youtube_mapping.txt``: clip name -> N of its ``vidN`` id."""
    mapping: dict[str, int] = {}
    for lineno, line in _read_lines(path, "MSVD mapping file"):
        parts = line.split()
        match = re.fullmatch(r"vid(\d+)", parts[1]) if len(parts) == 2 else None
        if match is None:
            raise DataError(f"{path}:{lineno}: malformed line {line[:80]!r}; expected CLIP_NAME vidN")
        mapping[parts[0]] = int(match.group(1))
    return mapping


def _msvd_split(number: int) -> str | None:
    return next((split for split, (lo, hi) in MSVD_SPLIT.items() if lo <= number <= hi), None)


def read_msvd(root: str | os.PathLike) -> tuple[list[Sample], list[Path]]:
    """MSVD samples under ``root`` with the standard split, and the annotation files read."""
    root = Path(root)
    caption_file = _find(root, MSVD_CAPTION_FILES)
    mapping_file = _find(root, (MSVD_MAPPING,))
    if caption_file is None:
        raise _not_found("msvd", root, f"a caption file ({' or '.join(MSVD_CAPTION_FILES)})")
    if mapping_file is None:
        raise _not_found("msvd", root, f"{MSVD_MAPPING} (clip name -> vidN, which fixes the standard split)")
    captions = (_msvd_txt if caption_file.suffix == ".txt" else _msvd_csv)(caption_file)
    mapping = read_msvd_mapping(mapping_file)
    videos = index_videos(root, MSVD_VIDEO_DIRS)
    default_dir = next((d for d in MSVD_VIDEO_DIRS if (root / d).is_dir()), MSVD_VIDEO_DIRS[0])
    samples, uncaptioned, outside = [], [], []
    for clip, number in sorted(mapping.items(), key=lambda item: item[1]):
        split = _msvd_split(number)
        if split is None:
            outside.append(f"vid{number}")
            continue
        if clip not in captions:
            uncaptioned.append(clip)
            continue
        path = videos.get(clip) or safe_join(root, Path(default_dir) / f"{clip}.avi", str(mapping_file))
        samples.append(Sample(f"vid{number}", path, split, captions[clip], {"clip": clip}))
    if uncaptioned:
        log.warning("msvd: %d clips of %s have no caption in %s and were skipped: %s", len(uncaptioned),
                    mapping_file, caption_file, _first_few(uncaptioned))
    if outside:
        log.warning("msvd: %d ids of %s lie outside the standard split vid1-vid1970 and were left out: %s",
                    len(outside), mapping_file, _first_few(outside))
    unmapped = len(set(captions) - set(mapping))
    if unmapped:
        log.info("msvd: %d captioned clips of %s are not in %s and were left out", unmapped, caption_file,
                 mapping_file)
    return samples, [caption_file, mapping_file]


# ----------------------------------------------------------------------------- MSR-VTT

def _msrvtt_file(path: Path) -> tuple[list[dict], dict[str, list[str]]]:
    """The ``videos`` entries and the captions per ``video_id`` of one MSR-VTT info file."""
    data = read_json(path, "MSR-VTT annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise DataError(f"MSR-VTT annotation file {path} has no 'videos' list; expected "
                        f"train_val_videodatainfo.json or test_videodatainfo.json")
    for n, video in enumerate(data["videos"]):
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), str) \
                or not isinstance(video.get("split"), str):
            raise DataError(f"MSR-VTT annotation file {path}: videos[{n}] needs 'video_id' and 'split' strings")
        if video["split"] not in MSRVTT_SPLITS:
            raise DataError(f"MSR-VTT annotation file {path}: videos[{n}] has split {video['split']!r}; "
                            f"expected train, validate or test")
    captions: dict[str, list[str]] = {}
    for n, sentence in enumerate(data.get("sentences") or []):
        if not isinstance(sentence, dict) or not isinstance(sentence.get("video_id"), str) \
                or not isinstance(sentence.get("caption"), str):
            raise DataError(f"MSR-VTT annotation file {path}: sentences[{n}] needs 'video_id' and 'caption' strings")
        if sentence["caption"].strip():
            captions.setdefault(sentence["video_id"], []).append(sentence["caption"].strip())
    return data["videos"], captions


def read_msrvtt(root: str | os.PathLike) -> tuple[list[Sample], list[Path]]:
    """MSR-VTT samples under ``root`` with the official split, and the annotation files read."""
    root = Path(root)
    files = [f for name in ("train_val_videodatainfo.json", "test_videodatainfo.json")
             if (f := _find(root, tuple(os.path.join(d, name) for d in MSRVTT_ANNOTATION_DIRS))) is not None]
    if not files:
        raise _not_found("msrvtt", root, "train_val_videodatainfo.json or test_videodatainfo.json")
    if len(files) == 1:
        log.warning("msrvtt: only %s found under %s; the prepared dataset lacks the other file's splits",
                    files[0].name, root)
    videos = index_videos(root, MSRVTT_VIDEO_DIRS)
    samples, seen, uncaptioned = [], {}, []
    for path in files:
        entries, captions = _msrvtt_file(path)
        for n, video in enumerate(entries):
            vid = video["video_id"]
            if vid in seen:
                raise DataError(f"MSR-VTT annotation file {path}: videos[{n}] {vid!r} is also listed in {seen[vid]}")
            seen[vid] = path.name
            if not captions.get(vid):
                uncaptioned.append(vid)
                continue
            split = MSRVTT_SPLITS[video["split"]]
            default_dir = "TestVideo" if split == "test" else "TrainValVideo"
            file = videos.get(vid) or safe_join(root, Path(default_dir) / f"{vid}.mp4", str(path))
            meta = {k: video[k] for k in ("category", "url", "start time", "end time") if k in video}
            samples.append(Sample(vid, file, split, captions[vid], meta))
    if uncaptioned:
        log.warning("msrvtt: %d videos have no caption and were skipped: %s", len(uncaptioned),
                    _first_few(uncaptioned))
    return samples, files


# ----------------------------------------------------------------------------- prepare readers

def _prepare(name: str, read: Callable[[Path], tuple[list[Sample], list[Path]]], video_dirs: tuple[str, ...],
             root: Path, karpathy_json: Path | None, restval_to_train: bool) -> Prepared:
    """A Karpathy split JSON (relative to ``root``) if given, else the official files."""
    if karpathy_json is not None:
        return Prepared(name, read_karpathy(karpathy_json, root, restval_to_train), root, [karpathy_json])
    samples, sources = read(root)
    if not any((root / d).is_dir() for d in video_dirs):
        log.warning("%s: no video folder (%s) under %s", name, ", ".join(video_dirs), root)
    return Prepared(name, samples, root, sources)


VIDEO_READERS: dict[str, Callable[[Path, Path | None, bool], Prepared]] = {
    "msvd": partial(_prepare, "msvd", read_msvd, MSVD_VIDEO_DIRS),
    "msrvtt": partial(_prepare, "msrvtt", read_msrvtt, MSRVTT_VIDEO_DIRS),
}
