"""Does the video path use the order of the frames? The same captioner and the same activity LSTM,
with the same budget, trained and tested three ways on the shapes-video set:

* ``ordered``:  the clips as they are (``data.num_frames`` frames in time order);
* ``shuffled``: the same frame features with each clip's frames in a fixed random order (a
  permutation drawn per clip, the same at training and test time);
* ``single``:   one frame per clip (``data.num_frames=1``: the middle frame).

Half of the shapes-video labels come in time-reversed pairs (moving left/right, up/down,
growing/shrinking), so neither a bag of frames nor one frame can tell them apart. Prints activity
accuracy, caption CIDEr-D (greedy and beam 3, test split) and how often the greedy caption names the
labelled motion (``motion named``: the label is among the caption's motion phrases) side by side,
with the ratios to ordered.

    python -m experiments.benchmarks.video_order [--out DIR] [--n 1000] [--seed 0] [--set KEY=VALUE ...]

The configs are the ones ``lrcn demo --video`` uses (lrcn/configs/video_demo.yaml and
video_activity_demo.yaml); ``--set`` overrides apply to both.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from lrcn.config import Config, load_config
from lrcn.data.features import FeatureStore, store_name
from lrcn.data.loaders import cached_features, feature_spec, load_samples, split
from lrcn.data.shapes_video import generate_shapes_video, named_motions
from lrcn.commands.evaluate import evaluate
from lrcn.models.factory import config_encoder
from lrcn.run import decode_config
from lrcn.train.loop import train
from lrcn.train.activity import train_activity_run
from lrcn.commands.demo import ACTIVITY_DEMO_CONFIG, VIDEO_DEMO_CONFIG

SPLITS = ("train", "val", "test")


def write_shuffled_stores(config: Config, target: Path, seed: int) -> None:
    """Per-split feature stores under ``target`` holding the config's (ordered) frame features with
    each clip's frames permuted; named as the pipeline names them, so training reads them as cached."""
    encoder = config_encoder(config)
    samples = load_samples(config)
    T = config.data.num_frames
    name = feature_spec(config).key(encoder)
    for part in SPLITS:
        chosen = split(samples, part)
        x, kept = cached_features(config, chosen, encoder, progress=False)           # [N, T, D]
        if len(kept) != len(chosen):
            raise SystemExit("a shapes-video clip could not be read; regenerate the data")
        g = torch.Generator().manual_seed(seed)
        x = torch.stack([clip[torch.randperm(T, generator=g)] for clip in x])
        ids = [s.id for s in chosen]
        store = FeatureStore(target / store_name(name, ids), ids, tuple(x.shape[1:]), name)
        store.write(list(range(len(ids))), x.numpy())


def caption_scores(config: Config) -> dict[str, float]:
    """Train the captioner of ``config`` afresh; return test CIDEr-D (greedy, beam 3) and the
    fraction of greedy captions that name the clip's labelled motion."""
    run_dir = Path(config.train.runs_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)
    train(config, progress=False)
    out = {}
    for name, beam in (("greedy", 1), ("beam3", 3)):
        scores, captions = evaluate(run_dir, "test", decode_config(config, beam_size=beam), progress=False)
        out[name] = scores.corpus["CIDEr"]
        if name == "greedy":
            labels = {s.id: s.meta["label"] for s in split(load_samples(config), "test")}
            out["motion"] = sum(labels[i] in named_motions(c) for i, c in captions.items()) / len(captions)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="folder for data, features and runs (default: a temporary folder)")
    p.add_argument("--n", type=int, default=1000, help="shapes-video clips")
    p.add_argument("--seed", type=int, default=0, help="data seed (and the shuffling permutations)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    a = p.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="video_order-"))
    split_json = out / "shapes_video" / "dataset_shapes_video.json"
    if not split_json.exists():
        side = load_config(VIDEO_DEMO_CONFIG, a.set).encoder.image_size
        generate_shapes_video(split_json.parent, n=a.n, seed=a.seed, image_size=side)
    started = time.perf_counter()
    rows = {}
    for variant in ("ordered", "shuffled", "single"):
        common = [f"data.split_json={split_json}", f"train.runs_dir={out / 'runs'}",
                  f"data.feature_dir={out / 'features' / variant}", *a.set]
        if variant == "single":
            common.append("data.num_frames=1")
        captioner = load_config(VIDEO_DEMO_CONFIG, [*common, f"name=captioner-{variant}"])
        activity = load_config(ACTIVITY_DEMO_CONFIG, [*common, f"name=activity-{variant}"])
        if variant == "shuffled":
            ordered = load_config(VIDEO_DEMO_CONFIG, [*common, f"data.feature_dir={out / 'features' / 'ordered'}"])
            write_shuffled_stores(ordered, out / "features" / "shuffled", a.seed)
        t0 = time.perf_counter()
        rows[variant] = {**caption_scores(captioner), "activity": train_activity_run(activity, progress=False)[1].accuracy}
        print(f"{variant}: {rows[variant]}  ({time.perf_counter() - t0:.0f} s)", flush=True)

    print(f"\nshapes-video, {a.n} clips, {captioner.decoder.kind} captioner, activity LSTM; test split "
          f"({time.perf_counter() - started:.0f} s in all, data and runs in {out})\n")
    print("| frames | activity accuracy | CIDEr-D greedy | CIDEr-D beam3 | motion named (greedy) |")
    print("|---|---:|---:|---:|---:|")
    base = rows["ordered"]
    for variant, r in rows.items():
        keys = ("activity", "greedy", "beam3", "motion")
        cells = [f"{r[k]:.3f}" + ("" if variant == "ordered" else f" ({r[k] / base[k]:.2f}x)") for k in keys]
        print(f"| {variant} | {' | '.join(cells)} |")
    chance = 1 / len({s.meta['label'] for s in load_samples(captioner)})
    print(f"\nactivity chance level: {chance:.3f}")


if __name__ == "__main__":
    main()
