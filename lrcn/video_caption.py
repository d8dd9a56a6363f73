"""`lrcn caption` for a run trained on video: what captioning clips needs beyond images
(:func:`clip_captioning`, run by ``lrcn.caption.caption_paths``).

An input is a video file, a frame folder, or a folder of them (``lrcn.data.video.find_videos``:
video files by extension and sub-folders holding images; a folder that holds only images is one
clip). With ``--out DIR``, besides ``DIR/captions.json`` and ``DIR/index.html``, a strip of the
sampled frames per clip is written to ``DIR/strips/*.jpg`` and shown in the gallery.

Bad input, by the rules of ``lrcn.data.video``: a missing, empty, corrupt or frameless video, or a
folder with no readable frame, is listed under ``skipped`` with the reason; a clip shorter than
``data.num_frames`` is padded with its last frame and a frame folder with a missing or unreadable
frame uses the nearest readable one, both recorded in the clip's ``notes``. Neither stops the run.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from lrcn.caption import Captioning
from lrcn.config import Config
from lrcn.data.video import find_videos, list_frames, read_frames
from lrcn.errors import MediaError
from lrcn.io import atomic_path
from lrcn.report.gallery import write_video_gallery

FORMAT = "lrcn-video-captions-1"
STRIP_FRAMES = 8        # frames shown per clip in the gallery (evenly spread over the sampled ones)
STRIP_HEIGHT = 72       # pixels


def find_clips(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Clips named by ``inputs``: a file is a clip whatever its extension (decoded by content); a
    folder is searched with ``find_videos``, or is itself one clip when it holds only frames."""
    found, seen = [], set()
    for arg in map(Path, inputs):
        if arg.is_file():
            clips = [arg]
        elif arg.is_dir():
            clips = find_videos(arg) or ([arg] if list_frames(arg) else [])
            if not clips:
                print(f"skipped {arg}: holds no video file and no frame folder", file=sys.stderr)
        else:
            raise MediaError(f"{arg} does not exist; expected a video file, a frame folder or a folder of videos")
        for clip in clips:
            if os.path.abspath(clip) not in seen:
                seen.add(os.path.abspath(clip))
                found.append(clip)
    return found


def write_strip(path: str | os.PathLike, frames: torch.Tensor, count: int = STRIP_FRAMES,
                height: int = STRIP_HEIGHT) -> Path:
    """Up to ``count`` of the uint8 ``frames`` [T, H, W, 3], evenly spread, side by side as a JPEG."""
    T, k = frames.shape[0], min(count, frames.shape[0])
    picks = [round(i * (T - 1) / max(k - 1, 1)) for i in range(k)]
    tiles = [Image.fromarray(frames[i].numpy()) for i in picks]
    width = max(1, round(tiles[0].width * height / tiles[0].height))
    strip = Image.new("RGB", (width * len(tiles) + 2 * (len(tiles) - 1), height), "white")
    for i, tile in enumerate(tiles):
        strip.paste(tile.resize((width, height), Image.BILINEAR), (i * (width + 2), 0))
    with atomic_path(path) as tmp:
        strip.save(tmp, format="JPEG", quality=85)
    return Path(path)


def strip_name(clip: Path) -> str:
    """A file name for a clip's strip, stable across runs and distinct for distinct paths."""
    digest = hashlib.sha1(os.path.abspath(clip).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in clip.stem)[:40]
    return f"{safe}-{digest}.jpg"


def clip_captioning(config: Config, inputs: Sequence[str | os.PathLike], out_dir: Path | None) -> Captioning:
    """Video files and frame folders (``find_clips``), read as the feature store reads clips
    (``data.num_frames`` sampled from each as in training). Each entry also has the clip's
    ``notes`` (padding, replaced frames) and, with ``out_dir``, its frame ``strip``."""
    d = config.data

    def details(clip: Path, batch, j: int) -> dict:
        entry = {"notes": batch.notes.get(j, "")}
        if entry["notes"]:
            tqdm.write(entry["notes"], file=sys.stderr)
        if out_dir:
            frames, _ = read_frames(clip, d.num_frames, mode=d.frame_sampling, fps=d.fps, source_fps=d.source_fps,
                                    size=STRIP_HEIGHT, max_pixels=d.max_pixels)              # [T, h, w, 3]
            entry["strip"] = f"strips/{strip_name(clip)}"
            write_strip(out_dir / entry["strip"], frames)
        return entry

    return Captioning(FORMAT, find_clips(inputs), details, write_video_gallery, header={"num_frames": d.num_frames})
