"""Property-based tests (hypothesis) of everything that reads untrusted text or bytes: the tokenizer and
vocabulary, the metric scorers, the annotation readers and the image reader behind `lrcn caption`.
(tests/test_metrics_fuzz.py checks that our scorers equal pycocoevalcap's; here: ranges and maxima.)"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import tiny_overrides
from lrcn.data.formats import read_coco_captions, read_token_file
from lrcn.data.media import image_size, load_image
from lrcn.data.records import read_karpathy
from lrcn.errors import DataError, MediaError
from lrcn.metrics import score
from lrcn.metrics.formats import load_references, load_results
from lrcn.text import PUNCTUATION, Vocabulary, tokenize

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# any code point, lone surrogates included (json.load makes them from "\ud800" escapes)
any_text = st.text(st.characters(blacklist_categories=()), max_size=40)


# ----------------------------------------------------------------------------- tokenizer and vocabulary

@FUZZ
@given(any_text)
def test_tokenize_any_unicode(text):
    tokens = tokenize(text)
    assert all(isinstance(t, str) and t and t == t.lower() and not any(c.isspace() for c in t) for t in tokens)
    assert not PUNCTUATION & set(tokens)


@FUZZ
@given(st.lists(any_text, min_size=1, max_size=6), any_text, st.lists(st.integers(0, 10**6), max_size=10))
def test_vocabulary_round_trips_any_unicode(texts, unseen, ids):
    vocab = Vocabulary.build(texts)
    for text in texts:                                        # every word of the texts is in the vocabulary
        assert vocab.decode(vocab.encode(text)) == " ".join(tokenize(text))
    assert vocab.decode(vocab.encode(unseen)) == " ".join(t if t in vocab.index else "<unk>" for t in tokenize(unseen))
    vocab.decode([i % len(vocab) for i in ids])                # any in-range ids decode
    with tempfile.TemporaryDirectory() as tmp:
        vocab.save(Path(tmp) / "vocab.json")
        assert Vocabulary.load(Path(tmp) / "vocab.json") == vocab


# ----------------------------------------------------------------------------- metric scorers

SCORES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")
RANGE = {**{m: 1.0 for m in SCORES}, "CIDEr": 10.0}          # CIDEr-D is 10 x a mean of clipped cosines
words = st.sampled_from("a the dog dogs on in red big runs x . , ( ) ' \" -- can't 😀 é Σ".split())
caption = st.lists(st.one_of(words, any_text), max_size=12).map(" ".join)


def fast_score(candidates, references):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # "empty reference" warnings
        return score(candidates, references, metrics=["Bleu", "ROUGE_L", "CIDEr"], backend="fast")


@FUZZ
@given(st.lists(st.tuples(caption, st.lists(caption, max_size=4)), min_size=1, max_size=8))
def test_scores_stay_in_range_on_any_text(images):
    candidates = {i: c for i, (c, _) in enumerate(images)}
    references = {i: [*r, "a dog"] for i, (_, r) in enumerate(images)}   # at least one non-empty reference
    result = fast_score(candidates, references)
    for values in [result.corpus, *result.per_image.values()]:
        assert set(values) == set(SCORES)
        assert all(math.isfinite(v) and -1e-12 <= v <= RANGE[m] + 1e-9 for m, v in values.items()), values


@FUZZ
@given(st.lists(st.tuples(st.lists(words, max_size=8), st.integers(1, 4)), min_size=2, max_size=8))
def test_identical_candidate_and_references_score_the_maximum(images):
    # four words of its own make every n-gram order of each caption informative (CIDEr-D's idf > 0; with
    # a single image every idf is log(1/1) = 0 and CIDEr-D is 0, in pycocoevalcap too)
    captions = {i: " ".join([f"u{i}a u{i}b u{i}c u{i}d", *tail]) for i, (tail, _) in enumerate(images)}
    result = fast_score(captions, {i: [c] * images[i][1] for i, c in captions.items()})
    for values in [result.corpus, *result.per_image.values()]:
        assert values == pytest.approx(RANGE, abs=1e-6)


# ----------------------------------------------------------------------------- annotation readers

json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=3), max_leaves=6)


def or_junk(strategy):
    return st.one_of(strategy, json_value)


path_piece = st.lists(st.sampled_from(["..", ".", "a", "b.jpg", "/", "//", "~", "\\", "\0", "é", "..."]),
                      max_size=5).map("".join)
sentence = or_junk(st.fixed_dictionaries({"raw": or_junk(st.text(max_size=12))}))
karpathy_json = st.fixed_dictionaries({"images": or_junk(st.lists(or_junk(st.fixed_dictionaries(
    {"filename": or_junk(path_piece), "split": or_junk(st.sampled_from(["train", "val", "restval"])),
     "sentences": or_junk(st.lists(sentence, max_size=3))},
    optional={"filepath": or_junk(path_piece), "id": json_value, "cocoid": json_value})), max_size=4))},
    optional={"image_root": json_value})
coco_json = st.fixed_dictionaries({
    "images": or_junk(st.lists(or_junk(st.fixed_dictionaries({"id": or_junk(st.integers(0, 3)),
                                                               "file_name": or_junk(path_piece)})), max_size=3)),
    "annotations": or_junk(st.lists(or_junk(st.fixed_dictionaries({
        "id": json_value, "image_id": or_junk(st.integers(0, 3)), "caption": or_junk(st.text(max_size=8))})),
        max_size=4))})
results_json = or_junk(st.lists(or_junk(st.fixed_dictionaries({"image_id": json_value, "caption": json_value})),
                                max_size=4))


def read_as(reader, data: bytes | str, root: Path):
    """``reader(file)`` of ``data`` written to a file under ``root``: its result, or the DataError raised."""
    path = root / "annotations.json"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    try:
        return reader(path)
    except DataError as e:
        assert str(path) in str(e) or "image path" in str(e)     # the message names the file (or the path)
        return e


def inside(path: Path, root: Path) -> bool:
    return os.path.commonpath([path, root]) == str(root)


@FUZZ
@given(karpathy_json, coco_json, results_json)
def test_annotation_readers_accept_or_refuse_with_a_clear_error(karpathy, coco, results):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        root.mkdir()
        samples = read_as(lambda p: read_karpathy(p, root), json.dumps(karpathy), root)
        if not isinstance(samples, DataError):
            assert all(inside(s.path, root) and all(isinstance(c, str) for c in s.captions) for s in samples)
        samples = read_as(lambda p: read_coco_captions(p, root / "train2014", "train"), json.dumps(coco), root)
        if not isinstance(samples, DataError):
            assert all(inside(s.path, root / "train2014") for s in samples)
        for data in (karpathy, coco):
            read_as(load_references, json.dumps(data), root)
        read_as(load_results, json.dumps(results), root)


@FUZZ
@given(st.one_of(st.binary(max_size=200), any_text, json_value.map(lambda v: json.dumps(v)[:-1])))
def test_malformed_json_files_give_clear_errors(data):
    readers = [lambda p: read_karpathy(p), lambda p: read_coco_captions(p, p.parent, "val"), load_results,
               load_references]
    with tempfile.TemporaryDirectory() as tmp:
        for reader in readers:
            read_as(reader, data, Path(tmp))


token_line = st.lists(st.one_of(path_piece, st.sampled_from(["x.jpg", "#", "#0", "\t", "|", " 1|", ",", '"']),
                                st.text(max_size=8)), max_size=6).map("".join)


@FUZZ
@given(st.lists(token_line, max_size=6), st.sampled_from(["", "image_name| comment_number| comment\n",
                                                          "image,caption\n"]))
def test_token_files_are_read_or_refused_with_file_and_line(lines, header):
    with tempfile.TemporaryDirectory() as tmp:
        path, root = Path(tmp) / "captions.txt", Path(tmp) / "images"
        path.write_bytes((header + "\n".join(lines)).encode("utf-8", "surrogatepass"))
        try:
            captions = read_token_file(path, root)
        except DataError as e:
            assert str(path) in str(e)
            return
        assert all(inside(root / name, root) and all(isinstance(c, str) and c for c in caps)
                   for name, caps in captions.items())


# ----------------------------------------------------------------------------- image reader

def _valid_images() -> dict[str, bytes]:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out = {}
    for fmt, mode in [("PNG", "RGB"), ("PNG", "P"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "I;16"), ("WEBP", "RGB")]:
        data = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(data, format=fmt)
        out[f"{fmt}-{mode}"] = data.getvalue()
    return out


VALID = _valid_images()
# a valid image of every format, with bytes overwritten, cut short or appended; or plain random bytes
damaged_image = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda name, edits, cut, tail: _damage(VALID[name], edits, cut, tail), st.sampled_from(sorted(VALID)),
              st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), max_size=5), st.integers(0, 10**5),
              st.binary(max_size=20)))


def _damage(data: bytes, edits, cut: int, tail: bytes) -> bytes:
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data[: cut % (len(data) + 1)]) + tail


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(damaged_image)
def test_damaged_or_random_bytes_decode_or_raise_media_error(data):
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")                       # PIL's "Corrupt EXIF data" and the like
        path = Path(tmp) / "photo.jpg"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except MediaError as e:
            assert str(path) in str(e)
            return
        assert image.mode == "RGB" and min(image.size) > 0
        assert image_size(path) == image.size               # what `lrcn caption` records for a decoded image


@pytest.fixture(scope="module")
def valid_videos(tmp_path_factory) -> dict[str, bytes]:
    pytest.importorskip("av")
    from lrcn.data.video import write_video
    folder = tmp_path_factory.mktemp("videos")
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 16, 24, 3), dtype=np.uint8))
    return {name: write_video(folder / name, frames, fps=10, codec=codec).read_bytes()
            for name, codec in [("clip.mp4", "mpeg4"), ("clip.avi", "mpeg4"), ("clip.mkv", "ffv1")]}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_damaged_videos_decode_or_raise_media_error(valid_videos, data):
    from lrcn.data.video import read_frames
    name = data.draw(st.sampled_from(sorted(valid_videos)))
    damaged = data.draw(st.builds(lambda edits, cut, tail: _damage(valid_videos[name], edits, cut, tail),
                                  st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), max_size=6),
                                  st.integers(0, 10**5), st.binary(max_size=20)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(damaged)
        try:
            frames, info = read_frames(path, 4)
        except MediaError as e:
            assert str(path) in str(e)
            return
        assert frames.shape[0] == 4 and frames.dtype == torch.uint8 and len(info.indices) == 4


@pytest.fixture(scope="module")
def trained_run(tiny_shapes, tmp_path_factory) -> Path:
    from lrcn.config import load_config
    from lrcn.commands.demo import DEMO_CONFIG
    from lrcn.train.loop import train
    runs = tmp_path_factory.mktemp("runs")
    return train(load_config(DEMO_CONFIG, tiny_overrides(tiny_shapes, runs, **{"train.epochs": 1})), progress=False)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(files=st.lists(damaged_image, min_size=1, max_size=8))
def test_the_folder_captioner_survives_any_bytes(trained_run, tmp_path_factory, files):
    from lrcn.commands.caption import caption_paths
    folder = tmp_path_factory.mktemp("photos")
    paths = [folder / f"{n}.{['jpg', 'png', 'gif', 'webp'][n % 4]}" for n in range(len(files))]
    for path, data in zip(paths, files):
        path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = caption_paths(trained_run, [folder], out_dir=folder / "out", num_workers=0, progress=False)
    assert sorted([*result["captions"], *result["skipped"]]) == sorted(map(str, paths))    # each file once
    assert set(result["captions"]).isdisjoint(result["skipped"])
    assert json.loads((folder / "out" / "captions.json").read_text())["captions"] == result["captions"]


# ----------------------------------------------------------------------------- hostile files, through the commands

class OpensAFile:
    """Unpickling this would create a file: the proof that a pickle ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_hostile_files_through_the_commands(trained_run, tiny_shapes, tmp_path, capsys):
    import shutil

    from lrcn.cli import main
    from lrcn.commands.demo import DEMO_CONFIG
    from test_media import png_header_only

    marker = tmp_path / "pwned"
    image = sorted((Path(tiny_shapes).parent / "images").glob("*.png"))[0]

    # a run folder whose checkpoint carries a pickled object
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    torch.save({"format": "lrcn-checkpoint-1", "model": OpensAFile(marker)}, run / "checkpoints" / "best.pt")
    assert main(["-q", "caption", str(run), str(image)]) == 2
    assert "holds pickled Python objects, which lrcn never writes and will not load" in capsys.readouterr().err
    assert main(["-q", "evaluate", str(trained_run), "--checkpoint", str(run / "checkpoints" / "best.pt")]) == 2
    assert "pickled Python objects" in capsys.readouterr().err
    torch.save({"weights": OpensAFile(marker)}, tmp_path / "weights.pt")            # encoder weights, too
    assert main(["-q", "train", str(DEMO_CONFIG), "--set", f"data.split_json={tiny_shapes}", "--set",
                 f"train.runs_dir={tmp_path / 'runs'}", "--set", f"encoder.weights_path={tmp_path / 'weights.pt'}"]) == 2
    assert "cannot read weights file" in capsys.readouterr().err

    # a config that would construct a Python object
    (tmp_path / "evil.yaml").write_text(f"name: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    assert main(["-q", "train", str(tmp_path / "evil.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err

    # a split file naming an image outside its dataset
    data = json.loads(Path(tiny_shapes).read_text())
    data["images"][0]["filepath"], data["images"][0]["filename"] = "../..", image.name
    (tmp_path / "escape.json").write_text(json.dumps({**data, "image_root": str(Path(tiny_shapes).parent)}))
    assert main(["-q", "train", str(DEMO_CONFIG), "--set", f"data.split_json={tmp_path / 'escape.json'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrcn train: error: image path '../../") and "leaves the dataset root" in err
    assert err.count("\n") == 1                                              # one line, no traceback

    # decompression bombs and absurdly large images next to a good one
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(image, photos / "ok.png")
    png_header_only(photos / "bomb.png", 100_000, 100_000)       # 10 gigapixels in 45 bytes
    png_header_only(photos / "huge.png", 12_000, 9_000)          # 108 MP: over data.max_pixels
    assert main(["-q", "caption", str(trained_run), str(photos), "--json", str(tmp_path / "c.json")]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert list(result["captions"]) == [str(photos / "ok.png")]
    assert "more than the limit of 89,478,485" in result["skipped"][str(photos / "huge.png")]
    assert "decompression bomb" in result["skipped"][str(photos / "bomb.png")]
    assert not marker.exists()
