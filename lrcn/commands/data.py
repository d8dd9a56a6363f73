"""`lrcn data shapes | shapes-video | prepare`: make the embedded datasets or convert a downloaded one
into the split JSON `lrcn train` reads."""

from __future__ import annotations

import argparse

from lrcn.data.prepare import prepare
from lrcn.data.shapes import generate_shapes
from lrcn.data.shapes_video import generate_shapes_video


def register(sub) -> None:
    data = sub.add_parser("data", help="make or prepare datasets").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("shapes", help="render the embedded shapes captioning dataset")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=2000, help="number of images")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=128)
    s.set_defaults(func=run_shapes)
    s = data.add_parser("shapes-video", help="render the embedded shapes-video dataset (captions and activity labels)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--n", type=int, default=1000, help="number of clips")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=96, help="frame side in pixels")
    s.add_argument("--min-frames", type=int, default=8, help="fewest frames of a clip")
    s.add_argument("--max-frames", type=int, default=16, help="most frames of a clip")
    s.set_defaults(func=run_shapes_video)
    s = data.add_parser("prepare", help="convert a downloaded dataset into the split JSON `lrcn train` reads")
    s.add_argument("kind", help="coco, flickr8k, flickr30k, karpathy, msvd or msrvtt")
    s.add_argument("--root", required=True, help="the folder holding the downloaded dataset (see data/README.md)")
    s.add_argument("--out", required=True, help="output folder for the prepared split JSON")
    s.add_argument("--karpathy-json", help="a Karpathy split file (dataset_coco.json, ...) to use for the splits")
    s.add_argument("--no-restval", action="store_true", help="keep COCO's restval images out of train")
    s.set_defaults(func=run_prepare)


def run_shapes(a: argparse.Namespace) -> None:
    path = generate_shapes(a.out, n=a.n, seed=a.seed, image_size=a.image_size)
    print(f"wrote {path}")


def run_shapes_video(a: argparse.Namespace) -> None:
    path = generate_shapes_video(a.out, n=a.n, seed=a.seed, frames=(a.min_frames, a.max_frames),
                                 image_size=a.image_size)
    print(f"wrote {path}")


def run_prepare(a: argparse.Namespace) -> None:
    path = prepare(a.kind, a.root, a.out, karpathy_json=a.karpathy_json, restval_to_train=not a.no_restval)
    print(f"wrote {path}; train with data.split_json={path}")
