"""The embedded shapes dataset: determinism, file layout, and captions that agree with the pixels."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import file_digests
from lrcn.data.records import read_karpathy
from lrcn.data.shapes import COLOURS, SHAPES, Group, describe, generate_shapes, groups_of, sample_scene
from lrcn.errors import ConfigError
from lrcn.text import tokenize

N = 120


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "out", N, seed=3)


@pytest.fixture(scope="module")
def samples(dataset):
    return read_karpathy(dataset)


def test_describe_exact_paraphrases():
    groups = [Group(2, "small", "red", "circle"), Group(1, "large", "blue", "square")]
    assert describe(groups, "above") == [
        "two small red circles above a large blue square",
        "a large blue square below two small red circles",
        "there are two small red circles above a large blue square",
        "a picture of two small red circles above a large blue square",
        "there is a large blue square below two small red circles",
    ]
    assert describe([Group(1, "large", "orange", "star"), Group(3, "small", "green", "triangle")], "left of")[:2] == [
        "a large orange star to the left of three small green triangles",
        "three small green triangles to the right of a large orange star",
    ]
    assert describe([Group(1, "large", "green", "star")]) == [
        "a large green star", "there is a large green star", "a picture of a large green star",
        "an image of a large green star", "a large green star on a plain background"]
    with pytest.raises(ValueError):
        describe(groups, None)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, dataset):
    again = generate_shapes(tmp_path / "again", N, seed=3)
    assert file_digests(again.parent) == file_digests(dataset.parent)
    other = generate_shapes(tmp_path / "other", N, seed=4)
    a, b = file_digests(dataset.parent), file_digests(other.parent)
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) >= N  # every image and the JSON differ
    # image i depends only on (seed, i): a shorter run renders the same first images
    short = generate_shapes(tmp_path / "short", 5, seed=3)
    for i in range(5):
        name = f"images/shapes_{i:05d}.png"
        assert file_digests(short.parent)[name] == a[name]


def test_layout_and_splits(dataset, samples):
    data = json.loads(dataset.read_text())
    assert dataset.name == "dataset_shapes.json" and data["dataset"] == "shapes"
    assert [s.path for s in samples] == [dataset.parent / "images" / f"shapes_{i:05d}.png" for i in range(N)]
    assert all(s.path.is_file() for s in samples)
    assert Counter(s.split for s in samples) == {"train": 96, "val": 12, "test": 12}
    assert len({s.id for s in samples}) == N
    # splits are shuffled, not blocks, and tokens are the tokenizer's
    assert {s.split for s in samples[:N // 2]} == {"train", "val", "test"}
    entry = data["images"][0]
    assert [x["tokens"] for x in entry["sentences"]] == [tokenize(x["raw"]) for x in entry["sentences"]]
    # no two images are the same picture
    assert len({hashlib.sha256(s.path.read_bytes()).digest() for s in samples}) == N


def test_split_fractions_and_bad_arguments(tmp_path):
    samples = read_karpathy(generate_shapes(tmp_path / "a", 10, seed=0, split_fractions=(0.5, 0.25, 0.25)))
    assert Counter(s.split for s in samples) == {"train": 5, "val": 3, "test": 2} or \
        Counter(s.split for s in samples) == {"train": 5, "val": 2, "test": 3}
    for kwargs in ({"n": 0}, {"n": 5, "seed": -1}, {"n": 5, "image_size": 16},
                   {"n": 5, "split_fractions": (0.8, 0.1)}, {"n": 5, "split_fractions": (0.9, 0.2, 0.1)}):
        with pytest.raises(ConfigError):
            generate_shapes(tmp_path / "bad", **kwargs)


def test_scene_variety(samples):
    objects = [o for s in samples for o in s.meta["objects"]]
    assert {o["shape"] for o in objects} == set(SHAPES)
    assert {o["colour"] for o in objects} == set(COLOURS)
    assert {o["size"] for o in objects} == {"small", "large"}
    assert {len(s.meta["objects"]) for s in samples} == {1, 2, 3}
    assert {s.meta["relation"] for s in samples} == {None, "above", "below", "left of", "right of"}
    words = {t for s in samples for c in s.captions for t in tokenize(c)}
    assert len(words) < 60
    assert max(len(tokenize(c)) for s in samples for c in s.captions) <= 16


# An independent reading of the caption grammar: noun phrases and relations.
PHRASE = rf"(a|two|three) (small|large) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})(s?)"
RELATION_WORDS = {"above": "above", "below": "below", "to the left of": "left of", "to the right of": "right of"}
CAPTION = re.compile(rf"(?:(there is|there are|a picture of|an image of) )?{PHRASE}"
                     rf"(?: ({'|'.join(RELATION_WORDS)}) {PHRASE})?( on a plain background)?")
COUNTS = {"a": 1, "two": 2, "three": 3}


def parse(caption: str) -> tuple[list[tuple[int, str, str, str]], str | None]:
    """(count, size, colour, shape) per noun phrase in order, and the relation of the first to the second."""
    m = CAPTION.fullmatch(caption)
    assert m, caption
    prefix, relation = m.group(1), m.group(7)
    phrases = [m.group(*range(i, i + 5)) for i in ((2, 8) if relation else (2,))]
    groups = []
    for det, size, colour, shape, plural in phrases:
        assert (COUNTS[det] > 1) == (plural == "s"), caption
        groups.append((COUNTS[det], size, colour, shape))
    if prefix in ("there is", "there are"):
        assert (prefix == "there are") == (groups[0][0] > 1), caption
    return groups, RELATION_WORDS.get(relation)


def union_box(objects: list[dict]) -> tuple[int, int, int, int]:
    boxes = np.array([o["bbox"] for o in objects])
    return boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()


def holds(relation: str, a: list[dict], b: list[dict]) -> bool:
    """``a relation b`` geometrically: the whole of group a lies on that side of the whole of group b."""
    ax0, ay0, ax1, ay1 = union_box(a)
    bx0, by0, bx1, by1 = union_box(b)
    return {"above": ay1 <= by0, "below": by1 <= ay0, "left of": ax1 <= bx0, "right of": bx1 <= ax0}[relation]


def test_captions_agree_with_scene(samples):
    for s in samples:
        assert len(s.captions) == 5 and len(set(s.captions)) == 5
        groups: dict[tuple, list[dict]] = {}
        for o in s.meta["objects"]:
            groups.setdefault((o["group"], o["size"], o["colour"], o["shape"]), []).append(o)
        scene = {(len(objs), size, colour, shape): objs for (_, size, colour, shape), objs in groups.items()}
        assert len(scene) == len(groups)  # the groups are distinguishable by their descriptions
        for caption in s.captions:
            named, relation = parse(caption)
            assert sorted(named) == sorted(scene), (caption, s.meta)
            if len(named) == 2:
                assert holds(relation, scene[named[0]], scene[named[1]]), (caption, s.meta)
                assert not holds(relation, scene[named[1]], scene[named[0]])
            else:
                assert relation is None and s.meta["relation"] is None


def test_pixels_agree_with_scene(samples):
    palette = np.array(list(COLOURS.values()), dtype=float)
    names = list(COLOURS)
    for s in samples:
        image = np.asarray(Image.open(s.path).convert("RGB"), dtype=float)
        assert image.shape == (128, 128, 3)
        objects = s.meta["objects"]
        covered = np.zeros(image.shape[:2], dtype=int)
        for o in objects:
            x0, y0, x1, y1 = o["bbox"]
            side = x1 - x0
            assert y1 - y0 == side and 0 <= x0 and x1 <= 128 and 0 <= y0 and y1 <= 128
            assert (side >= 36) == (o["size"] == "large") and 17 <= side <= 43
            covered[y0:y1, x0:x1] += 1
            centre = image[(y0 + y1) // 2, (x0 + x1) // 2]
            assert np.abs(centre - COLOURS[o["colour"]]).max() <= 2, (s.id, o)
            # the object's own box holds its colour and no other palette colour
            box = image[y0:y1, x0:x1].reshape(-1, 3)
            nearest = np.argmin(((box[:, None] - palette[None]) ** 2).sum(-1), axis=1)
            close = np.abs(box - palette[nearest]).max(1) <= 2
            assert {names[i] for i in nearest[close]} == {o["colour"]}, (s.id, o)
        assert covered.max() == 1, s.id  # bounding boxes never overlap
        # outside the boxes: only light background
        assert image[covered == 0].min() >= 170, s.id


@pytest.mark.parametrize("image_size", [64, 128, 224])
def test_many_scenes_are_valid(image_size):
    """Scene sampling alone (no rendering), over many draws: every layout fits and holds."""
    layouts = Counter()
    for i in range(1500):
        objects, relation = sample_scene(np.random.default_rng([9, i]), image_size)
        groups = groups_of(objects)
        assert len({(g.size, g.colour, g.shape) for g in groups}) == len(groups)
        layouts[tuple(g.count for g in groups)] += 1
        boxes = np.array([o["bbox"] for o in objects])
        assert boxes.min() >= 0 and boxes.max() <= image_size
        for j, a in enumerate(boxes):
            for b in boxes[:j]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], objects
        if relation is None:
            assert len(groups) == 1
        else:
            members = [[o for o in objects if o["group"] == k] for k in (0, 1)]
            assert holds(relation, *members) and not holds(relation, *members[::-1])
    assert set(layouts) == {(1,), (2,), (3,), (1, 1), (2, 1), (1, 2)}
    assert layouts[(1, 1)] > layouts[(3,)]
