"""Attention maps of a Show, Attend and Tell run: the heat-map overlay pixel by pixel, the per-word
weights read back through the decoder, `lrcn caption --out` writing them (thumbnails, captions.json,
gallery strip, every word escaped), and notebooks/attention_maps.ipynb."""

from __future__ import annotations

import html
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_overrides
from test_gallery import BROWSER, seen_in_browser
from test_notebook import NOTEBOOKS, outputs, rerun_notebook, saved_notebook
from lrcn.cli import main
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.run import load_models
from lrcn.models.attention import ShowAttendTell
from lrcn.report.attention import ALPHA, HEAT_HIGH, THUMBNAIL, overlay, word_attention
from lrcn.report.gallery import write_gallery
from lrcn.run import Run

GREY = 100
NOTEBOOK = NOTEBOOKS / "attention_maps.ipynb"
HOSTILE_WORDS = ["<script>document.title='script'</script>", "<img src=x onerror=\"document.title='img'\">",
                 "<b>bold</b>", "&amp;", "</span></div><script>x</script>"]


def grey(size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), (GREY, GREY, GREY))


def test_overlay_colours_the_attended_cell_and_leaves_the_far_ones_untouched():
    weights = np.zeros((2, 2), np.float32)
    weights[0, 1] = 1.0                                                 # row 0, column 1: the top right
    out = np.asarray(overlay(grey(), weights)).astype(int)              # [64, 64, 3]
    full = np.rint((1 - ALPHA) * GREY + ALPHA * HEAT_HIGH).astype(int)   # yellow at full opacity
    # bilinear: the weight sits at the cell's centre (pixel 47.5), the map is flat beyond it ...
    assert (out[:16, 48:] == full).all()
    # ... and 0 from the other cells' centres on: those pixels keep the image exactly
    assert (out[:, :16] == GREY).all() and (out[48:] == GREY).all()
    tint = np.abs(out - GREY).sum(-1)                                   # [64, 64]
    rising = tint[0, 15:49]                                             # between the centres: smooth, not a step
    assert rising[0] == 0 and rising[-1] == tint[0, 63] and (np.diff(rising) > 0).sum() > 20
    per_cell = [[tint[32 * r:32 * r + 32, 32 * c:32 * c + 32].mean() for c in range(2)] for r in range(2)]
    assert per_cell[0][1] > 2 * max(per_cell[0][0], per_cell[1][1]) and per_cell[1][0] == min(map(min, per_cell))
    # the map runs from the least attended region (clear) to the most attended (fully opaque) ...
    assert np.array_equal(np.asarray(overlay(grey(), weights * 0.3 + 0.1)), out.astype(np.uint8))
    # ... and equal weights everywhere prefer no region: no colour
    assert np.array_equal(np.asarray(overlay(grey(), np.full((3, 3), 1 / 9))), np.asarray(grey()))


def test_overlay_halfway_between_least_and_most_is_half_as_opaque():
    weights = np.array([[0.5, 0.3], [0.2, 0.0]], np.float32)          # 0.2 of 0.5 from the least: 0.4
    out = np.asarray(overlay(grey(), weights)).astype(float)
    for (row, column), m in {(4, 4): 1.0, (4, 60): 0.6, (60, 4): 0.4}.items():
        colour = np.array([255.0, 255.0 * m, 0.0])                      # red, towards yellow as m rises
        assert np.abs(out[row, column] - ((1 - ALPHA * m) * GREY + ALPHA * m * colour)).max() <= 0.5
    assert (out[48:, 48:] == GREY).all()


def test_word_attention_is_the_decoders_attention_for_each_word_of_each_caption():
    torch.manual_seed(0)
    decoder = ShowAttendTell(vocab_size=12, feature_dim=6, embed_dim=8, hidden_dim=10).eval()
    features = torch.randn(3, 6, 3, 3)
    captions = [[5, 6, 7, 10], [9], []]
    maps = word_attention(decoder, features, captions, bos=1, pad=0)
    assert [m.shape for m in maps] == [(4, 3, 3), (1, 3, 3), (0, 3, 3)]
    for b, caption in enumerate(captions[:2]):                          # alone, with <start> then its words
        words = torch.tensor([[1, *caption[:-1]]])
        with torch.no_grad():
            expected = decoder.attention_maps(features[b:b + 1], words)[0].view(-1, 3, 3)
        torch.testing.assert_close(maps[b], expected)


def train_tiny(tiny_shapes, runs: Path, name: str, **extra) -> Path:
    overrides = tiny_overrides(tiny_shapes, runs, **{"name": name, **extra})
    assert main(["-q", "train", str(DEMO_CONFIG), *[a for o in overrides for a in ("--set", o)]]) == 0
    return runs / name


@pytest.fixture(scope="module")
def attention_run(tiny_shapes, tmp_path_factory) -> Path:
    return train_tiny(tiny_shapes, tmp_path_factory.mktemp("runs"), "sat",
                      **{"decoder.kind": "show_attend_tell", "encoder.features": "grid"})


def caption(run_dir: Path, images: list[Path], out: Path) -> dict:
    assert main(["-q", "caption", str(run_dir), *map(str, images), "--out", str(out)]) == 0
    return json.loads((out / "captions.json").read_text())


def test_caption_out_writes_each_words_attention(attention_run, tiny_shapes, tmp_path):
    images = sorted((Path(tiny_shapes).parent / "images").glob("*.png"))[:3]
    result = caption(attention_run, images, tmp_path / "out")
    config, vocab, encoder, decoder = load_models(Run.open(attention_run))
    with torch.no_grad():
        grids = encoder(torch.stack([encoder.transform(Image.open(p).convert("RGB")) for p in images]))  # [3, D, 2, 2]
    page = (tmp_path / "out" / "index.html").read_text()
    for image, grid in zip(images, grids):
        entry = result["captions"][str(image)]
        words = entry["caption"].split()
        assert [a["word"] for a in entry["attention"]] == words and words
        weights = torch.tensor([a["weights"] for a in entry["attention"]])                # [words, 2, 2]
        torch.testing.assert_close(weights.sum((1, 2)), torch.ones(len(words)), atol=1e-3, rtol=0)
        ids = torch.tensor([[vocab.start, *(vocab.index[w] for w in words[:-1])]])
        with torch.no_grad():
            expected = decoder.attention_maps(grid[None], ids)[0].view(-1, 2, 2)
        torch.testing.assert_close(weights, expected, atol=6e-5, rtol=0)                  # rounded to 4 places
        for a in entry["attention"]:
            thumbnail = Image.open(tmp_path / "out" / a["image"])
            assert thumbnail.format == "PNG" and thumbnail.size == (THUMBNAIL, THUMBNAIL)
            assert f'src="{a["image"]}"' in page
    assert len(list((tmp_path / "out" / "attention").iterdir())) == sum(
        len(e["attention"]) for e in result["captions"].values())


@pytest.mark.parametrize("kind", ["lrcn_1u", "show_attend_tell"], ids=["no attention_maps", "pooled features"])
def test_without_attention_maps_or_a_grid_caption_writes_no_attention(kind, tiny_shapes, tmp_path):
    run_dir = train_tiny(tiny_shapes, tmp_path / "runs", "plain", **{"train.epochs": 1, "decoder.kind": kind})
    images = sorted((Path(tiny_shapes).parent / "images").glob("*.png"))[:2]
    result = caption(run_dir, images, tmp_path / "out")
    assert all(set(e) == {"caption", "width", "height", "nbest"} for e in result["captions"].values())
    assert not (tmp_path / "out" / "attention").exists() and 'class="att"' not in (tmp_path / "out" / "index.html").read_text()


class Strip(HTMLParser):
    """What a browser would make of the gallery's attention strips: their elements, words and alts."""

    def __init__(self):
        super().__init__()
        self.tags, self.words, self.alts, self.handlers, self.depth = [], [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if self.depth or ("class", "att") in attrs:
            self.depth += tag != "img"
            self.tags.append(tag)
            self.alts += [value for name, value in attrs if tag == "img" and name == "alt"]

    def handle_endtag(self, tag):
        if self.depth and tag != "img":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and self.tags[-1] == "span":
            self.words.append(data)


@pytest.fixture(scope="module")
def hostile_gallery(attention_run, tiny_shapes, tmp_path_factory) -> tuple[Path, list[str]]:
    """`lrcn caption --out` of two images by the attention run with a vocabulary of markup; its words."""
    tmp = tmp_path_factory.mktemp("hostile")
    hostile = tmp / "run"
    shutil.copytree(attention_run, hostile)
    vocab = json.loads((hostile / "vocab.json").read_text())
    vocab["words"][4:] = [HOSTILE_WORDS[i % len(HOSTILE_WORDS)] + f" {i}" for i in range(len(vocab["words"]) - 4)]
    (hostile / "vocab.json").write_text(json.dumps(vocab))        # a run folder from an untrusted source
    images = sorted((Path(tiny_shapes).parent / "images").glob("*.png"))[:2]
    result = caption(hostile, images, tmp / "out")
    words = [a["word"] for e in result["captions"].values() for a in e["attention"]]
    assert words and all("<" in w or "&" in w for w in words)
    return tmp / "out", words


def test_markup_words_in_the_attention_strip_show_as_text(hostile_gallery):
    out, words = hostile_gallery
    parser = Strip()
    parser.feed((out / "index.html").read_text())
    assert parser.words == words == parser.alts                  # exactly the text, in order
    assert set(parser.tags) == {"div", "img", "span"} and not parser.handlers


@pytest.mark.skipif(BROWSER is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_attention_strip_in_a_browser(hostile_gallery, tmp_path):
    out, words = hostile_gallery
    seen = seen_in_browser(out / "index.html", tmp_path, ".att img", """{
    title: d.title, scripts: d.querySelectorAll("script").length,
    words: [...d.querySelectorAll(".att span")].map(e => e.textContent),
    alts: imgs.map(i => i.alt), widths: imgs.map(i => i.naturalWidth)}""")
    assert seen["title"] == "lrcn captions" and seen["scripts"] == 0
    assert seen["words"] == words == seen["alts"]
    assert seen["widths"] == [THUMBNAIL] * len(words)                 # every thumbnail loaded


def test_gallery_escapes_attention_words_and_quotes_their_image_paths(tmp_path):
    evil = "<script>x</script>\"'&"
    write_gallery(tmp_path / "index.html", {"run": "r", "skipped": {}, "captions": {"/p/a.png": {
        "caption": "a", "width": 1, "height": 1, "nbest": [],
        "attention": [{"word": evil, "weights": [[1.0]], "image": f"attention/{evil}.png"},
                      {"word": "json only", "weights": [[1.0]]}]}}})     # no thumbnail: not in the strip
    page = (tmp_path / "index.html").read_text()
    assert "<script" not in page and evil not in page
    assert page.count(html.escape(evil)) == 2                          # the word and the thumbnail's alt
    assert f'src="{html.escape(quote(f"attention/{evil}.png"))}"' in page and "json only" not in page


def check_notebook(nb: nbformat.NotebookNode) -> None:
    assert len([o for o in outputs(nb) if "image/png" in o.get("data", {})]) == 4          # four strips
    text = "".join(o.get("text", "") for o in outputs(nb))
    assert "offers attention_maps: True" in text and "grid features (60, 1280, 4, 4)" in text
    measured = [line for line in text.splitlines() if "attention on those objects' regions" in line]
    assert len(measured) == 1


def test_saved_attention_notebook_is_built_from_its_source_and_keeps_its_outputs():
    check_notebook(saved_notebook(NOTEBOOK))


@pytest.mark.slow
def test_attention_notebook_runs_top_to_bottom(tmp_path):
    check_notebook(rerun_notebook(NOTEBOOK, tmp_path))
    assert (tmp_path / "_work" / "runs" / "sat-shapes" / "checkpoints" / "best.pt").exists()
