"""Where an attention decoder looked for each word of a caption, as pictures.

A decoder that offers ``attention_maps(features, words) -> [B, T, N]`` (Show, Attend and Tell)
weighs N = G*G image regions at every step. :func:`word_attention` reads a caption back through it
and gives the weights that produced each word as a [G, G] map; :func:`overlay` draws one map over
the image the model saw as a translucent heat map (relative: from the least to the most attended region); :func:`attention_strip` lays out a caption's
maps word by word (the notebook), :func:`write_attention` writes them as PNG thumbnails with their
weights for ``captions.json`` and the gallery of ``lrcn caption --out``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lrcn.io import atomic_path

ALPHA = 0.5                          # opacity of the heat map where the weight is highest
HEAT_LOW, HEAT_HIGH = np.array([255.0, 0.0, 0.0]), np.array([255.0, 255.0, 0.0])   # red -> yellow
THUMBNAIL = 96                       # side of a word's thumbnail in pixels
DIGITS = 4                           # decimals of the weights in captions.json


def model_view(image: Tensor, mean: Tensor, std: Tensor) -> Image.Image:
    """A normalised model input [3, S, S] back as the RGB picture the encoder saw (resized / cropped)."""
    pixels = (image.float().cpu() * std.cpu() + mean.cpu()).clamp(0, 1)              # [3, S, S] in 0..1
    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def heat(weights: np.ndarray | Tensor, size: tuple[int, int]) -> np.ndarray:
    """[G, G] weights -> [H, W] intensities in 0..1 for an image of ``size`` (W, H): scaled from the
    least attended region (0) to the most attended one (1), as the figures of Xu et al. show them
    (equal weights everywhere: 0), and upsampled bilinearly, each weight at the centre of its region."""
    w = np.asarray(weights, dtype=np.float32)
    low, high = float(w.min()), float(w.max())
    scaled = Image.fromarray((w - low) / (high - low) if high > low else np.zeros_like(w), mode="F")
    return np.clip(np.asarray(scaled.resize(size, Image.BILINEAR)), 0.0, 1.0)


def overlay(image: Image.Image, weights: np.ndarray | Tensor, alpha: float = ALPHA) -> Image.Image:
    """``image`` with the [G, G] attention ``weights`` (row-major regions of the whole image) as a
    translucent heat map: a pixel of intensity m (see :func:`heat`) becomes
    ``(1 - alpha*m) * pixel + alpha*m * colour(m)``, the colour going from red to yellow as m rises;
    where m = 0 the image is unchanged."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)                          # [H, W, 3]
    m = heat(weights, image.size)[..., None]                                          # [H, W, 1]
    colour = HEAT_LOW + m * (HEAT_HIGH - HEAT_LOW)
    out = (1 - alpha * m) * rgb + alpha * m * colour
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


@torch.inference_mode()
def word_attention(decoder, features: Tensor, captions: list[list[int]], bos: int, pad: int) -> list[Tensor]:
    """Per caption (word ids, without <start> / <end>) of each row of ``features`` [B, D, G, G], the
    decoder's attention while it produced each word, teacher-forced from <start>: [words, G, G]."""
    B, _, G, W = features.shape
    T = max((len(c) for c in captions), default=0)
    words = torch.full((B, max(T, 1)), pad, dtype=torch.long, device=features.device)
    words[:, 0] = bos
    for b, caption in enumerate(captions):                  # the word at t was produced by step t
        words[b, 1:len(caption)] = torch.tensor(caption[:-1], dtype=torch.long)
    maps = decoder.attention_maps(features, words).float().view(B, -1, G, W)         # [B, T, G, W]
    return [maps[b, :len(caption)].cpu() for b, caption in enumerate(captions)]


def attention_strip(image: Image.Image, words: list[str], maps: Tensor, size: int = THUMBNAIL) -> Image.Image:
    """The caption's words side by side, each over ``image`` with its attention ``maps`` [words, G, G]
    overlaid and the word written below (for notebooks; the gallery labels its thumbnails in HTML)."""
    label = 14
    base = image.convert("RGB").resize((size, size), Image.BILINEAR)
    strip = Image.new("RGB", (max(1, len(words)) * (size + 2), size + label), "white")
    draw = ImageDraw.Draw(strip)
    for k, (word, weights) in enumerate(zip(words, maps)):
        strip.paste(overlay(base, weights), (k * (size + 2), 0))
        draw.text((k * (size + 2) + 2, size + 1), word, fill="black")
    return strip


def thumbnail_stem(path: str | os.PathLike) -> str:
    """A file name stem for an image's thumbnails, stable across runs and distinct for distinct paths."""
    return hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def write_attention(out_dir: Path, source: str | os.PathLike, image: Image.Image, words: list[str],
                    maps: Tensor) -> list[dict]:
    """With ``out_dir``, one PNG per word under ``out_dir/attention/`` (``image`` with that word's map
    overlaid); returns the ``attention`` entries of captions.json: per word its ``word``, its
    ``weights`` ([G, G] rows, rounded, summing to 1) and the ``image`` relative to ``out_dir``."""
    entries = []
    base = image.convert("RGB").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR) if out_dir else None
    for k, (word, weights) in enumerate(zip(words, maps)):
        entry = {"word": word, "weights": [[round(float(w), DIGITS) for w in row] for row in weights]}
        if out_dir:
            entry["image"] = f"attention/{thumbnail_stem(source)}-{k:02d}.png"
            with atomic_path(out_dir / entry["image"]) as tmp:
                overlay(base, weights).save(tmp, format="PNG")
        entries.append(entry)
    return entries
