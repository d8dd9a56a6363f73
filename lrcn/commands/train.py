"""`lrcn train CONFIG | --resume RUN_DIR`: train a captioner into a run folder (lrcn.train.loop)."""

from __future__ import annotations

import argparse

from lrcn.commands.options import add_set_argument
from lrcn.config import load_config
from lrcn.errors import LrcnError
from lrcn.train.loop import train


def register(sub) -> None:
    s = sub.add_parser("train", help="train a captioner (one run folder per run)")
    s.add_argument("config", nargs="?", help="a YAML config, e.g. experiments/demo.yaml")
    add_set_argument(s)
    s.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> None:
    if a.resume and (a.config or a.set):
        raise LrcnError("--resume continues a run with its saved config; do not pass a config or --set")
    if not a.resume and not a.config:
        raise LrcnError("lrcn train needs a CONFIG file (see experiments/) or --resume RUN_DIR")
    config = None if a.resume else load_config(a.config, a.set)     # refused here, before any data is read
    run_dir = train(config, resume=a.resume, progress=not a.quiet)
    print(f"run folder: {run_dir}")
