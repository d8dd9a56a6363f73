"""`lrcn demo --video`: shapes-video clips -> a video captioner -> blind / greedy / beam-3 scores on
the test split, then LRCN activity recognition on the same cached frame features; offline."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from importlib import resources
from pathlib import Path

import torch

from lrcn.config import load_config
from lrcn.data.shapes_video import generate_shapes_video
from lrcn.demo import score_blind_greedy_beam
from lrcn.io import write_json
from lrcn.train.loop import train
from lrcn.video_activity import format_activity, train_activity_run

VIDEO_DEMO_CONFIG = resources.files("lrcn") / "configs" / "video_demo.yaml"
ACTIVITY_DEMO_CONFIG = resources.files("lrcn") / "configs" / "video_activity_demo.yaml"


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
