"""Video input: decode a video file or a folder of frames, sample a fixed number of frames, and
batch clips for the encoder (``lrcn.data.features`` stores their per-frame features, one batched
forward over all B x T frames).

``read_frames(path, num_frames)`` returns uint8 frames [T, H, W, 3] and a :class:`VideoInfo`
saying which source frames were taken and what had to be patched. Video files are decoded with
PyAV (``pip install 'lrcn[video]'``); a folder of frames (``frame_000.png, frame_001.png ...``,
any image format ``lrcn.data.media`` reads) needs nothing more.

Which frames (``sample_indices``):

* ``"uniform"``: the middle frame of each of ``num_frames`` equal segments of the clip.
* ``"fps"``: one frame every ``1 / fps`` seconds from the start (frame ``floor(k * source_fps / fps)``).

Bad input, by rule (never a crash of a whole extraction):

* A clip with fewer frames than asked (or, at a fixed rate, that ends early): every frame it has,
  then its **last frame repeated** to fill ``num_frames`` (``info.padded`` counts the repeats).
* A frame folder with a gap in its numbering (``frame_003.png`` absent between 002 and 004) or
  an unreadable frame: the **nearest readable frame** of the folder is used instead, the
  earlier one on a tie (``info.replaced``).
* A video whose decoding stops early (truncated or damaged data): the frames decoded so far are
  sampled as the whole clip.
* A missing, empty, corrupt or frameless file, or a folder with no readable frame: ``MediaError``
  naming the file. :class:`VideoDataset` turns it into an error row that
  :func:`collate_videos` drops and reports, as ``ImageFolderDataset`` does for images.

Every patch is described in ``info.notes``; feature extraction prints them and keeps them in the
store's ``notes.json`` (failures in ``failed.json``, as for images).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image

from lrcn.data.media import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, check_file, load_image
from lrcn.errors import ConfigError, MediaError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                              ".wmv", ".3gp", ".ogv", ".ts"})


# ----------------------------------------------------------------------------- which frames

def _uniform(total: int, num_frames: int, fps: float | None, source_fps: float | None) -> list[int]:
    """Middle frame of each of ``num_frames`` equal segments (every frame once if there are fewer)."""
    if total < num_frames:
        return list(range(total))
    return [(2 * i + 1) * total // (2 * num_frames) for i in range(num_frames)]


def _at_rate(total: int, num_frames: int, fps: float | None, source_fps: float | None) -> list[int]:
    """Frames ``floor(k * source_fps / fps)``, k = 0, 1, ..., while the clip lasts (at most num_frames)."""
    if not source_fps or source_fps <= 0:
        raise ConfigError("frame sampling at a fixed rate needs the clip's own frame rate; a frame folder "
                          "has none, pass source_fps")
    step = Fraction(source_fps).limit_denominator(1001) / Fraction(fps).limit_denominator(1001)
    indices = []
    for k in range(num_frames):
        index = math.floor(k * step)
        if index >= total:
            break
        indices.append(index)
    return indices


SAMPLERS: dict[str, Callable[[int, int, float | None, float | None], list[int]]] = {
    "uniform": _uniform,
    "fps": _at_rate,
}


def check_sampling(num_frames: int, mode: str = "uniform", fps: float | None = None) -> None:
    """Refuse an unknown sampling mode, a non-positive frame count, or a fixed rate without ``fps``."""
    if mode not in SAMPLERS:
        raise ConfigError(f"frame sampling mode {mode!r} is unknown; choose one of {sorted(SAMPLERS)}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
    if mode == "fps" and (not isinstance(fps, (int, float)) or fps <= 0):
        raise ConfigError(f"frame sampling at a fixed rate needs fps > 0, got {fps!r}")


def sample_indices(total: int, num_frames: int, mode: str = "uniform", *, fps: float | None = None,
                   source_fps: float | None = None) -> tuple[list[int], int]:
    """The ``num_frames`` source frames to take from a clip of ``total`` frames, and how many of
    them are padding (the clip's last frame repeated because it is too short).

    ``mode="uniform"``: the middle frame of each of ``num_frames`` equal segments
    (``(2i + 1) * total // (2 * num_frames)``). ``mode="fps"``: one frame every ``1 / fps``
    seconds of a clip recorded at ``source_fps``, starting with frame 0.
    """
    check_sampling(num_frames, mode, fps)
    if total < 1:
        raise ValueError("a clip with no frame has nothing to sample")
    indices = SAMPLERS[mode](total, num_frames, fps, source_fps)
    padded = num_frames - len(indices)
    return indices + [indices[-1]] * padded, padded


# ----------------------------------------------------------------------------- reading

@dataclass
class VideoInfo:
    """What ``read_frames`` took from a clip, and what it had to patch."""

    path: Path
    total_frames: int                 # frames of the clip (numbered positions for a frame folder)
    fps: float | None                 # the clip's frame rate (None: unknown, e.g. a frame folder)
    indices: list[int]                # source frame of each returned frame
    padded: int = 0                   # trailing returned frames that repeat the last one (clip too short)
    replaced: dict[int, int] = field(default_factory=dict)  # wanted frame -> frame used instead
    declared_frames: int | None = None  # frames the video file's header declares, if it holds fewer
    decode_error: str = ""            # why decoding stopped early, if a decoder error stopped it

    @property
    def notes(self) -> list[str]:
        """One line per patch applied, naming the clip; empty for a clean read."""
        out = []
        if self.declared_frames is not None:
            why = f" ({self.decode_error})" if self.decode_error else ""
            out.append(f"video {self.path}: decoding stopped after {self.total_frames} of the "
                       f"{self.declared_frames} frames it declares{why}; sampled those")
        if self.padded:
            out.append(f"video {self.path}: has {self.total_frames} frames, fewer than the "
                       f"{len(self.indices)} asked; its last frame fills the other {self.padded}")
        if self.replaced:
            pairs = ", ".join(f"{a}->{b}" for a, b in list(self.replaced.items())[:5])
            more = ", ..." if len(self.replaced) > 5 else ""
            out.append(f"frame folder {self.path}: {len(self.replaced)} sampled frames missing or unreadable, "
                       f"replaced by the nearest readable frame ({pairs}{more})")
        return out


def read_frames(path: str | os.PathLike, num_frames: int, *, mode: str = "uniform", fps: float | None = None,
                source_fps: float | None = None, size: int | None = None,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[torch.Tensor, VideoInfo]:
    """``num_frames`` frames of a video file or frame folder as uint8 [T, H, W, 3], and a :class:`VideoInfo`.

    ``mode`` / ``fps``: see :func:`sample_indices`. ``source_fps`` overrides the file's frame rate
    (and gives a frame folder one). ``size``: resize every frame so its shorter side is ``size``
    (aspect kept). Frames larger than ``max_pixels`` are refused. Raises :class:`MediaError`.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, num_frames, mode, fps, source_fps, size, max_pixels)
    return _read_video_file(path, num_frames, mode, fps, source_fps, size, max_pixels)


def _target_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the shorter side resized to ``size``."""
    if size is None:
        return width, height
    if width <= height:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


_NUMBER = re.compile(r"(\d+)$")


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frame folder in frame order (numbers compared as numbers), hidden files skipped."""
    folder = Path(folder)
    files = [p for p in folder.iterdir()
             if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()]

    def key(p: Path) -> tuple:
        return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.stem))
    return sorted(files, key=key)


def _frame_positions(files: list[Path]) -> tuple[dict[int, Path], int]:
    """Files by frame position and the clip length. Trailing numbers in the names give the
    positions (divided by their common step); gaps in the numbering are missing frames."""
    numbers = [_NUMBER.search(p.stem) for p in files]
    if all(numbers) and len({int(m.group(1)) for m in numbers}) == len(files):
        values = [int(m.group(1)) for m in numbers]
        first = min(values)
        step = math.gcd(*(v - first for v in values)) or 1      # frame_0000, frame_0005, ...: step 5
        return {(v - first) // step: p for v, p in zip(values, files)}, (max(values) - first) // step + 1
    return dict(enumerate(files)), len(files)


def _read_folder(folder: Path, num_frames: int, mode: str, fps: float | None, source_fps: float | None,
                 size: int | None, max_pixels: int | None) -> tuple[torch.Tensor, VideoInfo]:
    files = list_frames(folder)
    if not files:
        raise MediaError(f"frame folder {folder} holds no image files "
                         f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    by_position, total = _frame_positions(files)
    indices, padded = sample_indices(total, num_frames, mode, fps=fps, source_fps=source_fps)
    loaded: dict[int, np.ndarray | None] = {}

    def load(position: int) -> np.ndarray | None:
        if position not in loaded:
            file = by_position.get(position)
            try:
                loaded[position] = None if file is None else np.asarray(load_image(file, max_pixels=max_pixels))
            except MediaError:
                loaded[position] = None
        return loaded[position]

    frames, replaced = [], {}
    for index in indices:
        used = index
        frame = load(index)
        for distance in range(1, total):
            if frame is not None:
                break
            for candidate in (index - distance, index + distance):
                if 0 <= candidate < total and (frame := load(candidate)) is not None:
                    used = candidate
                    break
        if frame is None:
            raise MediaError(f"frame folder {folder}: none of its {len(files)} frames could be read")
        if used != index:
            replaced[index] = used
        frames.append(frame)
    h, w = frames[0].shape[:2]
    out_w, out_h = _target_size(w, h, size)
    frames = [f if f.shape[:2] == (out_h, out_w)
              else np.asarray(Image.fromarray(f).resize((out_w, out_h), Image.BILINEAR)) for f in frames]
    info = VideoInfo(folder, total, source_fps, indices, padded, replaced)
    return torch.from_numpy(np.stack(frames)), info


def _av():
    try:
        import av   # optional (lrcn[video]): needed for video files only, frame folders work without it
    except ImportError:
        raise MediaError("reading video files needs PyAV: pip install 'lrcn[video]' (or pip install av); "
                         "folders of frames work without it") from None
    return av


def _probe(av, path: Path, max_pixels: int | None) -> tuple[int, float | None, int, int]:
    """(frame count, frame rate, width, height) of the first video stream, reading no pixel data
    (the count from the container header, else by demuxing packets)."""
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.video:
            raise MediaError(f"video {path} has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise MediaError(f"video {path} declares an empty frame of {width}x{height} pixels")
        if max_pixels is not None and width * height > max_pixels:
            raise MediaError(f"video {path} has {width}x{height} frames, more than the limit of "
                             f"{max_pixels:,} pixels; refused")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        total = stream.frames
        if total <= 0:
            total = sum(1 for packet in container.demux(stream) if packet.size)
        return total, float(rate) if rate else None, width, height


def _decode(av, path: Path, wanted: set[int], last: int, width: int, height: int
            ) -> tuple[dict[int, np.ndarray], int, str]:
    """Decode frames 0..last, keeping those in ``wanted``; (kept frames, frames decoded, error or "")."""
    kept, decoded, error = {}, 0, ""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if decoded in wanted:
                    kept[decoded] = frame.to_ndarray(format="rgb24", width=width, height=height)
                decoded += 1
                if decoded > last:
                    break
    except Exception as e:  # untrusted bytes: a decoder failure ends the clip where it happens
        error = f"{type(e).__name__}: {e}"
    return kept, decoded, error


def _read_video_file(path: Path, num_frames: int, mode: str, fps: float | None, source_fps: float | None,
                     size: int | None, max_pixels: int | None) -> tuple[torch.Tensor, VideoInfo]:
    check_file(path, "video")
    av = _av()
    try:
        total, rate, width, height = _probe(av, path, max_pixels)
    except MediaError:
        raise
    except Exception as e:  # untrusted bytes: any demuxer failure is the file's fault
        raise MediaError(f"video {path} cannot be opened, it is corrupt, truncated or not a video "
                         f"({type(e).__name__}: {e})") from None
    rate = source_fps or rate
    if mode == "fps" and not rate:
        raise MediaError(f"video {path} does not state its frame rate; pass source_fps to sample it at a fixed rate")
    out_w, out_h = _target_size(width, height, size)
    declared, error = total, ""
    for _ in range(2):   # a second pass when the file holds fewer decodable frames than it declares
        if total < 1:
            raise MediaError(f"video {path} holds no decodable frame" + (f" ({error})" if error else ""))
        indices, padded = sample_indices(total, num_frames, mode, fps=fps, source_fps=rate)
        kept, decoded, error = _decode(av, path, set(indices), max(indices), out_w, out_h)
        if all(i in kept for i in indices):
            break
        total = decoded
    else:
        raise MediaError(f"video {path} cannot be decoded consistently ({error or 'frames vanished'})")
    info = VideoInfo(path, total, rate, indices, padded, declared_frames=declared if total < declared else None,
                     decode_error=error)
    return torch.from_numpy(np.stack([kept[i] for i in indices])), info


def write_video(path: str | os.PathLike, frames: np.ndarray | torch.Tensor, fps: float = 25.0,
                codec: str = "mpeg4", bit_rate: int = 4_000_000) -> Path:
    """Encode uint8 frames [T, H, W, 3] as a video file (container from the extension). ``codec``
    "mpeg4" (lossy, any container) or "ffv1" (lossless, .mkv/.avi), or any encoder FFmpeg has;
    frame sides must be even for 4:2:0 codecs."""
    av = _av()
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got shape {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        stream.bit_rate = bit_rate
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def find_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files (by extension) and frame folders (sub-folders holding images) directly in ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"{folder} is not a folder of videos")
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(p)
        elif p.is_dir() and list_frames(p):
            found.append(p)
    return found


# ----------------------------------------------------------------------------- data loading

class VideoDataset(torch.utils.data.Dataset):
    """Clips by index for a ``DataLoader``; a bad clip becomes an error row, not a crash.

    Item ``i`` is ``(i, clip, notes)`` with ``clip`` the stacked per-frame ``transform`` outputs
    [T, ...] (default: float [T, 3, H, W] in 0..1) and ``notes`` the patches applied ("" if none),
    or ``(i, None, message)`` when the clip cannot be read. ``transform`` maps one RGB
    ``PIL.Image`` to a tensor (an encoder's ``transform``). Collate with :func:`collate_videos`;
    clips of one batch must come out the same size (an encoder's transform crops to a fixed one).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], num_frames: int,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None, *, mode: str = "uniform",
                 fps: float | None = None, source_fps: float | None = None, size: int | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.paths = [Path(p) for p in paths]
        self.num_frames, self.transform = num_frames, transform
        self.options = {"mode": mode, "fps": fps, "source_fps": source_fps, "size": size, "max_pixels": max_pixels}
        check_sampling(num_frames, mode, fps)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            frames, info = read_frames(self.paths[index], self.num_frames, **self.options)   # [T, H, W, 3]
        except MediaError as e:
            return index, None, str(e)
        if self.transform is None:
            clip = frames.permute(0, 3, 1, 2).float().div_(255)                              # [T, 3, H, W]
        else:
            clip = torch.stack([self.transform(Image.fromarray(f)) for f in frames.numpy()])
        return index, clip, "; ".join(info.notes)


class VideoBatch(NamedTuple):
    indices: list[int]              # dataset indices of the clips read, in batch order
    clips: torch.Tensor | None      # [B, T, ...]; None when every clip failed
    errors: dict[int, str]          # dataset index -> why it was dropped
    notes: dict[int, str]           # dataset index -> what was patched (padding, replaced frames)


def collate_videos(batch: Sequence[tuple]) -> VideoBatch:
    """Collate :class:`VideoDataset` items, dropping the unreadable clips and listing them."""
    good = [item for item in batch if item[1] is not None]
    errors = {int(i): str(message) for i, clip, message in batch if clip is None}
    notes = {int(i): message for i, clip, message in good if message}
    clips = torch.stack([item[1] for item in good]) if good else None
    return VideoBatch([int(item[0]) for item in good], clips, errors, notes)


# ----------------------------------------------------------------------------- features

def sampling_name(num_frames: int, mode: str = "uniform", fps: float | None = None) -> str:
    """How frames were sampled, as part of a feature store's encoder name (``frames16-uniform``)."""
    return f"frames{num_frames}-{mode}" + (f"{fps:g}" if mode == "fps" else "")
