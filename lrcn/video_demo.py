"""`lrcn demo --video`: shapes-video clips -> a video captioner -> blind / greedy / beam-3 scores on
the test split, then LRCN activity recognition on the same cached frame features; offline."""

from __future__ import annotations

import os
import shutil
import time
from importlib import resources
from pathlib import Path

from lrcn.baselines import consensus_caption
from lrcn.config import load_config
from lrcn.data.loaders import load_samples, split
from lrcn.data.shapes_video import generate_shapes_video
from lrcn.evaluate import evaluate
from lrcn.inference import decode_config
from lrcn.io import write_json
from lrcn.metrics import format_table, score
from lrcn.train.loop import train
from lrcn.video_activity import format_activity, train_activity_run

VIDEO_DEMO_CONFIG = resources.files("lrcn") / "configs" / "video_demo.yaml"
ACTIVITY_DEMO_CONFIG = resources.files("lrcn") / "configs" / "video_activity_demo.yaml"


def run_video_demo(out: str | os.PathLike = "demo", n: int = 1000, seed: int = 0, overrides: list[str] | None = None,
                   json_out: str | os.PathLike | None = None, activity: bool = True,
                   progress: bool = True) -> dict[str, dict[str, float]]:
    """Render ``n`` clips into ``out/shapes_video`` (once), train the captioner of
    ``lrcn/configs/video_demo.yaml`` into ``out/runs``, score it, and (``activity``) train and
    test the activity LSTM of ``video_activity_demo.yaml``. ``overrides`` apply to both configs.
    Returns (and writes to ``json_out``) ``{"blind", "greedy", "beam3"[, "activity"]}``."""
    started = time.perf_counter()
    out = Path(out)
    data_dir = out / "shapes_video"
    split_json = data_dir / "dataset_shapes_video.json"
    if not split_json.exists():
        print(f"rendering {n} shapes-video clips into {data_dir} ...")
        generate_shapes_video(data_dir, n=n, seed=seed)
    common = [f"data.split_json={split_json}", f"train.runs_dir={out / 'runs'}", *(overrides or [])]
    config = load_config(VIDEO_DEMO_CONFIG, common)
    run_dir = Path(config.train.runs_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)      # the demo always trains afresh
    print(f"training {config.decoder.kind} on {config.data.num_frames} frames per clip for "
          f"{config.train.epochs} epochs into {run_dir} ...")
    train(config, progress=progress)

    samples = load_samples(config)
    test = split(samples, "test")
    blind = consensus_caption({s.id: s.captions for s in split(samples, "train")})
    rows = {"blind": score({s.id: blind for s in test}, {s.id: s.captions for s in test}).corpus}
    for name, beam in (("greedy", 1), ("beam3", 3)):
        scores, captions = evaluate(run_dir, "test", decode_config(config, beam_size=beam), progress=progress)
        rows[name] = scores.corpus
    print(f'\nblind baseline caption: "{blind}"')
    for s in [s for s in test if s.id in captions][:5]:
        print(f"  {s.path.name}: {captions[s.id]!r}   (a reference: {s.captions[0]!r})")
    print()
    print(format_table(rows))
    ratio = rows["beam3"]["CIDEr"] / max(rows["blind"]["CIDEr"], 1e-9)
    print(f"\nCIDEr-D beam3 / blind = {ratio:.1f}x   (run folder {run_dir})")
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
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if json_out:
        write_json(json_out, result)
    return result
