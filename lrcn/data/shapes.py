"""The embedded "shapes" captioning dataset: procedurally rendered scenes of coloured shapes.

Each image holds one or two groups of identical objects (1-3 objects in all), drawn from
5 shapes x 6 colours x 2 sizes on a plain light background with a gentle gradient. With two groups, one
group lies above / below / left of / right of the other. Every image gets 5 distinct
reference captions from a small paraphrase grammar (:func:`describe`) that names sizes,
colours, shapes, counts and the relation, e.g. "two small red circles above a large blue
square". The dataset is written in the layout real datasets use (image files plus a
Karpathy split JSON), and the same ``seed`` always gives byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from lrcn.data.records import SPLITS, Sample, write_karpathy
from lrcn.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "star", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {   # saturated and far apart in RGB
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (35, 75, 220),
    "yellow": (240, 205, 0),
    "purple": (140, 45, 190),
    "orange": (250, 125, 0),
}
SIZES: dict[str, tuple[float, float]] = {      # object side as a fraction of the image side
    "small": (0.14, 0.17),
    "large": (0.29, 0.33),
}
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
# relation of group 0 to group 1 -> (its inverse, the words used in captions)
RELATIONS: dict[str, tuple[str, str]] = {
    "above": ("below", "above"),
    "below": ("above", "below"),
    "left of": ("right of", "to the left of"),
    "right of": ("left of", "to the right of"),
}
# objects per group, and how often each layout is drawn
LAYOUTS: dict[tuple[int, ...], float] = {(1,): 0.1, (2,): 0.1, (3,): 0.1, (1, 1): 0.35, (2, 1): 0.175, (1, 2): 0.175}
SUPERSAMPLE = 4      # shapes are drawn at 4x resolution and box-filtered down (anti-aliasing)
MARGIN = 0.03        # free border, as a fraction of the image side


@dataclass(frozen=True)
class Group:
    """``count`` identical objects."""

    count: int
    size: str
    colour: str
    shape: str


def noun_phrase(group: Group) -> str:
    """ "a small red circle", "two large blue squares"."""
    noun = group.shape if group.count == 1 else group.shape + "s"
    return f"{COUNT_WORDS[group.count]} {group.size} {group.colour} {noun}"


def describe(groups: Sequence[Group], relation: str | None = None) -> list[str]:
    """Five distinct captions of one group, or of two groups where ``groups[0] relation groups[1]``."""
    if len(groups) == 1:
        a = noun_phrase(groups[0])
        be = "is" if groups[0].count == 1 else "are"
        return [a, f"there {be} {a}", f"a picture of {a}", f"an image of {a}", f"{a} on a plain background"]
    if len(groups) != 2 or relation not in RELATIONS:
        raise ValueError(f"describe needs one group, or two groups and a relation in {list(RELATIONS)}")
    a, b = noun_phrase(groups[0]), noun_phrase(groups[1])
    inverse = RELATIONS[relation][0]
    forward = f"{a} {RELATIONS[relation][1]} {b}"
    backward = f"{b} {RELATIONS[inverse][1]} {a}"
    be_a = "is" if groups[0].count == 1 else "are"
    be_b = "is" if groups[1].count == 1 else "are"
    return [forward, backward, f"there {be_a} {forward}", f"a picture of {forward}", f"there {be_b} {backward}"]


def groups_of(objects: Sequence[dict]) -> list[Group]:
    """The groups of a scene's object list (as stored in the sample's ``meta["objects"]``)."""
    groups: dict[int, list[dict]] = {}
    for obj in objects:
        groups.setdefault(obj["group"], []).append(obj)
    return [Group(len(objs), objs[0]["size"], objs[0]["colour"], objs[0]["shape"])
            for _, objs in sorted(groups.items())]


def shape_outline(shape: str, cx: float, cy: float, d: float, angle: float = 0.0) -> list[tuple[float, float]]:
    """Polygon vertices of ``shape`` centred at (cx, cy), fitting a d x d box when ``angle`` is 0.

    ``angle`` turns the shape clockwise on screen, in degrees. Circles are 64-gons.
    """
    r = d / 2
    if shape == "circle":
        angles, radii, dy = np.arange(64) * (360 / 64), np.full(64, r), 0.0
    elif shape == "square":
        angles, radii, dy = np.array([45.0, 135.0, 225.0, 315.0]), np.full(4, 0.86 * r * np.sqrt(2)), 0.0
    elif shape == "diamond":
        angles, radii, dy = np.array([0.0, 90.0, 180.0, 270.0]), np.full(4, r), 0.0
    elif shape == "triangle":   # equilateral, pointing up, width d, centred in the box
        angles, radii, dy = np.array([0.0, 120.0, 240.0]), np.full(3, d / np.sqrt(3)), (d / np.sqrt(3) - 0.866 * d / 2)
    elif shape == "star":       # five points, one up
        angles = np.arange(10) * 36.0
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        dy = r - (r + r * np.cos(np.radians(36))) / 2
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    theta = np.radians(angles + angle)   # 0 degrees = straight up, clockwise on screen
    xs = cx + radii * np.sin(theta)
    ys = cy + dy - radii * np.cos(theta)
    return list(zip(xs.tolist(), ys.tolist()))


def background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A plain light background with a gentle lighting gradient in a random direction, uint8 [S, S, 3]."""
    base = (rng.integers(200, 236) + rng.integers(-8, 9, size=3)).astype(np.float32)   # [3]
    theta, amp = rng.uniform(0, 2 * np.pi), rng.uniform(4, 14)
    t = np.linspace(-amp, amp, image_size, dtype=np.float32)
    ramp = np.float32(np.cos(theta)) * t[None, :] + np.float32(np.sin(theta)) * t[:, None]   # [S, S]
    return np.clip(np.rint(ramp[..., None] + base), 0, 255).astype(np.uint8)


def draw_objects(base: np.ndarray, objects: Sequence[dict]) -> np.ndarray:
    """``base`` [S, S, 3] uint8 with each object painted over it (anti-aliased); returns a new array.

    Each object is a dict with ``shape``, ``colour``, ``centre`` (x, y), ``side`` and optional ``angle``.
    """
    k = SUPERSAMPLE
    height, width = base.shape[:2]
    out = base.astype(np.float32)
    for obj in objects:
        (cx, cy), d = obj["centre"], obj["side"]
        points = np.array(shape_outline(obj["shape"], cx, cy, d, obj.get("angle", 0.0)))   # [P, 2] (x, y)
        x0, y0 = np.floor(points.min(0)).astype(int).clip(0, (width, height))
        x1, y1 = np.ceil(points.max(0)).astype(int).clip(0, (width, height))
        if x1 <= x0 or y1 <= y0:
            continue
        # coverage of each pixel of the object's box, from a k-times finer drawing
        mask = Image.new("L", ((x1 - x0) * k, (y1 - y0) * k), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in ((points - (x0, y0)) * k).tolist()], fill=255)
        alpha = np.asarray(mask.reduce(k), dtype=np.float32)[..., None] / 255      # [h, w, 1]
        patch = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = patch * (1 - alpha) + alpha * np.array(COLOURS[obj["colour"]], dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _place_groups(rng: np.random.Generator, groups: Sequence[Group], relation: str | None,
                  sides: Sequence[int], s: int) -> list[list[tuple[int, int]]]:
    """Top-left corners of every object, per group, so that nothing overlaps and the relation holds."""
    m = max(1, round(MARGIN * s))
    if relation is None:   # one group: scattered anywhere, never touching
        g, d = groups[0], sides[0]
        gap = max(2, round(0.04 * s))
        for _ in range(10_000):
            corners = [tuple(int(v) for v in rng.integers(m, s - m - d + 1, size=2)) for _ in range(g.count)]
            if all(max(abs(ax - bx), abs(ay - by)) >= d + gap
                   for i, (ax, ay) in enumerate(corners) for bx, by in corners[:i]):
                return [corners]
        raise RuntimeError(f"could not place {g.count} objects of side {d} in a {s}px image")
    # Two groups: each one a row (vertical relation) or a column (horizontal relation) of
    # objects, the two stacked along the relation's axis with a clear gap between them.
    vertical = relation in ("above", "below")
    first = 0 if relation in ("above", "left of") else 1            # the group on top / on the left
    inner = [round(s * rng.uniform(0.03, 0.06)) for _ in groups]
    lengths = [g.count * d + (g.count - 1) * gi for g, d, gi in zip(groups, sides, inner)]
    # across the relation axis: a shared centre line, each group jittered off it
    half = max(lengths) / 2
    centre = rng.uniform(m + half, s - m - half)
    starts_across = []
    for length in lengths:
        c = np.clip(centre + rng.uniform(-0.06, 0.06) * s, m + length / 2, s - m - length / 2)
        starts_across.append(int(round(c - length / 2)))
    # along the relation axis: first group, gap, second group
    order = (first, 1 - first)
    thick = [sides[i] for i in order]
    min_gap = round(0.08 * s)
    free = s - 2 * m - sum(thick)
    gap = int(rng.integers(min_gap, free + 1))
    start = int(rng.integers(m, s - m - sum(thick) - gap + 1))
    starts_along = {order[0]: start, order[1]: start + thick[0] + gap}
    placed = []
    for i, (g, d, gi) in enumerate(zip(groups, sides, inner)):
        across = [starts_across[i] + j * (d + gi) for j in range(g.count)]
        placed.append([(a, starts_along[i]) if vertical else (starts_along[i], a) for a in across])
    return placed


def sample_scene(rng: np.random.Generator, image_size: int) -> tuple[list[dict], str | None]:
    """A random scene: its objects (shape, colour, size, group, bbox [x0, y0, x1, y1)) and relation."""
    layouts = list(LAYOUTS)
    counts = layouts[rng.choice(len(layouts), p=list(LAYOUTS.values()))]
    groups: list[Group] = []
    while len(groups) < len(counts):
        g = Group(counts[len(groups)], str(rng.choice(list(SIZES))), str(rng.choice(list(COLOURS))),
                  str(rng.choice(SHAPES)))
        if all((g.size, g.colour, g.shape) != (h.size, h.colour, h.shape) for h in groups):
            groups.append(g)
    relation = str(rng.choice(list(RELATIONS))) if len(groups) == 2 else None
    sides = [int(round(image_size * rng.uniform(*SIZES[g.size]))) for g in groups]
    corners = _place_groups(rng, groups, relation, sides, image_size)
    objects = []
    for i, (g, d) in enumerate(zip(groups, sides)):
        for x, y in corners[i]:
            objects.append({"shape": g.shape, "colour": g.colour, "size": g.size, "group": i,
                            "bbox": [x, y, x + d, y + d]})
    return objects, relation


def render_scene(rng: np.random.Generator, objects: Sequence[dict], image_size: int) -> Image.Image:
    """The image of a scene: its objects on a fresh background."""
    drawn = [{"shape": o["shape"], "colour": o["colour"], "side": o["bbox"][2] - o["bbox"][0],
              "centre": ((o["bbox"][0] + o["bbox"][2]) / 2, (o["bbox"][1] + o["bbox"][3]) / 2)} for o in objects]
    return Image.fromarray(draw_objects(background(rng, image_size), drawn))


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``n`` items go to train / val / test (largest remainders get the leftovers)."""
    if len(fractions) != len(SPLITS) or any(not (f >= 0) for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split_fractions {tuple(fractions)} must be three non-negative numbers "
                          f"(train, val, test) that sum to 1, e.g. (0.8, 0.1, 0.1)")
    exact = [f * n for f in fractions]
    counts = [int(np.floor(e)) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[: n - sum(counts)]:
        counts[i] += 1
    return counts


def assign_splits(n: int, fractions: Sequence[float], seed: int) -> list[str]:
    """A split name per item, shuffled by ``seed``."""
    names = np.repeat(np.array(SPLITS), split_counts(n, fractions))
    out = np.empty(n, dtype=object)
    out[np.random.default_rng([seed, 1, 0]).permutation(n)] = names
    return [str(x) for x in out]


def check_generator_args(n: int, seed: int, image_size: int, min_size: int) -> None:
    """Refuse arguments a generator cannot honour, naming the argument."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n={n!r}: the number of items to generate must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r}: the seed must be a non-negative integer")
    if (isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
            or not min_size <= image_size <= 1024):
        raise ConfigError(f"image_size={image_size!r}: must be an integer between {min_size} and 1024 pixels")


def generate_shapes(out_dir: str | os.PathLike, n: int, seed: int = 0, image_size: int = 128,
                    split_fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Path:
    """Render ``n`` scenes to ``OUT/images/shapes_00000.png ...`` and ``OUT/dataset_shapes.json``.

    Returns the path of the Karpathy split JSON. Each image's scene (objects and relation) is
    in its entry's ``objects`` / ``relation`` keys. Image ``i`` depends only on ``seed`` and ``i``;
    the splits depend on ``seed`` and ``n``.
    """
    check_generator_args(n, seed, image_size, 48)
    splits = assign_splits(n, split_fractions, seed)
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        objects, relation = sample_scene(rng, image_size)
        path = image_dir / f"shapes_{i:05d}.png"
        render_scene(rng, objects, image_size).save(path, format="PNG")
        samples.append(Sample(path.stem, path, splits[i], describe(groups_of(objects), relation),
                              {"objects": objects, "relation": relation}))
    json_path = out_dir / "dataset_shapes.json"
    write_karpathy(json_path, "shapes", samples, image_dir)   # written last and atomically
    return json_path
