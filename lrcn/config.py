"""Run configuration: YAML files with ``base:`` inheritance, ``--set key=value`` overrides, and
every rule on every section, checked in one pass before any data is read.

A config file may name a ``base:`` (a path relative to itself, or a list of them) whose values it
overrides key by key. :func:`load_config` builds the typed sections (lrcn.config_schema: unknown
keys and ill-typed values refused, ``decode:`` included) and then :func:`validate` checks the
values: ranges (:data:`RANGES`), names against the registries where they live
(:data:`CHOICES`: encoders, decoder kinds, losses, schedules, ...) and the rules that join
sections (:data:`RULES`). Every problem is reported at once, each naming its full dotted key and
what it may be. The resolved config is saved as ``config.yaml`` in every run folder.
"""

from __future__ import annotations

import functools
import math
import os
from collections import ChainMap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import torch
import yaml

from lrcn.config_schema import (  # noqa: F401  (the sections are part of this module's interface)
    VALIDATION_METRICS, Config, DataConfig, DecodeConfig, DecoderConfig, EncoderConfig, TrainConfig, from_dict,
)
from lrcn.data.features import MODALITIES
from lrcn.data.video import SAMPLERS
from lrcn.errors import ConfigError
from lrcn.io import write_text
from lrcn.models.encoders import ENCODERS, FEATURE_KINDS, feature_problems
from lrcn.models.registry import DECODERS, VIDEO_DECODERS, build_decoder
from lrcn.models.temporal import FRAME_DELTAS
from lrcn.train.losses import ADVANTAGES, LOSSES, PICKS, schedule_problems


# --------------------------------------------------------------------------- rules

@dataclass(frozen=True)
class Range:
    """Finite numbers from ``low`` to ``high`` (None: no upper bound), each end open or closed."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        return (math.isfinite(x) and (x > self.low if self.low_open else x >= self.low)
                and (self.high is None or (x < self.high if self.high_open else x <= self.high)))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_0, AT_LEAST_1, POSITIVE = Range(0), Range(1), Range(0, low_open=True)
RATE = Range(0, 1, low_open=True)       # learning rates: Adam moves each weight by ~lr a step, > 1 only diverges
FRACTION = Range(0, 1, high_open=True)  # dropout, label smoothing

# key -> the numbers it may hold (a None value, where the key allows one, is not checked)
RANGES: dict[str, Range] = {
    "data.min_word_count": AT_LEAST_1, "data.max_caption_len": AT_LEAST_1, "data.num_workers": AT_LEAST_0,
    "data.max_pixels": AT_LEAST_1, "data.num_frames": AT_LEAST_1, "data.fps": POSITIVE, "data.source_fps": POSITIVE,
    "data.train_views": AT_LEAST_0, "data.view_min_area": Range(0, 1, low_open=True),
    "encoder.image_size": Range(32), "encoder.attention_map": AT_LEAST_0, "encoder.trainable_blocks": AT_LEAST_0,
    "encoder.lr": RATE, "encoder.batch_size": AT_LEAST_1, "encoder.grid_size": AT_LEAST_0,
    "decoder.embed_dim": AT_LEAST_1, "decoder.hidden_dim": AT_LEAST_1, "decoder.num_layers": AT_LEAST_1,
    "decoder.dropout": FRACTION, "decoder.delta_gain": POSITIVE,
    "train.epochs": AT_LEAST_1, "train.batch_size": AT_LEAST_1, "train.lr": RATE, "train.lr_decay": RATE,
    "train.lr_decay_every": AT_LEAST_1, "train.weight_decay": AT_LEAST_0, "train.grad_clip": AT_LEAST_0,
    "train.label_smoothing": FRACTION, "train.word_dropout": FRACTION, "train.ema": FRACTION,
    "train.auxiliary_weight": AT_LEAST_0,
    "train.ss_start_epoch": AT_LEAST_0, "train.scst_samples": AT_LEAST_1, "train.scst_temperature": POSITIVE,
    "train.val_max_images": AT_LEAST_0, "train.patience": AT_LEAST_0, "train.checkpoint_every": AT_LEAST_0,
    "train.log_every": AT_LEAST_1,
}

# key -> the names it may hold: the registries themselves (read when a config is checked)
CHOICES: dict[str, Collection[str]] = {
    "data.modality": MODALITIES,
    "data.frame_sampling": SAMPLERS,
    "encoder.name": ENCODERS,
    "encoder.features": FEATURE_KINDS,
    "decoder.kind": ChainMap(DECODERS, VIDEO_DECODERS),
    "decoder.frame_deltas": FRAME_DELTAS,
    "train.loss": LOSSES,
    "train.ss_pick": PICKS,
    "train.scst_baseline": ADVANTAGES,
    "train.val_metric": VALIDATION_METRICS,
}


def value_of(config: Config, key: str) -> Any:
    """The value of a dotted key: ``value_of(config, "train.lr")`` is ``config.train.lr``."""
    return functools.reduce(getattr, key.split("."), config)


def _ranges(config: Config) -> list[str]:
    return [f"{key} must be {allowed} (got {value!r})" for key, allowed in RANGES.items()
            if (value := value_of(config, key)) is not None and value not in allowed]


def _names(config: Config) -> list[str]:
    return [f"{key} {value!r} is unknown; choose one of {', '.join(names)}" for key, names in CHOICES.items()
            if (value := value_of(config, key)) not in names]


def _fixed_layers(config: Config) -> list[str]:
    """decoder.num_layers against kinds whose depth is part of their definition (LRCN's, S2VT):
    asked of the kind's own builder, on a model of 4 units."""
    d = config.decoder
    if d.num_layers is None or d.num_layers < 1 or d.kind not in CHOICES["decoder.kind"]:
        return []
    try:
        build_decoder(d.kind, 4, 4, embed_dim=4, hidden_dim=4, dropout=0.0, num_layers=d.num_layers)
    except ConfigError as e:
        return [str(e)]
    return []


def _tied(config: Config) -> list[str]:
    d = config.decoder
    if d.tie_embeddings and d.embed_dim != d.hidden_dim:
        return [f"decoder.tie_embeddings shares the word embedding [V, embed_dim] with the output layer "
                f"[V, hidden_dim]: it needs decoder.embed_dim == decoder.hidden_dim (got {d.embed_dim} and "
                f"{d.hidden_dim})"]
    return []


def _frame_deltas(config: Config) -> list[str]:
    d, problems = config.decoder, []
    if d.frame_deltas != "off" and d.kind not in VIDEO_DECODERS:
        problems.append(f"decoder.frame_deltas={d.frame_deltas!r} needs a video decoder (decoder.kind s2vt or "
                        f"<mean|lstm|bilstm>+<image kind>); decoder.kind {d.kind!r} is an image decoder")
    if d.frame_deltas == "where" and not config.encoder.attention_map:
        problems.append("decoder.frame_deltas=where differences the attention map, but encoder.attention_map is 0; "
                        "set encoder.attention_map (e.g. 8) or use decoder.frame_deltas=all")
    return problems


def _attention_map(config: Config) -> list[str]:
    e = config.encoder
    if e.image_size is None or e.attention_map <= e.image_size // 2:
        return []
    return [f"encoder.attention_map={e.attention_map}: no feature grid of a {e.image_size}-pixel image is that "
            f"fine (the first block halves it); use at most {e.image_size // 2}, or a larger encoder.image_size"]


def _modality(config: Config) -> list[str]:
    """data.modality agrees with decoder.kind (video kinds read clips, the others images), and a video
    run keeps its encoder frozen: its per-frame features are extracted once into the store."""
    modality, kind, problems = config.data.modality, config.decoder.kind, []
    reads = "video" if kind in VIDEO_DECODERS else "image" if kind in DECODERS else modality
    if modality != reads:
        problems.append(f"decoder.kind={kind!r} captions {reads}s, but data.modality is {modality!r}; "
                        f"set data.modality: {reads} (or choose a decoder.kind for {modality}s)")
    if modality == "video" and config.encoder.trainable_blocks > 0:
        problems.append(f"encoder.trainable_blocks={config.encoder.trainable_blocks} with data.modality: video: "
                        f"fine-tuning the encoder on clips is not supported (frame features are extracted once); "
                        f"set encoder.trainable_blocks: 0")
    return problems


def _features(config: Config) -> list[str]:
    """What the encoder gives (lrcn.models.encoders.feature_problems; an unknown encoder.features is
    reported by the names check) and what reads it: concept detectors read images."""
    e = config.encoder
    problems = feature_problems(e.features, e.attention_map, e.flip_average, e.grid_size) \
        if e.features in FEATURE_KINDS else []
    if config.decoder.concepts and config.data.modality != "image":
        problems.append("decoder.concepts detects the words of an image; it needs data.modality: image")
    return problems


def _views(config: Config) -> list[str]:
    """Training views are crops of images whose features are extracted once."""
    d, problems = config.data, []
    if d.train_views and d.modality != "image":
        problems.append(f"data.train_views={d.train_views} crops images; with data.modality: {d.modality} "
                        f"set data.train_views: 0")
    if d.train_views and config.encoder.trainable_blocks > 0:
        problems.append(f"data.train_views={d.train_views} are extracted once by the frozen encoder; "
                        f"encoder.trainable_blocks={config.encoder.trainable_blocks} encodes the images at every "
                        f"step: set one of them to 0")
    return problems


def _frame_rate(config: Config) -> list[str]:
    d = config.data
    if d.frame_sampling == "fps" and d.fps is None:
        return ["data.frame_sampling=fps samples at a fixed rate: set data.fps (frames per second, > 0)"]
    return []


def _schedule(config: Config) -> list[str]:
    t = config.train
    return schedule_problems(t.scheduled_sampling, t.ss_k, t.ss_max_prob)


def _scst(config: Config) -> list[str]:
    t = config.train
    if t.loss == "scst" and t.scst_baseline == "mean" and t.scst_samples < 2:
        return [f"train.scst_samples={t.scst_samples} is too few: the 'mean' baseline (train.scst_baseline) "
                f"needs >= 2 samples per image"]
    return []


def _device(config: Config) -> list[str]:
    if config.train.device == "auto":
        return []
    try:
        torch.device(config.train.device)
    except RuntimeError:
        return [f"train.device {config.train.device!r} is not a device; use auto, cpu, cuda or cuda:N"]
    return []


# every check, each returning its problems; the decode: section checks itself as it is built
# (lrcn.decoding.DecodeConfig and its strategy's entry in lrcn.decoding.STRATEGIES)
RULES: list[Callable[[Config], list[str]]] = [
    _ranges, _names, _fixed_layers, _tied, _frame_deltas, _modality, _attention_map, _features, _views,
    _frame_rate, _schedule, _scst, _device,
]


def validate(config: Config) -> Config:
    """``config`` if every rule of every section holds, else a ConfigError listing each problem."""
    problems = [problem for rule in RULES for problem in rule(config)]
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return config


# --------------------------------------------------------------------------- YAML, bases, overrides

def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """A YAML mapping with its ``base:`` files merged underneath (safe loader, cycles refused)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config {path} inherits from itself through 'base'")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    bases = data.pop("base", None) or []
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = deep_merge(merged, read_yaml(path.parent / base, _seen + (path,)))
    return deep_merge(merged, data)


def parse_overrides(overrides: list[str]) -> dict:
    """``["train.lr=1e-3", "decoder.kind=lrcn_2f"]`` -> nested dict; values parsed as YAML scalars,
    except that only true and false are booleans (``decoder.frame_deltas=off`` is the word off)."""
    out: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()                                         # YAML 1.1's on/off/yes/no
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """The config of a YAML file (and its bases) with ``overrides``, typed and validated."""
    data = read_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(overrides or []))
    return validate(from_dict(Config, data))


def save_config(config: Config, path: str | os.PathLike) -> None:
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
