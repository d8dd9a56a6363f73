"""`lrcn caption`: caption images and folders of images with a trained run, resumably; a run
trained on video captions video files and frame folders instead (:func:`clip_captioning`).

With ``--out DIR`` it writes ``DIR/captions.json`` after every batch (so a re-run skips inputs
already captioned) and ``DIR/index.html``, a gallery that opens from disk. Inputs that cannot be
read are listed under ``skipped`` with the reason and never stop the run.

One driver, :func:`caption_paths`, serves both. Inputs are read and encoded as the run's feature
store reads them (``lrcn.data.features.FeatureSpec``: images, or clips of ``data.num_frames``
frames); what else differs between images and clips (finding them, the extra fields of an entry,
the gallery) is a :class:`Captioning`.

Video: An input is a video file, a frame folder, or a folder of them (``lrcn.data.video.find_videos``:
video files by extension and sub-folders holding images; a folder that holds only images is one
clip). With ``--out DIR``, besides ``DIR/captions.json`` and ``DIR/index.html``, a strip of the
sampled frames per clip is written to ``DIR/strips/*.jpg`` and shown in the gallery.

Bad input, by the rules of ``lrcn.data.video``: a missing, empty, corrupt or frameless video, or a
folder with no readable frame, is listed under ``skipped`` with the reason; a clip shorter than
``data.num_frames`` is padded with its last frame and a frame folder with a missing or unreadable
frame uses the nearest readable one, both recorded in the clip's ``notes``. Neither stops the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from tqdm.auto import tqdm

from lrcn.commands.options import add_decoding_arguments, run_decode_config
from lrcn.config import Config
from lrcn.data.loaders import feature_spec
from lrcn.data.media import find_images, image_size
from lrcn.data.video import find_videos, list_frames, read_frames
from lrcn.decoding import DecodeConfig
from lrcn.decoding.batch import caption_features
from lrcn.errors import ConfigError, MediaError
from lrcn.io import atomic_path, write_json
from lrcn.models.ensemble import Ensemble
from lrcn.report.attention import model_view, word_attention, write_attention
from lrcn.report.gallery import write_gallery, write_video_gallery
from lrcn.run import Member, decode_config, load_members, resolve_device, training_reranker
from lrcn.text import Vocabulary

FORMAT = "lrcn-captions-1"
VIDEO_FORMAT = "lrcn-video-captions-1"
STRIP_FRAMES = 8        # frames shown per clip in the gallery (evenly spread over the sampled ones)
STRIP_HEIGHT = 72       # pixels


def register(sub) -> None:
    s = sub.add_parser("caption", help="caption images or folders of images (videos with a run trained on video)")
    s.add_argument("run_dir")
    s.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="images or folders of images; for a video run, video files, frame folders or folders of them")
    s.add_argument("--out", help="write captions.json and an index.html gallery here")
    s.add_argument("--json", help="write the captions as JSON here")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--ensemble", nargs="+", default=(), metavar="RUN_DIR",
                   help="average the next-word probabilities of these runs (same vocabulary and encoder settings) "
                   "with RUN_DIR's; give it after the inputs")
    add_decoding_arguments(s)
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> None:
    caption_paths(a.run_dir, a.inputs, out_dir=a.out, json_out=a.json, decode=run_decode_config(a),
                  batch_size=a.batch_size, ensemble=a.ensemble, progress=not a.quiet)


@dataclass
class Captioning:
    """What captioning one kind of input needs besides its features (``FeatureSpec``). Batches have
    ``indices`` (positions in the list of paths to do, in batch order) and ``errors`` (position -> why it was skipped)."""
    format: str                                                  # captions.json "format"
    paths: list[Path]                                            # every input named, in order
    details: Callable[[Path, Any, int], dict]                    # (path, batch, index) -> extra entry fields
    gallery: Callable[[Path, dict], None]                        # writes index.html from captions.json
    header: dict = field(default_factory=dict)                   # more keys a re-run must match to resume
    # (paths, batch, features, best caption's word ids per row) -> more entry fields per row
    annotate: Callable[[list[Path], Any, torch.Tensor, list[list[int]]], list[dict]] | None = None


def image_captioning(inputs: Sequence[str | Path], out_dir: Path | None = None, encoder=None, decoder=None,
                     vocab: Vocabulary | None = None) -> Captioning:
    """Images and folders of images; each entry also records the image's width and height and, when
    ``decoder`` attends over a grid of regions (``attention_maps``), its ``attention`` per word of the
    best caption (with ``out_dir``, thumbnails under ``out_dir/attention/`` for the gallery)."""
    def details(path: Path, batch, j: int) -> dict:
        width, height = image_size(path)
        return {"width": width, "height": height}

    def attention(paths: list[Path], batch, features: torch.Tensor, best: list[list[int]]) -> list[dict]:
        if features.dim() != 4:                     # [B, D, G, G] grids only
            return [{} for _ in paths]
        maps = word_attention(decoder, features, best, vocab.start, vocab.pad)         # per row [words, G, G]
        return [{"attention": write_attention(out_dir, path, model_view(image, encoder.mean, encoder.std)
                                              if out_dir else None, [vocab.words[i] for i in tokens], m)}
                for path, image, tokens, m in zip(paths, batch.images, best, maps)]

    return Captioning(FORMAT, find_images(inputs), details, write_gallery,
                      annotate=attention if hasattr(decoder, "attention_maps") else None)


def same_features(a: Member, b: Member) -> bool:
    """Whether two runs' encoders turn an input into the same features, so one encodes for both."""
    if a.encoder.key != b.encoder.key or feature_spec(a.config) != feature_spec(b.config):
        return False
    weights_a, weights_b = a.encoder.state_dict(), b.encoder.state_dict()
    return weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


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

    return Captioning(VIDEO_FORMAT, find_clips(inputs), details, write_video_gallery, header={"num_frames": d.num_frames})


def caption_paths(run_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path | None = None,
                  json_out: str | Path | None = None, decode: DecodeConfig | None = None,
                  batch_size: int = 32, num_workers: int = 2, device: str = "auto",
                  ensemble: Sequence[str | Path] = (), progress: bool = True) -> dict[str, Any]:
    """Caption ``inputs`` with the run's best checkpoint (with ``ensemble``, those of these runs
    too, decoding as one: lrcn.models.ensemble); returns the captions.json structure (``captions``
    and ``skipped``, keyed by path). For a video run ``batch_size`` counts frames."""
    dev = resolve_device(device)
    members, vocab = load_members([run_dir, *ensemble], "best", dev)
    first, others = members[0], members[1:]
    run, config, encoder, decoder = first
    for other in others:             # one encoder reads the inputs for all
        if not same_features(first, other):
            raise ConfigError(f"{other.run.dir} turns inputs into other features than {run.dir} (another encoder, "
                              f"encoder setting, fine-tuned weights or frame sampling); `lrcn caption --ensemble` "
                              f"needs members that share them (`lrcn evaluate --ensemble` reads each member's "
                              f"feature store)")
    if others:
        decoder = Ensemble([m.decoder for m in members]).to(dev).eval()
    decode = decode or decode_config(config)
    reranker = training_reranker(run, config, encoder, decode, dev, progress)
    out_dir = Path(out_dir) if out_dir else None
    spec = replace(feature_spec(config), batch_size=batch_size, num_workers=num_workers)
    if spec.video:
        how = clip_captioning(config, inputs, out_dir)
    else:
        how = image_captioning(inputs, out_dir, encoder, decoder, vocab)
    out_json = out_dir / "captions.json" if out_dir else None
    result = {"format": how.format, "run": str(run.dir.resolve()), "decode": decode.to_dict(), **how.header,
              **({"ensemble": [str(m.run.dir.resolve()) for m in others]} if others else {}),
              "captions": {}, "skipped": {}}
    if out_json and out_json.exists():
        previous = json.loads(out_json.read_text(encoding="utf-8"))
        if all(previous.get(k) == result.get(k) for k in {*previous, *result} - {"captions", "skipped"}):
            result["captions"], result["skipped"] = previous["captions"], previous["skipped"]
    todo = [p for p in how.paths if str(p) not in result["captions"] and str(p) not in result["skipped"]]

    def save() -> None:
        if out_json:
            write_json(out_json, result)

    with tqdm(total=len(todo), desc="captioning", unit=spec.unit, disable=not progress) as bar:
        for batch in spec.loader(todo, encoder):
            for j, reason in batch.errors.items():
                result["skipped"][str(todo[j])] = reason
                tqdm.write(f"skipped {todo[j]}: {reason}", file=sys.stderr)
            if batch.indices:
                with torch.inference_mode():
                    features = spec.encode(encoder, spec.inputs(batch).to(dev))     # [B, D] / [B, T, D]
                hyps = caption_features(decoder, features, vocab, decode, device=dev, bf16=config.train.bf16,
                                        reranker=reranker)
                more = (how.annotate([todo[j] for j in batch.indices], batch, features, [n[0].tokens for n in hyps])
                        if how.annotate else [{}] * len(hyps))
                for j, nbest, extra in zip(batch.indices, hyps, more):
                    result["captions"][str(todo[j])] = {
                        "caption": vocab.decode(nbest[0].tokens), **how.details(todo[j], batch, j), **extra,
                        "nbest": [{"caption": vocab.decode(h.tokens), "score": h.score, "log_prob": h.log_prob}
                                  for h in nbest]}
            save()
            bar.update(len(batch.indices) + len(batch.errors))
    save()
    if out_dir:
        how.gallery(out_dir / "index.html", result)
        print(f"wrote {out_json} and {out_dir / 'index.html'} ({len(result['captions'])} captioned, "
              f"{len(result['skipped'])} skipped)")
    if json_out:
        write_json(json_out, result)
    if not out_dir and not json_out:       # path<TAB>caption; with --n-best N > 1 path<TAB>rank<TAB>score<TAB>caption
        for path, entry in result["captions"].items():
            if len(entry["nbest"]) == 1:
                print(f"{path}\t{entry['caption']}")
            else:
                for rank, h in enumerate(entry["nbest"], 1):
                    print(f"{path}\t{rank}\t{h['score']:.4f}\t{h['caption']}")
    for path, reason in result["skipped"].items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return result
