"""Which input normalisation and resize/crop fit the TF-converted EfficientNet-Lite0 weights?

Compares, side by side on the same images, mean top-1 probability and mean entropy (nats) of
the ImageNet softmax under each preprocessing. Higher confidence / lower entropy on natural
photos is the proxy (no labels); for skimage's chelsea (a cat) and coffee (a cup) the mass on
the right classes is printed too.

    python -m experiments.benchmarks.encoder_preprocessing [IMAGE_DIR] [--limit N]

IMAGE_DIR: a folder of photos (e.g. Flickr8k's Flicker8k_Dataset); skimage images are always used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import skimage.data
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from lrcn.models.encoders import IMAGENET_MEAN, IMAGENET_STD, build_encoder

NORMS = {"tf (x*255-127)/128": ((127 / 255,) * 3, (128 / 255,) * 3),
         "imagenet mean/std": (IMAGENET_MEAN, IMAGENET_STD)}
BICUBIC, BILINEAR = InterpolationMode.BICUBIC, InterpolationMode.BILINEAR


class TFCenterCrop:
    """TF EfficientNet eval: crop the central 224/256 of the shorter side, then resize to 224."""

    def __call__(self, im: Image.Image) -> Image.Image:
        side = round(min(im.size) * 224 / 256)
        return transforms.functional.resize(transforms.functional.center_crop(im, side), [224, 224],
                                            BICUBIC, antialias=True)


GEOMETRY = {
    "resize256+crop224 bicubic": [transforms.Resize(256, BICUBIC), transforms.CenterCrop(224)],
    "resize256+crop224 bilinear": [transforms.Resize(256, BILINEAR), transforms.CenterCrop(224)],
    "resize224+crop224 bicubic": [transforms.Resize(224, BICUBIC), transforms.CenterCrop(224)],
    "squash 224x224 bicubic": [transforms.Resize((224, 224), BICUBIC)],
    "tf crop 224/256 then resize": [TFCenterCrop()],
}
CAT = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
CUP = {"cup", "espresso", "coffee mug"}


def stats(model, images: list[Image.Image], geometry, mean, std) -> tuple[torch.Tensor, float, float]:
    tf = transforms.Compose([*geometry, transforms.ToTensor(), transforms.Normalize(mean, std)])
    x = torch.stack([tf(im) for im in images])
    with torch.no_grad():
        p = torch.cat([model.classify(b).softmax(-1) for b in x.split(32)])
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return p, p.max(-1).values.mean().item(), entropy.mean().item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image_dir", nargs="?")
    ap.add_argument("--limit", type=int, default=200)
    args = ap.parse_args()
    enc = build_encoder("efficientnet_lite0")
    cats = enc.categories
    sk = [Image.fromarray(getattr(skimage.data, n)()) for n in ("chelsea", "coffee", "astronaut")]
    photos = []
    if args.image_dir:
        paths = sorted(Path(args.image_dir).glob("*.jpg"))[: args.limit]
        photos = [Image.open(p).convert("RGB") for p in paths]
    print(f"{'geometry':28s} {'normalisation':20s} | chelsea cat p | coffee cup p | "
          f"astronaut top1 | skimage top1/H | photos(n={len(photos)}) top1/H")
    for gname, geometry in GEOMETRY.items():
        for nname, (mean, std) in NORMS.items():
            p, top1, h = stats(enc, sk, geometry, mean, std)
            cat = sum(p[0, cats.index(c)].item() for c in CAT)
            cup = sum(p[1, cats.index(c)].item() for c in CUP)
            astro = f"{cats[p[2].argmax()]}:{p[2].max():.2f}"
            line = (f"{gname:28s} {nname:20s} | {cat:13.3f} | {cup:12.3f} | {astro:14s} | "
                    f"{top1:.3f}/{h:.3f}")
            if photos:
                _, top1, h = stats(enc, photos, geometry, mean, std)
                line += f"      | {top1:.3f}/{h:.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
