"""`lrcn demo`: shapes data -> training -> blind / greedy / beam-3 scores on the test split, offline.
`lrcn demo --video`: shapes-video clips -> a video captioner -> blind / greedy / beam-3 scores on
the test split, then LRCN activity recognition on the same cached frame features; offline.

It runs what `lrcn train` and `lrcn evaluate` run: ``evaluate`` is imported from
lrcn.commands.evaluate, the one import of another command by a command (tests/test_layout.py)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import time
from importlib import resources
from pathlib import Path

import torch

from lrcn.commands.evaluate import evaluate
from lrcn.commands.options import add_set_argument
from lrcn.config import Config, load_config
from lrcn.data.loaders import load_samples, split
from lrcn.data.shapes import generate_shapes
from lrcn.data.shapes_video import generate_shapes_video
from lrcn.decoding.baselines import consensus_caption
from lrcn.io import write_json
from lrcn.metrics import format_table, score
from lrcn.report.activity import format_activity
from lrcn.train.activity import train_activity_run
from lrcn.train.loop import train

DEMO_CONFIG = resources.files("lrcn") / "configs" / "demo.yaml"
VIDEO_DEMO_CONFIG = resources.files("lrcn") / "configs" / "video_demo.yaml"
ACTIVITY_DEMO_CONFIG = resources.files("lrcn") / "configs" / "video_activity_demo.yaml"


def register(sub) -> None:
    s = sub.add_parser("demo", help="train and evaluate on the embedded shapes data, offline, in minutes")
    s.add_argument("--out", default="demo", help="folder for the data and the run")
    s.add_argument("--json", help="write {blind, greedy, beam3} scores here (with --video also activity)")
    s.add_argument("--n", type=int, help="number of shapes images (default 2000) or, with --video, clips (default 1000)")
    s.add_argument("--video", action="store_true", help="the video path: shapes-video clips, a video captioner, "
                   "and LRCN activity recognition")
    s.add_argument("--no-activity", action="store_true", help="with --video: skip activity recognition")
    s.add_argument("--seed", type=int, default=0)
    add_set_argument(s)
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> None:
    sizes = {"n": a.n} if a.n else {}
    if a.video:
        run_video_demo(a.out, seed=a.seed, overrides=a.set, json_out=a.json, activity=not a.no_activity,
                       progress=not a.quiet, **sizes)
    else:
        run_demo(a.out, seed=a.seed, overrides=a.set, json_out=a.json, progress=not a.quiet, **sizes)


def run_demo(out: str | Path = "demo", n: int = 2000, seed: int = 0, overrides: list[str] | None = None,
             json_out: str | Path | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
    started = time.perf_counter()
    out = Path(out)
    data_dir = out / "shapes"
    split_json = data_dir / "dataset_shapes.json"
    if not split_json.exists():
        print(f"rendering {n} shapes images into {data_dir} ...")
        generate_shapes(data_dir, n=n, seed=seed)
    config = load_config(DEMO_CONFIG, [f"data.split_json={split_json}", f"train.runs_dir={out / 'runs'}",
                                       *(overrides or [])])
    run_dir = Path(config.train.runs_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)      # the demo always trains afresh
    print(f"training {config.decoder.kind} for {config.train.epochs} epochs into {run_dir} ...")
    train(config, progress=progress)

    rows = score_blind_greedy_beam(config, run_dir, progress)
    print(f"({time.perf_counter() - started:.0f} s in all; run folder {run_dir})")
    if json_out:
        write_json(json_out, rows)
    return rows


def score_blind_greedy_beam(config: Config, run_dir: Path, progress: bool = True) -> dict[str, dict[str, float]]:
    """Test-split corpus scores of the blind baseline (the most consensual training caption, for
    every input), of greedy decoding and of beam 3 with the trained run; prints a few captions, the
    table and the CIDEr-D ratio of beam 3 to blind. Shared by ``lrcn demo`` and ``lrcn demo --video``."""
    samples = load_samples(config)
    test = split(samples, "test")
    blind = consensus_caption({s.id: s.captions for s in split(samples, "train")})
    rows = {"blind": score({s.id: blind for s in test}, {s.id: s.captions for s in test}).corpus}
    beam3 = dataclasses.replace(config.decode, strategy="beam", beam_size=3)
    for name, decode in (("greedy", config.decode.greedy()), ("beam3", beam3)):
        scores, captions = evaluate(run_dir, "test", decode, progress=progress)
        rows[name] = scores.corpus
    print(f'\nblind baseline caption: "{blind}"')
    for s in [s for s in test if s.id in captions][:5]:      # unreadable inputs have no caption
        print(f"  {s.path.name}: {captions[s.id]!r}   (a reference: {s.captions[0]!r})")
    print()
    print(format_table(rows))
    ratio = rows["beam3"]["CIDEr"] / max(rows["blind"]["CIDEr"], 1e-9)
    print(f"\nCIDEr-D beam3 / blind = {ratio:.1f}x")
    return rows


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_video_demo(out: str | os.PathLike = "demo", n: int = 1000, seed: int = 0, overrides: list[str] | None = None,
                   json_out: str | os.PathLike | None = None, activity: bool = True,
                   progress: bool = True) -> dict[str, dict[str, float]]:
    """Render ``n`` clips into ``out/shapes_video`` (once, at the config's ``encoder.image_size``),
    train the captioner of ``lrcn/configs/video_demo.yaml`` into ``out/runs``, score it, and
    (``activity``) train and test the activity LSTM of ``video_activity_demo.yaml``. ``overrides``
    apply to both configs. Returns (and writes to ``json_out``) ``{"blind", "greedy", "beam3"[, "activity"]}``."""
    started, out = time.perf_counter(), Path(out)
    with torch_threads(1):     # small models: with two threads on a shared 2-core machine epochs took 3-5x longer
        data_dir = out / "shapes_video"
        split_json = data_dir / "dataset_shapes_video.json"
        common = [f"data.split_json={split_json}", f"train.runs_dir={out / 'runs'}", *(overrides or [])]
        config = load_config(VIDEO_DEMO_CONFIG, common)
        if not split_json.exists():
            side = config.encoder.image_size
            print(f"rendering {n} shapes-video clips of {side} x {side} pixels into {data_dir} ...")
            generate_shapes_video(data_dir, n=n, seed=seed, image_size=side)
        run_dir = Path(config.train.runs_dir) / config.name
        shutil.rmtree(run_dir, ignore_errors=True)      # the demo always trains afresh
        print(f"training {config.decoder.kind} on {config.data.num_frames} frames per clip for "
              f"{config.train.epochs} epochs into {run_dir} ...")
        train(config, progress=progress)

        rows = score_blind_greedy_beam(config, run_dir, progress)
        result: dict[str, dict[str, float]] = dict(rows)
        if activity:
            activity_config = load_config(ACTIVITY_DEMO_CONFIG, common)
            shutil.rmtree(Path(activity_config.train.runs_dir) / activity_config.name, ignore_errors=True)
            print(f"\ntraining the LRCN activity LSTM for {activity_config.train.epochs} epochs ...")
            activity_dir, outcome = train_activity_run(activity_config, progress=progress)
            print(format_activity(outcome))
            print(f"confusion matrix: {activity_dir / 'confusion_test.png'}")
            result["activity"] = {"accuracy": outcome.accuracy, "frame_accuracy": outcome.frame_accuracy,
                                  "chance": 1 / len(outcome.class_names)}
        print(f"\nshapes-video test split ({time.perf_counter() - started:.0f} s in all; run folder {run_dir})")
        print("  captions CIDEr-D   " + "   ".join(f"{name} {r['CIDEr']:.3f}" for name, r in rows.items())
              + f"   (beam3 / blind {rows['beam3']['CIDEr'] / max(rows['blind']['CIDEr'], 1e-9):.1f}x)")
        if activity:
            a = result["activity"]
            print(f"  activity accuracy  clip {a['accuracy']:.3f}   per-frame {a['frame_accuracy']:.3f}   "
                  f"chance {a['chance']:.3f}")
        if json_out:
            write_json(json_out, result)
        return result
