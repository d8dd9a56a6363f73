"""`lrcn caption` for a run trained on video: caption video files and frame folders, resumably.

An input is a video file, a frame folder, or a folder of them (``lrcn.data.video.find_videos``:
video files by extension and sub-folders holding images; a folder that holds only images is one
clip). With ``--out DIR`` it writes ``DIR/captions.json`` after every batch (a re-run skips the
clips already done), a strip of the sampled frames per clip (``DIR/strips/*.jpg``) and
``DIR/index.html``, a gallery that opens from disk.

Bad input, by the rules of ``lrcn.data.video``: a missing, empty, corrupt or frameless video, or a
folder with no readable frame, is listed under ``skipped`` with the reason; a clip shorter than
``data.num_frames`` is padded with its last frame and a frame folder with a missing or unreadable
frame uses the nearest readable one, both recorded in the clip's ``notes``. Neither stops the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from lrcn.config import Config
from lrcn.data.video import VideoDataset, collate_videos, find_videos, list_frames, read_frames
from lrcn.decoding import DecodeConfig
from lrcn.errors import MediaError
from lrcn.inference import caption_features, decode_config, load_models
from lrcn.io import atomic_path, write_json
from lrcn.models.temporal import VIDEO_DECODERS
from lrcn.report.gallery import write_video_gallery
from lrcn.run import Run, resolve_device

FORMAT = "lrcn-video-captions-1"
STRIP_FRAMES = 8        # frames shown per clip in the gallery (evenly spread over the sampled ones)
STRIP_HEIGHT = 72       # pixels


def is_video_config(config: Config) -> bool:
    """Whether the run's decoder captions clips (``decoder.kind`` is a video kind)."""
    return config.decoder.kind in VIDEO_DECODERS


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
    T = frames.shape[0]
    picks = sorted({round(i * (T - 1) / max(count - 1, 1)) for i in range(min(count, T))})
    tiles = [Image.fromarray(frames[i].numpy()) for i in picks]
    width = max(1, round(tiles[0].width * height / tiles[0].height))
    strip = Image.new("RGB", (width * len(tiles) + 2 * (len(tiles) - 1), height), "white")
    for k, tile in enumerate(tiles):
        strip.paste(tile.resize((width, height), Image.BILINEAR), (k * (width + 2), 0))
    with atomic_path(path) as tmp:
        strip.save(tmp, format="JPEG", quality=85)
    return Path(path)


def strip_name(clip: Path) -> str:
    """A file name for a clip's strip, stable across runs and distinct for distinct paths."""
    digest = hashlib.sha1(os.path.abspath(clip).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in clip.stem)[:40]
    return f"{safe}-{digest}.jpg"


def caption_videos(run_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path | None = None,
                   json_out: str | Path | None = None, decode: DecodeConfig | None = None,
                   batch_size: int = 32, num_workers: int = 2, device: str = "auto",
                   progress: bool = True) -> dict[str, Any]:
    """Caption clips with a video run; returns the captions.json structure (``captions`` and
    ``skipped``, keyed by clip path). ``batch_size`` counts frames: a batch holds
    ``batch_size // data.num_frames`` clips (at least one)."""
    run = Run.open(run_dir)
    dev = resolve_device(device)
    config, vocab, encoder, decoder = load_models(run, "best", dev)
    decode = decode or decode_config(config)
    d = config.data
    clips = find_clips(inputs)
    out_json = Path(out_dir) / "captions.json" if out_dir else None
    result = {"format": FORMAT, "run": str(run.dir.resolve()), "decode": decode.to_dict(),
              "num_frames": d.num_frames, "captions": {}, "skipped": {}}
    if out_json and out_json.exists():
        previous = json.loads(out_json.read_text(encoding="utf-8"))
        if all(previous.get(k) == result[k] for k in ("format", "run", "decode", "num_frames")):
            result["captions"], result["skipped"] = previous["captions"], previous["skipped"]
    todo = [p for p in clips if str(p) not in result["captions"] and str(p) not in result["skipped"]]

    def save() -> None:
        if out_json:
            write_json(out_json, result)

    sampling = {"mode": d.frame_sampling, "fps": d.fps, "source_fps": d.source_fps, "max_pixels": d.max_pixels}
    dataset = VideoDataset(todo, d.num_frames, encoder.transform, **sampling)
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, batch_size // d.num_frames),
                                         num_workers=num_workers if todo else 0, collate_fn=collate_videos)
    with tqdm(total=len(todo), desc="captioning", unit="clip", disable=not progress) as bar:
        for batch in loader:
            for j, reason in batch.errors.items():
                result["skipped"][str(todo[j])] = reason
                tqdm.write(f"skipped {todo[j]}: {reason}", file=sys.stderr)
            for j, note in batch.notes.items():
                tqdm.write(note, file=sys.stderr)
            if batch.indices:
                with torch.inference_mode():
                    features = encoder.encode_frames(batch.clips.to(dev))             # [B, T, D]
                hyps = caption_features(decoder, features, vocab, decode, device=dev, bf16=config.train.bf16)
                for j, nbest in zip(batch.indices, hyps):
                    clip = todo[j]
                    entry = {"caption": vocab.decode(nbest[0].tokens), "notes": batch.notes.get(j, ""),
                             "nbest": [{"caption": vocab.decode(h.tokens), "score": h.score, "log_prob": h.log_prob}
                                       for h in nbest]}
                    if out_dir:
                        frames, _ = read_frames(clip, d.num_frames, size=STRIP_HEIGHT, **sampling)
                        entry["strip"] = f"strips/{strip_name(clip)}"
                        write_strip(Path(out_dir) / entry["strip"], frames)
                    result["captions"][str(clip)] = entry
            save()
            bar.update(len(batch.indices) + len(batch.errors))
    save()
    if out_dir:
        write_video_gallery(Path(out_dir) / "index.html", result)
        print(f"wrote {out_json} and {Path(out_dir) / 'index.html'} ({len(result['captions'])} captioned, "
              f"{len(result['skipped'])} skipped)")
    if json_out:
        write_json(json_out, result)
    if not out_dir and not json_out:
        for clip, entry in result["captions"].items():
            print(f"{clip}\t{entry['caption']}")
    for clip, reason in result["skipped"].items():
        print(f"skipped {clip}: {reason}", file=sys.stderr)
    return result
