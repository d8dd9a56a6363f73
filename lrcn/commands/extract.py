"""`lrcn extract CONFIG`: run the frozen encoder once over a dataset's splits into the feature store
(images or clips per data.modality: the stores `lrcn train` reads), and over the training views'
random crops when the config has data.train_views."""

from __future__ import annotations

import argparse

from lrcn.commands.options import add_set_argument
from lrcn.config import load_config
from lrcn.data.loaders import extract_splits
from lrcn.models.factory import config_encoder
from lrcn.run import resolve_device
from lrcn.train import distributed


def register(sub) -> None:
    s = sub.add_parser("extract", help="run the frozen encoder once over a dataset into the feature store")
    s.add_argument("config", help="the config whose data and encoder to use")
    add_set_argument(s)
    s.add_argument("--split", nargs="+", default=["train", "val", "test"], help="splits to extract")
    s.add_argument("--grid", action="store_true", help="store the spatial grid [D, h, w] (per frame for video) instead of the pooled vector "
                   "(the same as --set encoder.features=grid)")
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> None:
    config = load_config(a.config, a.set + (["encoder.features=grid"] if a.grid else []))
    encoder = config_encoder(config)             # images or clips per data.modality: the stores train reads
    device = resolve_device(config.train.device)
    dist = distributed.setup(device)
    stores = extract_splits(config, encoder, tuple(a.split), device=dist.device(device), progress=not a.quiet and dist.main, dist=dist)
    if dist.main:
        for name, directory in stores.items():
            print(f"{name}: {directory}")
