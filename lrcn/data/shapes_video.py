"""The embedded "shapes video" dataset: short clips of coloured shapes that move, grow, shrink,
rotate or bounce, for activity recognition (one label per clip) and video captioning.

A clip shows one or two objects on a plain background. The first object is always the larger
one (in every frame) and its motion is the clip's activity label; a second, smaller object, if
any, does something else. Each clip gets 5 distinct captions naming the objects and their
motions ("a red square moves to the left while a blue circle grows"). Labels come in
time-reversed pairs (left/right, up/down, growing/shrinking): a clip played backwards is
exactly a clip of the paired label (:func:`reverse_clip`), so a single frame or a bag of
shuffled frames cannot tell them apart; only the order of the frames can.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from lrcn.data.records import Sample, write_karpathy
from lrcn.data.shapes import COLOURS, assign_splits, background, check_generator_args, draw_objects, shape_outline
from lrcn.errors import ConfigError

SHAPES = ("circle", "square", "triangle", "star")   # no diamond: a turning square passes through one
LABELS = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking", "rotating", "bouncing")
REVERSED = {"moving left": "moving right", "moving right": "moving left", "moving up": "moving down",
            "moving down": "moving up", "growing": "shrinking", "shrinking": "growing",
            "rotating": "rotating", "bouncing": "bouncing"}
# per label: three present-tense verb phrases, then the -ing form
VERBS: dict[str, tuple[str, str, str, str]] = {
    "moving left": ("moves to the left", "moves left", "slides to the left", "moving left"),
    "moving right": ("moves to the right", "moves right", "slides to the right", "moving right"),
    "moving up": ("moves up", "goes up", "rises", "moving up"),
    "moving down": ("moves down", "goes down", "sinks", "moving down"),
    "growing": ("grows", "gets bigger", "becomes bigger", "growing"),
    "shrinking": ("shrinks", "gets smaller", "becomes smaller", "shrinking"),
    "rotating": ("rotates", "spins", "turns around", "rotating"),
    "bouncing": ("bounces", "bounces up and down", "hops", "bouncing"),
}
# Object sizes are diameters of the circle of equal area, as fractions of the clip side; the
# main object is always larger than the other, whatever the two shapes.
SIZES = {"main": (0.24, 0.32), "other": (0.13, 0.17)}
GROWTH = 1.5                                             # size ratio of growing / shrinking objects
SIZES_CHANGING = {"main": (0.21, 0.25), "other": (0.11, 0.125)}   # the smaller end, times GROWTH
TRAVEL = {"main": (0.28, 0.40), "other": (0.25, 0.40)}  # distance moved, fraction of the clip side
BOUNCE_HEIGHT = (0.20, 0.30)
TURN = (0.35, 0.5)                 # turn, as a fraction of the shape's rotational symmetry angle
SYMMETRY_DEGREES = {"square": 90.0, "triangle": 120.0, "star": 72.0}   # turning by this looks like no turn
MARGIN = 0.03


def _area(points: list[tuple[float, float]]) -> float:
    x, y = np.array(points).T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


# box side per unit of equal-area diameter: a star's box is wider than a circle's of the same area
SIDE_PER_SIZE = {x: float(np.sqrt(np.pi / 4 / _area(shape_outline(x, 0, 0, 1.0)))) for x in SHAPES}


@dataclass(frozen=True)
class MovingObject:
    """One object's motion: (cx, cy, side, angle) goes linearly from ``start`` to ``end``, plus
    ``hops`` bounces of height ``hop_height`` (pixels) that lift it off its path."""

    shape: str
    colour: str
    motion: str                                  # one of LABELS
    start: tuple[float, float, float, float]
    end: tuple[float, float, float, float]
    hop_height: float = 0.0
    hops: int = 0

    def at(self, t: float) -> tuple[float, float, float, float]:
        """(cx, cy, side, angle) at time ``t`` in [0, 1]."""
        cx, cy, side, angle = (a + (b - a) * t for a, b in zip(self.start, self.end))
        cy -= self.hop_height * abs(np.sin(np.pi * self.hops * t))
        return cx, cy, side, angle

    def moved(self, dx: float, dy: float) -> "MovingObject":
        return replace(self, start=(self.start[0] + dx, self.start[1] + dy, *self.start[2:]),
                       end=(self.end[0] + dx, self.end[1] + dy, *self.end[2:]))


@dataclass(frozen=True)
class Clip:
    """A clip to render: its objects (the labelled one first), frame count and background [S, S, 3]."""

    objects: tuple[MovingObject, ...]
    num_frames: int
    background: np.ndarray = field(compare=False)

    @property
    def label(self) -> str:
        return self.objects[0].motion

    def times(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.num_frames)


def reverse_clip(clip: Clip) -> Clip:
    """The same clip played backwards: each object's motion becomes its time-reversed label."""
    return replace(clip, objects=tuple(replace(o, start=o.end, end=o.start, motion=REVERSED[o.motion])
                                       for o in clip.objects))


def subject(obj: MovingObject, article: bool = True) -> str:
    """ "a red square", "an orange star" (or "red square" without the article)."""
    words = f"{obj.colour} {obj.shape}"
    if not article:
        return words
    return ("an " if words[0] in "aeiou" else "a ") + words


def describe_clip(objects: Sequence[MovingObject]) -> list[str]:
    """Five distinct captions naming each object and its motion, the labelled object first."""
    a = objects[0]
    v = VERBS[a.motion]
    if len(objects) == 1:
        return [f"{subject(a)} {v[0]}", f"{subject(a)} {v[1]}", f"{subject(a)} is {v[3]}",
                f"the {subject(a, False)} {v[2]}", f"there is {subject(a)} {v[3]}"]
    b = objects[1]
    w = VERBS[b.motion]
    return [f"{subject(a)} {v[0]} while {subject(b)} {w[0]}",
            f"{subject(a)} {v[1]} and {subject(b)} {w[1]}",
            f"{subject(b)} {w[0]} while {subject(a)} {v[0]}",
            f"the {subject(a, False)} {v[2]} and the {subject(b, False)} {w[2]}",
            f"{subject(a)} is {v[3]} while {subject(b)} is {w[3]}"]


_MOTION_PHRASES = {phrase: label for label, phrases in VERBS.items() for phrase in phrases}
_MOTION_RE = re.compile(r"\b(" + "|".join(map(re.escape, sorted(_MOTION_PHRASES, key=len, reverse=True))) + r")\b")


def named_motions(caption: str) -> list[str]:
    """The labels of the motion phrases in ``caption``, in order: "a red square moves left while a
    blue circle spins" -> ["moving left", "rotating"]. Scores whether a captioner names motions."""
    return [_MOTION_PHRASES[m] for m in _MOTION_RE.findall(caption.lower())]


def _sample_motion(rng: np.random.Generator, role: str, motion: str, colour: str, s: int) -> MovingObject:
    """An object doing ``motion``, with its path starting near the origin (placed later)."""
    shapes = [x for x in SHAPES if not (motion == "rotating" and x == "circle")]   # a turning circle looks still
    shape = str(rng.choice(shapes))
    unit = s * SIDE_PER_SIZE[shape]
    if motion in ("growing", "shrinking"):
        small = unit * rng.uniform(*SIZES_CHANGING[role])
        start, end = (0.0, 0.0, small, 0.0), (0.0, 0.0, small * GROWTH, 0.0)
        return MovingObject(shape, colour, motion, *((start, end) if motion == "growing" else (end, start)))
    side = unit * rng.uniform(*SIZES[role])
    still = (0.0, 0.0, side, 0.0)
    if motion.startswith("moving"):
        d = s * rng.uniform(*TRAVEL[role])
        step = {"moving left": (-d, 0.0), "moving right": (d, 0.0), "moving up": (0.0, -d), "moving down": (0.0, d)}
        dx, dy = step[motion]
        return MovingObject(shape, colour, motion, still, (dx, dy, side, 0.0))
    if motion == "rotating":
        a0 = rng.uniform(0, 360)
        turn = SYMMETRY_DEGREES[shape] * rng.uniform(*TURN) * rng.choice([-1, 1])
        return MovingObject(shape, colour, motion, (0.0, 0.0, side, a0), (0.0, 0.0, side, a0 + turn))
    if motion == "bouncing":
        height, hops = s * rng.uniform(*BOUNCE_HEIGHT), int(rng.integers(1, 3))
        return MovingObject(shape, colour, motion, still, still, height, hops)
    raise ValueError(f"unknown motion {motion!r}; expected one of {LABELS}")


def swept_box(obj: MovingObject, times: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] covering the object in every frame."""
    points = np.concatenate([shape_outline(obj.shape, *obj.at(t)) for t in times])   # [P, 2]
    return np.concatenate([points.min(0), points.max(0)])


def _place(rng: np.random.Generator, obj: MovingObject, times: np.ndarray, s: int,
           avoid: np.ndarray | None) -> MovingObject | None:
    """``obj`` shifted to a random spot where its whole path stays inside the clip and clear of ``avoid``."""
    box = swept_box(obj, times)
    m = MARGIN * s
    lo, hi = m - box[:2], s - m - box[2:]          # allowed shift (dx, dy)
    if np.any(hi < lo):
        return None
    shifts = rng.uniform(lo, hi, size=(100, 2))     # candidates, the first that fits wins
    if avoid is not None:
        moved = box + np.concatenate([shifts, shifts], axis=1)   # [100, 4]
        gap = 0.04 * s
        clear = ((moved[:, 2] + gap <= avoid[0]) | (avoid[2] + gap <= moved[:, 0])
                 | (moved[:, 3] + gap <= avoid[1]) | (avoid[3] + gap <= moved[:, 1]))
        shifts = shifts[clear]
    if len(shifts) == 0:
        return None
    return obj.moved(*shifts[0].tolist())


def sample_clip(rng: np.random.Generator, frames: tuple[int, int], image_size: int) -> Clip:
    """A random clip: 1-2 objects whose paths never touch, the larger one's motion the label."""
    num_frames = int(rng.integers(frames[0], frames[1] + 1))
    times = np.linspace(0.0, 1.0, num_frames)
    bg = background(rng, image_size)
    colours = [str(c) for c in rng.choice(list(COLOURS), size=2, replace=False)]
    motions = [str(m) for m in rng.choice(LABELS, size=2, replace=False)]
    while True:
        main = _place(rng, _sample_motion(rng, "main", motions[0], colours[0], image_size), times, image_size, None)
        if main is not None:
            break
    if rng.random() < 0.5:
        return Clip((main,), num_frames, bg)
    for _ in range(100):
        other = _sample_motion(rng, "other", motions[1], colours[1], image_size)
        other = _place(rng, other, times, image_size, swept_box(main, times))
        if other is not None:
            return Clip((main, other), num_frames, bg)
    return Clip((main,), num_frames, bg)


def render_clip(clip: Clip) -> list[np.ndarray]:
    """The clip's frames, uint8 [S, S, 3] each."""
    frames = []
    for t in clip.times():
        drawn = []
        for obj in clip.objects:
            cx, cy, side, angle = obj.at(t)
            drawn.append({"shape": obj.shape, "colour": obj.colour, "centre": (cx, cy), "side": side, "angle": angle})
        frames.append(draw_objects(clip.background, drawn))
    return frames


def clip_meta(clip: Clip) -> dict:
    """The label and, per object, its motion and per-frame centre (x, y), side and angle."""
    objects = []
    for obj in clip.objects:
        states = np.array([obj.at(t) for t in clip.times()]).round(3)   # [T, 4]
        objects.append({"shape": obj.shape, "colour": obj.colour, "motion": obj.motion,
                        "centre": states[:, :2].tolist(), "side": states[:, 2].tolist(),
                        "angle": states[:, 3].tolist()})
    return {"label": clip.label, "num_frames": clip.num_frames, "objects": objects}


def generate_shapes_video(out_dir: str | os.PathLike, n: int, seed: int = 0, frames: tuple[int, int] = (8, 16),
                          image_size: int = 96, split_fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Path:
    """Render ``n`` clips to ``OUT/clips/clip_00000/frame_000.png ...`` and ``OUT/dataset_shapes_video.json``.

    Returns the path of the Karpathy-style split JSON (dataset ``shapes_video``; each entry's
    ``filename`` is a clip folder, with ``label``, ``num_frames`` and ``objects`` beside it).
    Clip ``i`` depends only on ``seed`` and ``i``; the splits depend on ``seed`` and ``n``.
    """
    check_generator_args(n, seed, image_size, 48)
    lo, hi = frames
    if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi <= 256):
        raise ConfigError(f"frames={tuple(frames)!r}: must be (min, max) frame counts with 2 <= min <= max <= 256")
    splits = assign_splits(n, split_fractions, seed)
    clip_root = Path(out_dir) / "clips"
    samples = []
    for i in range(n):
        clip = sample_clip(np.random.default_rng([seed, 0, i]), (lo, hi), image_size)
        folder = clip_root / f"clip_{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        names = set()
        for k, frame in enumerate(render_clip(clip)):
            Image.fromarray(frame).save(folder / f"frame_{k:03d}.png", format="PNG")
            names.add(f"frame_{k:03d}.png")
        for stale in folder.glob("frame_*.png"):   # frames left by an earlier, longer clip
            if stale.name not in names:
                stale.unlink()
        samples.append(Sample(folder.name, folder, splits[i], describe_clip(clip.objects), clip_meta(clip)))
    json_path = Path(out_dir) / "dataset_shapes_video.json"
    write_karpathy(json_path, "shapes_video", samples, clip_root)   # written last and atomically
    return json_path
