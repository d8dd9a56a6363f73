"""Options and output shared by several commands (the one module every command may import):
``--set KEY=VALUE``, the decoding options (``--beam``, ``--sample``, ...; one per DecodeConfig
field, their choices read from lrcn.decoding's registries) and the printed score table."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from lrcn.decoding import LENGTH_PENALTIES, RERANK_METRICS, SHARED_OPTIONS, STRATEGIES, DecodeConfig
from lrcn.io import write_json
from lrcn.metrics import Scores, format_table
from lrcn.run import Run


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a config key overridden on the command line."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")


def add_score_output(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--json`` of the commands that score a split (read back by ``print_scores``)."""
    parser.add_argument("--backend", default="fast", choices=["fast", "coco"], help="our scorers or pycocoevalcap's")
    parser.add_argument("--json", help="write the corpus scores here")


def print_scores(a: argparse.Namespace, name: str, scores: Scores) -> None:
    """The corpus scores as a table row ``name``, skipped metrics on stderr, and ``--json``."""
    print(format_table({name: scores.corpus}))
    for metric, reason in scores.skipped.items():
        print(f"skipped {metric}: {reason}", file=sys.stderr)
    if a.json:
        write_json(a.json, scores.corpus)


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
    "--rerank-metric": ("rerank_metric", dict(metavar="METRIC", help="how --rerank finds the nearest training "
                        "images: features (cosine of the encoder's) or captions (those whose captions best "
                        "match the query's, as predicted from its features)")),
}


# DecodeConfig field -> its names, read from the registries when a parser is built
_CHOICES: dict[str, Callable[[], list[str]]] = {
    "strategy": lambda: ["auto", *STRATEGIES],
    "length_penalty": lambda: list(LENGTH_PENALTIES),
    "rerank_metric": lambda: list(RERANK_METRICS),
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
    return decode_config_from_args(a, Run.open(a.run_dir).config().decode)
