"""The config's typed sections: one dataclass per section, built from plain dicts.

Types only: unknown keys and ill-typed values are refused with the key's full dotted name. The
rules on values (ranges, names, how sections fit together) are :func:`lrcn.config.validate`'s,
which :func:`lrcn.config.load_config` runs. This module imports no model, loss or data code, so
that those can name the sections they read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from lrcn.decoding.search import DecodeConfig
from lrcn.errors import ConfigError

# the metrics validation scores (lrcn.train.loop.validate), any of which train.val_metric may name
VALIDATION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")


@dataclass
class DataConfig:
    split_json: str = ""                 # a Karpathy split JSON (written by `lrcn data prepare/shapes`)
    modality: str = "image"              # image | video: each sample is an image, or a clip of num_frames frames
    image_root: str | None = None        # default: the JSON's "image_root" key, else its folder
    feature_dir: str | None = None       # feature store; default: features/ beside split_json
    restval_to_train: bool = True
    min_word_count: int = 1
    max_caption_len: int = 16            # words, without <start>/<end>
    num_workers: int = 2                 # DataLoader workers decoding images
    max_pixels: int = 89_478_485         # images larger than this are refused (decompression bombs)
    num_frames: int = 16                 # video: frames sampled per clip
    frame_sampling: str = "uniform"      # video: uniform (T equal segments) | fps
    fps: float | None = None             # video: frames per second to sample with frame_sampling=fps
    source_fps: float | None = None      # video: frame rate of frame folders (files carry their own)
    train_views: int = 0                 # images: K > 0 random crops of each training image, extracted once;
                                         # each epoch reads one of its 1 + K views (lrcn.data.loaders.cached_views)
    view_min_area: float = 0.5           # ... each crop covers this share of the image or more


@dataclass
class EncoderConfig:
    name: str = "efficientnet_lite0"
    pretrained: bool = True
    weights_path: str | None = None      # a local weights file instead of a download
    image_size: int | None = None        # input side; None: the backbone's own (224 for most)
    crop: bool = True                    # resize + centre crop as in ImageNet; False: squash the whole image
    attention_map: int = 0               # A > 0: append an A x A spatial attention map (where things are)
    flip_average: bool = False           # features: the mean of the image's and its mirror image's
    features: str = "pooled"             # pooled: one vector per image | grid: one per region (attention decoders)
    grid_size: int = 0                   # grid: average-pool it to G x G regions (0: the backbone's own grid)
    trainable_blocks: int = 0            # 0: frozen, features cached once; N: fine-tune the last N blocks
    lr: float = 1e-5                     # learning rate of the fine-tuned blocks
    batch_size: int = 64                 # images per forward when extracting features


@dataclass
class DecoderConfig:
    kind: str = "show_and_tell"          # show_and_tell | init_state | lrcn_1u | lrcn_2u | lrcn_2f (image);
                                         # s2vt | <mean|lstm|bilstm>+<image kind> (video)
    embed_dim: int = 512
    hidden_dim: int = 512
    num_layers: int | None = None        # None: the kind's own (1 for show_and_tell; fixed for LRCN kinds)
    dropout: float = 0.5
    frame_deltas: str = "off"            # video: off | where | all: append each frame's change since the last
                                         # (of the attention map, or of the whole feature): motion
    delta_gain: float = 1.0              # video: ... times this (lrcn.models.temporal.FrameDeltas)
    concepts: bool = False               # images: the decoder reads predicted words [V] (lrcn.models.concepts)
    tie_embeddings: bool = False         # the output layer's weights are the word embedding's (Press & Wolf,
                                         # 2017); needs embed_dim == hidden_dim


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 4e-4
    lr_decay: float = 1.0                # multiply the learning rate by this ...
    lr_decay_every: int = 1              # ... every this many epochs
    weight_decay: float = 0.0
    grad_clip: float = 5.0               # max global gradient norm (0: off)
    ema: float = 0.0                     # > 0: validate and keep an exponential moving average of the decoder's
                                         # weights with this decay per step (e.g. 0.99); 0: the weights themselves
    loss: str = "xe"                     # a name in lrcn.train.losses.LOSSES
    label_smoothing: float = 0.0
    word_dropout: float = 0.0            # xe: each input word after <start> is <unk> with this probability
    auxiliary_weight: float = 1.0        # xe: weight of the decoder's own auxiliary loss (decoder.concepts: its detectors')
    scheduled_sampling: str = "off"      # xe: off | linear | exponential | inverse_sigmoid (Bengio et al. 2015):
    ss_k: float = 0.05                   # ... p = k*epoch | 1 - k**epoch (0<k<1) | 1 - k/(k+exp(epoch/k)) (k>=1)
    ss_max_prob: float = 0.25            # ... never feed the model's own word more often than this
    ss_start_epoch: float = 0.0          # ... teacher forcing only before this epoch
    ss_pick: str = "sample"              # ... the model's word: sample (from its distribution) | argmax
    scst_samples: int = 5                # scst: captions sampled per image
    scst_baseline: str = "greedy"        # scst: greedy (the greedy caption's reward) | mean (of the other samples)
    scst_temperature: float = 1.0        # scst: sampling temperature (< 1: samples nearer the greedy caption)
    seed: int = 0
    val_metric: str = "CIDEr"            # selects best.pt: one of VALIDATION_METRICS
    val_max_images: int = 0              # 0: the whole validation split
    patience: int = 0                    # stop after this many epochs without improvement (0: never)
    checkpoint_every: int = 0            # also write last.pt every N steps (0: at epoch ends only)
    device: str = "auto"                 # auto | cpu | cuda | cuda:1 ...
    bf16: bool = False                   # bf16 autocast (on CUDA, or CPUs that support it)
    log_every: int = 50                  # steps between TensorBoard scalars
    runs_dir: str = "runs"
    init_from: str | None = None         # a run folder whose vocabulary and best weights start this run


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(beam_size=3, max_len=20))

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "decode": self.decode.to_dict()}


# --------------------------------------------------------------------------- building from dicts

def _check_value(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` coerced to ``annotation`` (int -> float only), or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, key)
            except ConfigError:
                pass
        raise ConfigError(f"config key {key!r}: {value!r} is not a {annotation}")
    if annotation is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads "1e-3" as a string
        except ValueError:
            pass
    if annotation in (int, float) and isinstance(value, bool):
        raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
    if annotation is str and isinstance(value, bool):     # YAML 1.1 reads an unquoted off / no / on as a boolean
        raise ConfigError(f"config key {key!r}: expected a word, got the boolean {value!r}; "
                          f"quote it in YAML files (e.g. 'off')")
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"config key {key!r}: expected {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts, refusing unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '(top level)'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = prefix + key
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; known keys here: {', '.join(sorted(names))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, full + ".")
        else:
            kwargs[key] = _check_value(value, hint, full)
    return cls(**kwargs)
