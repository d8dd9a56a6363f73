"""The embedded shapes-video dataset: determinism, labels, and captions that agree with the motion."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import file_digests
from lrcn.data.records import read_karpathy
from lrcn.data.shapes import COLOURS
from lrcn.data.shapes_video import (LABELS, SHAPES, SYMMETRY_DEGREES, MovingObject, describe_clip,
                                    generate_shapes_video, named_motions, render_clip, reverse_clip, sample_clip,
                                    swept_box)
from lrcn.errors import ConfigError
from lrcn.text import tokenize

N, S = 40, 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_shapes_video(tmp_path_factory.mktemp("video") / "out", N, seed=5)


@pytest.fixture(scope="module")
def samples(dataset):
    return read_karpathy(dataset)


def frames_of(sample) -> np.ndarray:
    """[T, S, S, 3] float"""
    paths = sorted(sample.path.glob("frame_*.png"))
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=float) for p in paths])


def test_describe_clip_exact():
    still = (10.0, 10.0, 20.0, 0.0)
    a = MovingObject("square", "red", "moving left", still, still)
    b = MovingObject("star", "orange", "growing", still, still)
    assert describe_clip([a, b]) == [
        "a red square moves to the left while an orange star grows",
        "a red square moves left and an orange star gets bigger",
        "an orange star grows while a red square moves to the left",
        "the red square slides to the left and the orange star becomes bigger",
        "a red square is moving left while an orange star is growing",
    ]
    assert max(len(tokenize(c)) for c in describe_clip([a, a])) <= 16
    assert describe_clip([b]) == ["an orange star grows", "an orange star gets bigger", "an orange star is growing",
                                  "the orange star becomes bigger", "there is an orange star growing"]


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, dataset):
    a = file_digests(dataset.parent)
    assert file_digests(generate_shapes_video(tmp_path / "again", N, seed=5).parent) == a
    b = file_digests(generate_shapes_video(tmp_path / "other", N, seed=6).parent)
    assert a["dataset_shapes_video.json"] != b["dataset_shapes_video.json"]
    assert sum(a.get(k) != v for k, v in b.items()) > len(b) // 2
    short = file_digests(generate_shapes_video(tmp_path / "short", 2, seed=5).parent)
    assert all(a[k] == v for k, v in short.items() if k.startswith("clips/"))


def test_layout_labels_and_splits(dataset, samples):
    data = json.loads(dataset.read_text())
    assert data["dataset"] == "shapes_video"
    assert [s.path for s in samples] == [dataset.parent / "clips" / f"clip_{i:05d}" for i in range(N)]
    assert Counter(s.split for s in samples) == {"train": 32, "val": 4, "test": 4}
    for s in samples:
        names = sorted(p.name for p in s.path.iterdir())
        assert names == [f"frame_{k:03d}.png" for k in range(s.meta["num_frames"])]
        assert 8 <= s.meta["num_frames"] <= 16
        assert Image.open(s.path / names[0]).size == (S, S)
        assert s.meta["label"] in LABELS and s.meta["label"] == s.meta["objects"][0]["motion"]
        assert len(s.captions) == 5 and len(set(s.captions)) == 5
    assert len({s.meta["label"] for s in samples}) >= 6
    tokens = [tokenize(c) for s in samples for c in s.captions]
    assert max(map(len, tokens)) <= 16 and len({t for ts in tokens for t in ts}) < 60
    assert {len(s.meta["objects"]) for s in samples} == {1, 2}


def test_rewriting_with_shorter_clips_leaves_no_stale_frames(tmp_path):
    first = read_karpathy(generate_shapes_video(tmp_path, 6, seed=0, frames=(12, 12)))
    assert all(len(list(s.path.iterdir())) == 12 for s in first)
    second = read_karpathy(generate_shapes_video(tmp_path, 6, seed=0, frames=(8, 9)))
    assert all(len(list(s.path.iterdir())) == s.meta["num_frames"] <= 9 for s in second)


def test_bad_arguments(tmp_path):
    for kwargs in ({"n": 0}, {"n": 2, "frames": (1, 4)}, {"n": 2, "frames": (9, 8)}, {"n": 2, "image_size": 20}):
        with pytest.raises(ConfigError):
            generate_shapes_video(tmp_path, **kwargs)


def test_label_set_and_scene_rules():
    """Clip sampling alone, over many draws: balanced labels, disjoint paths, the labelled object larger."""
    labels, counts = Counter(), Counter()
    for i in range(600):
        clip = sample_clip(np.random.default_rng([1, i]), (8, 16), S)
        labels[clip.label] += 1
        counts[len(clip.objects)] += 1
        times = clip.times()
        for obj in clip.objects:
            box = swept_box(obj, times)
            assert box.min() >= 0 and box.max() <= S
            assert not (obj.motion == "rotating" and obj.shape == "circle")
        if len(clip.objects) == 2:
            a, b = clip.objects
            assert a.colour != b.colour and a.motion != b.motion
            ba, bb = swept_box(a, times), swept_box(b, times)
            assert ba[2] <= bb[0] or bb[2] <= ba[0] or ba[3] <= bb[1] or bb[3] <= ba[1]
            for t in times:  # polygon areas: the labelled object is the larger one in every frame
                assert polygon_area(a, t) > 1.15 * polygon_area(b, t)
    assert set(labels) == set(LABELS)
    assert min(labels.values()) > 0.08 * 600
    assert 0.4 < counts[2] / 600 < 0.6


def polygon_area(obj: MovingObject, t: float) -> float:
    from lrcn.data.shapes import shape_outline
    x, y = np.array(shape_outline(obj.shape, *obj.at(t))).T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_label_needs_frame_order():
    """A clip played backwards is pixel for pixel a clip of the paired label: a single frame
    or the unordered set of frames cannot tell moving left from right, growing from shrinking."""
    pairs = {("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking")}
    seen = set()
    for i in range(40):
        clip = sample_clip(np.random.default_rng([2, i]), (8, 10), 64)
        back = reverse_clip(clip)
        forward, backward = render_clip(clip), render_clip(back)
        assert all(np.array_equal(f, b) for f, b in zip(forward, backward[::-1]))
        pair = tuple(sorted((clip.label, back.label), key=LABELS.index))
        if pair in pairs:
            seen.add(pair)
        else:
            assert back.label == clip.label  # rotating and bouncing are their own reversal
    assert seen == pairs


# An independent reading of the captions: "<det> <colour> <shape> <verb phrase>", one or two clauses.
SUBJECT = rf"(?:a|an|the) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
CAPTION = re.compile(rf"(?:there is )?{SUBJECT} (?:is )?(.+?)(?: (?:while|and) {SUBJECT} (?:is )?(.+))?")
KEYWORDS = [(r"bounc|hops", "bouncing"), (r"rotat|spin|turn", "rotating"), (r"\bleft\b", "moving left"),
            (r"\bright\b", "moving right"), (r"\bup\b|rises", "moving up"), (r"\bdown\b|sinks", "moving down"),
            (r"grow|bigger", "growing"), (r"shrink|smaller", "shrinking")]


def motion_in(phrase: str) -> str:
    found = [label for pattern, label in KEYWORDS if re.search(pattern, phrase)]
    assert found, phrase
    return found[0]


def turn(o: dict) -> float:
    return abs(o["angle"][-1] - o["angle"][0])


def test_captions_agree_with_meta_motion(samples):
    for s in samples:
        objects = s.meta["objects"]
        for caption in s.captions:
            m = CAPTION.fullmatch(caption)
            assert m, caption
            named = [(m.group(1), m.group(2), motion_in(m.group(3)))]
            if m.group(4):
                named.append((m.group(4), m.group(5), motion_in(m.group(6))))
            assert sorted(named) == sorted((o["colour"], o["shape"], o["motion"]) for o in objects), caption
            assert named_motions(caption) == [motion for _, _, motion in named], caption
        for o in objects:  # the stored tracks do what the label says
            (x0, y0), (x1, y1) = o["centre"][0], o["centre"][-1]
            side = np.array(o["side"])
            checks = {"moving left": lambda: x1 < x0 - 0.2 * S, "moving right": lambda: x1 > x0 + 0.2 * S,
                      "moving up": lambda: y1 < y0 - 0.2 * S, "moving down": lambda: y1 > y0 + 0.2 * S,
                      "growing": lambda: side[-1] >= 1.49 * side[0], "shrinking": lambda: side[0] >= 1.49 * side[-1],
                      "rotating": lambda: 0.35 <= turn(o) / SYMMETRY_DEGREES[o["shape"]] <= 0.5,
                      "bouncing": lambda: min(c[1] for c in o["centre"]) < y0 - 0.15 * S and abs(y1 - y0) < 1e-6}
            assert checks[o["motion"]](), (s.id, o)


def masks(frames: np.ndarray, colour: str) -> np.ndarray:
    """[T, S, S] bool: pixels of (nearly) that palette colour"""
    return np.abs(frames - np.array(COLOURS[colour])).max(-1) <= 40


def test_pixels_follow_the_motion(samples):
    ys, xs = np.mgrid[0:S, 0:S]
    for s in samples:
        frames = frames_of(s)
        areas = []
        for o in s.meta["objects"]:
            m = masks(frames, o["colour"])
            area = m.sum((1, 2)).astype(float)
            assert area.min() > 20, (s.id, o)
            cx, cy = (m * xs).sum((1, 2)) / area, (m * ys).sum((1, 2)) / area
            motion = o["motion"]
            if motion.startswith("moving"):
                along, across = (cx, cy) if motion in ("moving left", "moving right") else (cy, cx)
                sign = -1 if motion in ("moving left", "moving up") else 1
                steps = sign * np.diff(along)
                assert steps.min() > 0 and steps.sum() > 0.2 * S, (s.id, o)
                assert np.ptp(across) < 1, (s.id, o)
            elif motion in ("growing", "shrinking"):
                grow = area if motion == "growing" else area[::-1]   # whole pixels: may pause a frame
                assert np.all(np.diff(grow) >= 0) and grow[-1] > 1.8 * grow[0], (s.id, o)
            elif motion == "rotating":
                turned = (m[0] != m[-1]).sum() / area[0]
                assert turned > 0.15 and np.ptp(area) < 0.15 * area.mean(), (s.id, o)
            elif motion == "bouncing":
                assert abs(cy[-1] - cy[0]) < 0.5 and cy.min() < cy[0] - 0.12 * S and np.ptp(cx) < 0.5, (s.id, o)
            if motion in ("growing", "shrinking", "rotating"):  # in place (a triangle's centroid sits
                # below its box centre, so it drifts a little as the box grows)
                drift = 1 + 0.15 * np.ptp(o["side"])
                assert np.ptp(cx) < drift and np.ptp(cy) < drift, (s.id, o)
            areas.append(area)
        if len(areas) == 2:
            assert np.all(areas[0] > areas[1]), s.id  # the labelled object is the larger, in every frame
