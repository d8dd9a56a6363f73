"""The `lrcn` command line: parse, load the config, call one function per command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Callable

from lrcn.decoding import LENGTH_PENALTIES, SHARED_OPTIONS, STRATEGIES, DecodeConfig
from lrcn.errors import LrcnError


def cmd_data_shapes(a: argparse.Namespace) -> None:
    from lrcn.data.shapes import generate_shapes
    path = generate_shapes(a.out, n=a.n, seed=a.seed, image_size=a.image_size)
    print(f"wrote {path}")


def cmd_data_shapes_video(a: argparse.Namespace) -> None:
    from lrcn.data.shapes_video import generate_shapes_video
    path = generate_shapes_video(a.out, n=a.n, seed=a.seed, frames=(a.min_frames, a.max_frames),
                                 image_size=a.image_size)
    print(f"wrote {path}")


def cmd_data_prepare(a: argparse.Namespace) -> None:
    from lrcn.data.prepare import prepare
    path = prepare(a.kind, a.root, a.out, karpathy_json=a.karpathy_json, restval_to_train=not a.no_restval)
    print(f"wrote {path}; train with data.split_json={path}")


def cmd_train(a: argparse.Namespace) -> None:
    from lrcn.config import load_config
    from lrcn.train.loop import train
    if a.resume and (a.config or a.set):
        raise LrcnError("--resume continues a run with its saved config; do not pass a config or --set")
    if not a.resume and not a.config:
        raise LrcnError("lrcn train needs a CONFIG file (see experiments/) or --resume RUN_DIR")
    config = None if a.resume else load_config(a.config, a.set)     # refused here, before any data is read
    run_dir = train(config, resume=a.resume, progress=not a.quiet)
    print(f"run folder: {run_dir}")


def cmd_extract(a: argparse.Namespace) -> None:
    from lrcn.config import load_config
    from lrcn.data.loaders import extract_splits
    from lrcn.inference import config_encoder
    from lrcn.run import resolve_device
    from lrcn.train import distributed
    config = load_config(a.config, a.set + (["encoder.features=grid"] if a.grid else []))
    encoder = config_encoder(config)             # images or clips per data.modality: the stores train reads
    device = resolve_device(config.train.device)
    dist = distributed.setup(device)
    stores = extract_splits(config, encoder, tuple(a.split), device=dist.device(device), progress=not a.quiet and dist.main, dist=dist)
    if dist.main:
        for name, directory in stores.items():
            print(f"{name}: {directory}")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from lrcn.evaluate import evaluate
    from lrcn.io import write_json
    from lrcn.metrics import format_table
    if a.ensemble:                       # several runs decoding as one (lrcn.models.ensemble)
        from lrcn.models.ensemble import evaluate_ensemble
        scores, _ = evaluate_ensemble([a.run_dir, *a.ensemble], a.split, run_decode_config(a), which=a.checkpoint,
                                      backend=a.backend, progress=not a.quiet)
    else:
        scores, _ = evaluate(a.run_dir, a.split, run_decode_config(a), which=a.checkpoint, backend=a.backend,
                             progress=not a.quiet)
    print(format_table({a.split: scores.corpus}))
    for metric, reason in scores.skipped.items():
        print(f"skipped {metric}: {reason}", file=sys.stderr)
    if a.json:
        write_json(a.json, scores.corpus)


def cmd_baseline(a: argparse.Namespace) -> None:
    from lrcn.baselines import baseline_name, run_baseline
    from lrcn.io import write_json
    from lrcn.metrics import format_table
    scores, _ = run_baseline(a.run_dir, a.split, a.kind, k=a.k, backend=a.backend, progress=not a.quiet)
    print(format_table({baseline_name(a.kind, a.k): scores.corpus}))
    for metric, reason in scores.skipped.items():
        print(f"skipped {metric}: {reason}", file=sys.stderr)
    if a.json:
        write_json(a.json, scores.corpus)


def cmd_caption(a: argparse.Namespace) -> None:
    from lrcn.caption import caption_paths
    caption_paths(a.run_dir, a.inputs, out_dir=a.out, json_out=a.json, decode=run_decode_config(a),
                  batch_size=a.batch_size, progress=not a.quiet)


def cmd_demo(a: argparse.Namespace) -> None:
    sizes = {"n": a.n} if a.n else {}
    if a.video:
        from lrcn.video_demo import run_video_demo
        run_video_demo(a.out, seed=a.seed, overrides=a.set, json_out=a.json, activity=not a.no_activity,
                       progress=not a.quiet, **sizes)
        return
    from lrcn.demo import run_demo
    run_demo(a.out, seed=a.seed, overrides=a.set, json_out=a.json, progress=not a.quiet, **sizes)


def cmd_activity(a: argparse.Namespace) -> None:
    from lrcn.config import load_config
    from lrcn.video_activity import format_activity, train_activity_run
    out_dir, result = train_activity_run(load_config(a.config, a.set), progress=not a.quiet)
    print(format_activity(result))
    print(f"wrote {out_dir / 'activity_test.json'}, {out_dir / 'confusion_test.png'} and TensorBoard logs in "
          f"{out_dir / 'tb'}")


# ----------------------------------------------------------------------------- decoding options

_DEST_PREFIX = "decode_"

# command-line flag -> (DecodeConfig field, argparse keyword arguments)
_DECODING_FLAGS: dict[str, tuple[str, dict]] = {
    "--strategy": ("strategy", dict(help="the decoding strategy; auto: chosen by --beam, --groups and --sample")),
    "--beam": ("beam_size", dict(type=int, metavar="K", help="beam size (1 = greedy)")),
    "--length-penalty": ("length_penalty", dict(help="rank finished captions by log-prob (none), average log-prob (avg) "
                              "or GNMT ((5+len)/6)^alpha (gnmt)")),
    "--alpha": ("alpha", dict(type=float, metavar="A", help="GNMT length penalty exponent")),
    "--groups": ("groups", dict(type=int, metavar="G", help="diverse beam search groups")),
    "--diversity": ("diversity_strength", dict(type=float, metavar="LAMBDA",
                    help="diverse beam search: Hamming penalty between groups")),
    "--min-len": ("min_len", dict(type=int, metavar="N", help="fewest words per caption")),
    "--max-len": ("max_len", dict(type=int, metavar="N", help="most words per caption")),
    "--block-ngram": ("block_ngram", dict(type=int, metavar="N",
                      help="forbid repeated n-grams of this size (0 = off)")),
    "--allow-unk": ("suppress_unk", dict(action="store_const", const=False,
                    help="allow <unk> in captions (suppressed by default)")),
    "--sample": ("sample", dict(action=argparse.BooleanOptionalAction,
                 help="sample captions instead of searching (--no-sample: search)")),
    "--temperature": ("temperature", dict(type=float, metavar="T", help="sampling temperature")),
    "--top-k": ("top_k", dict(type=int, metavar="K", help="sample among the K likeliest words (0 = all)")),
    "--top-p": ("top_p", dict(type=float, metavar="P", help="nucleus sampling mass (1 = off)")),
    "--n-best": ("n_best", dict(type=int, metavar="N", help="captions per input (samples when sampling)")),
    "--sample-seed": ("seed", dict(type=int, metavar="SEED", help="seed of the sampler, for reproducible samples")),
    "--rerank": ("rerank", dict(type=int, metavar="K", help="re-order the candidates by consensus CIDEr-D with the "
                 "captions of the K nearest training images (0 = off; lrcn.decoding.rerank)")),
}


# DecodeConfig field -> its names, read from the registries when a parser is built
_CHOICES: dict[str, Callable[[], list[str]]] = {
    "strategy": lambda: ["auto", *STRATEGIES],
    "length_penalty": lambda: list(LENGTH_PENALTIES),
}


def _users(option: str) -> str:
    """"; used by ..." the strategies that read a DecodeConfig field (lrcn.decoding.STRATEGIES' entries)."""
    users = "every strategy" if option in SHARED_OPTIONS else \
        ", ".join(s.name for s in STRATEGIES.values() if option in s.options)
    return f"; used by {users}" if users else ""


def add_decoding_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the decoding options (``--beam``, ``--sample``, ...) to ``parser``; read them back with
    ``decode_config_from_args(args, base)``. Options not given leave ``base`` unchanged."""
    defaults = DecodeConfig()
    group = parser.add_argument_group("decoding")
    for flag, (name, kwargs) in _DECODING_FLAGS.items():
        kwargs = dict(kwargs, **({"choices": _CHOICES[name]()} if name in _CHOICES else {}))
        if "action" not in kwargs:
            kwargs["help"] += f" (default: the config's decode.{name}, else {getattr(defaults, name)})"
        kwargs["help"] += _users(name)
        group.add_argument(flag, dest=_DEST_PREFIX + name, default=None, **kwargs)
    return parser


def decode_config_from_args(namespace: argparse.Namespace, base: DecodeConfig | None = None) -> DecodeConfig:
    """``base`` (default: the defaults) with the decoding options given on the command line. A
    strategy chosen there wins over ``base``'s: ``--beam``/``--groups``/``--sample`` choose as
    ``strategy: auto`` does (``--sample`` without ``--beam`` searches no beams, ``--beam``/``--groups``
    without ``--sample`` stop sampling) unless ``--strategy`` names one."""
    overrides = {f.name: value for f in dataclasses.fields(DecodeConfig)
                 if (value := getattr(namespace, _DEST_PREFIX + f.name, None)) is not None}
    flags = {"beam_size", "groups", "sample"} & overrides.keys()
    if flags and "strategy" not in overrides:
        overrides["strategy"] = "auto"
    if overrides.get("sample") and not {"beam_size", "groups"} & flags:
        overrides.update(beam_size=1, groups=1)
    if "sample" not in overrides and flags:
        overrides["sample"] = False
    return dataclasses.replace(base or DecodeConfig(), **overrides)


def run_decode_config(a: argparse.Namespace) -> DecodeConfig:
    """The run's ``decode:`` section with the decoding options given on the command line."""
    from lrcn.run import Run
    return decode_config_from_args(a, Run.open(a.run_dir).config().decode)


def build_parser() -> argparse.ArgumentParser:
    from lrcn.baselines import BASELINES
    from lrcn.metrics import add_score_arguments, run_score

    p = argparse.ArgumentParser(prog="lrcn", description="LRCN / Show-and-Tell image and video captioning")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make or prepare datasets").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("shapes", help="render the embedded shapes captioning dataset")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=2000, help="number of images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=128)
    s.set_defaults(func=cmd_data_shapes)
    s = data.add_parser("shapes-video", help="render the embedded shapes-video dataset (captions and activity labels)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=1000, help="number of clips")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=96, help="frame side in pixels")
    s.add_argument("--min-frames", type=int, default=8, help="fewest frames of a clip")
    s.add_argument("--max-frames", type=int, default=16, help="most frames of a clip")
    s.set_defaults(func=cmd_data_shapes_video)
    s = data.add_parser("prepare", help="convert a downloaded dataset into the split JSON `lrcn train` reads")
    s.add_argument("kind", help="coco, flickr8k, flickr30k, karpathy, msvd or msrvtt")
    s.add_argument("--root", required=True, help="the folder holding the downloaded dataset (see data/README.md)")
    s.add_argument("--out", required=True, help="output folder for the prepared split JSON")
    s.add_argument("--karpathy-json", help="a Karpathy split file (dataset_coco.json, ...) to use for the splits")
    s.add_argument("--no-restval", action="store_true", help="keep COCO's restval images out of train")
    s.set_defaults(func=cmd_data_prepare)

    s = sub.add_parser("train", help="train a captioner (one run folder per run)")
    s.add_argument("config", nargs="?", help="a YAML config, e.g. experiments/demo.yaml")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("extract", help="run the frozen encoder once over a dataset into the feature store")
    s.add_argument("config", help="the config whose data and encoder to use")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--split", nargs="+", default=["train", "val", "test"], help="splits to extract")
    s.add_argument("--grid", action="store_true", help="store the spatial grid [D, h, w] (per frame for video) instead of the pooled vector "
                   "(the same as --set encoder.features=grid)")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("evaluate", help="caption a split with a trained run and score it")
    s.add_argument("run_dir")
    s.add_argument("--split", default="test")
    s.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path")
    s.add_argument("--backend", default="fast", choices=["fast", "coco"], help="our scorers or pycocoevalcap's")
    s.add_argument("--json", help="write the corpus scores here")
    s.add_argument("--ensemble", nargs="+", metavar="RUN_DIR", help="average the next-word probabilities of "
                   "these runs (same data and vocabulary) with RUN_DIR's; results go into RUN_DIR")
    add_decoding_arguments(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("baseline", help="score a baseline (blind, nearest neighbour) on a split, beside a run")
    s.add_argument("run_dir", help="a run folder: its data, encoder features and training split are used")
    s.add_argument("--split", default="test")
    s.add_argument("--kind", default="nn", choices=sorted(BASELINES),
                   help="blind: one consensus caption for all; nn: that of the nearest training image(s)")
    s.add_argument("--k", type=int, default=1, help="nn: pool the captions of the k nearest training images")
    s.add_argument("--backend", default="fast", choices=["fast", "coco"], help="our scorers or pycocoevalcap's")
    s.add_argument("--json", help="write the corpus scores here")
    s.set_defaults(func=cmd_baseline)

    s = sub.add_parser("caption", help="caption images or folders of images (videos with a run trained on video)")
    s.add_argument("run_dir")
    s.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="images or folders of images; for a video run, video files, frame folders or folders of them")
    s.add_argument("--out", help="write captions.json and an index.html gallery here")
    s.add_argument("--json", help="write the captions as JSON here")
    s.add_argument("--batch-size", type=int, default=32)
    add_decoding_arguments(s)
    s.set_defaults(func=cmd_caption)

    s = sub.add_parser("score", help="score a COCO results file against COCO-format references")
    add_score_arguments(s)
    s.set_defaults(func=run_score)

    s = sub.add_parser("demo", help="train and evaluate on the embedded shapes data, offline, in minutes")
    s.add_argument("--out", default="demo", help="folder for the data and the run")
    s.add_argument("--json", help="write {blind, greedy, beam3} scores here (with --video also activity)")
    s.add_argument("--n", type=int, help="number of shapes images (default 2000) or, with --video, clips (default 1000)")
    s.add_argument("--video", action="store_true", help="the video path: shapes-video clips, a video captioner, "
                   "and LRCN activity recognition")
    s.add_argument("--no-activity", action="store_true", help="with --video: skip activity recognition")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("activity", help="train and evaluate LRCN activity recognition on clips with a 'label'")
    s.add_argument("config", help="a YAML config, e.g. experiments/activity_shapes_video.yaml")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.set_defaults(func=cmd_activity)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = args.func(args)
    except LrcnError as e:
        print(f"lrcn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
