"""Show, Attend and Tell: the step interface on grids, frames and pooled vectors; attention that
learns where to look; mirror-averaged and grid features from the encoder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_step_interface, overfit_and_replay, tiny_overrides
from lrcn.cli import main
from lrcn.decoding import DecodeConfig, generate
from lrcn.errors import ConfigError
from lrcn.models.attention import ShowAttendTell, regions_of
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.models.encoders import build_encoder
from lrcn.run import Run


@pytest.mark.parametrize("shape", [(4, 12, 3, 5), (4, 6, 12), (4, 12)], ids=["grid", "frames", "pooled"])
def test_step_interface_on_every_kind_of_features(shape):
    torch.manual_seed(0)
    model = ShowAttendTell(vocab_size=30, feature_dim=12, embed_dim=8, hidden_dim=10, attention_dim=6).eval()
    features, words = torch.randn(shape), torch.randint(1, 30, (4, 7))
    with torch.no_grad():
        assert_step_interface(model, features, words)
        maps = model.attention_maps(features, words)
    regions = {4: 15, 3: 6, 2: 1}[len(shape)]
    assert maps.shape == (4, 7, regions)
    torch.testing.assert_close(maps.sum(-1), torch.ones(4, 7))


def test_regions_of_grid_are_the_positions_in_reading_order():
    grid = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 2, 2)        # [B, D, h, w]
    regions = regions_of(grid)
    assert regions.shape == (2, 4, 3)
    assert torch.equal(regions[1, 2], grid[1, :, 1, 0])                          # row 1, column 0


def test_attention_learns_which_region_holds_the_object():
    """Each image is a 3x3 grid of noise with one 'object' vector (one of 3 kinds) in one cell; the
    caption names the kind. After training the model names every kind, and while it does it looks
    mostly at the object's cell."""
    g = torch.Generator().manual_seed(0)
    B, D = 36, 16
    kinds = torch.randn(3, D, generator=g) * 3
    grid = torch.randn(B, D, 3, 3, generator=g) * 0.3
    kind, cell = torch.arange(B) % 3, torch.randperm(B, generator=g) % 9
    grid.view(B, D, 9)[torch.arange(B), :, cell] += kinds[kind]
    words = torch.stack([torch.full((B,), 1), 4 + kind, torch.full((B,), 2)], dim=1)   # <start> kind <end>
    torch.manual_seed(0)
    model = ShowAttendTell(vocab_size=8, feature_dim=D, embed_dim=16, hidden_dim=32, dropout=0.0)
    overfit_and_replay(model, grid, words, steps=200, lr=1e-2)
    with torch.no_grad():
        weights = model.attention_maps(grid, words[:, :1])[:, 0]                  # [B, 9] at the kind word
    assert weights[torch.arange(B), cell].mean() > 0.5                           # uniform would be 1/9


def test_every_strategy_decodes_an_attention_model():
    torch.manual_seed(0)
    model = ShowAttendTell(vocab_size=20, feature_dim=12, embed_dim=8, hidden_dim=10).eval()
    grid = torch.randn(3, 12, 2, 2)
    for options in ({"beam_size": 1}, {"beam_size": 3, "n_best": 2}, {"beam_size": 4, "groups": 2},
                    {"sample": True, "top_k": 5, "seed": 1}):
        out = generate(model, grid, DecodeConfig.from_dict({"max_len": 6, **options}), bos=1, eos=2)
        assert len(out) == 3 and all(len(h[0].tokens) <= 6 for h in out)


@pytest.fixture(scope="module")
def symmetric_image():
    rng = np.random.default_rng(0)
    half = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
    return Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1))      # a mirror-symmetric photo


def test_flip_average_and_grid_features(symmetric_image):
    plain = build_encoder(image_size=64, crop=False)
    grid = build_encoder(image_size=64, crop=False, features="grid")
    flipped = build_encoder(image_size=64, crop=False, flip_average=True)
    flipped_grid = build_encoder(image_size=64, crop=False, flip_average=True, features="grid")
    assert (plain.key, flipped_grid.key) == ("efficientnet_lite0-64-nocrop", "efficientnet_lite0-64-nocrop-flip-grid")
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    x = torch.stack([plain.transform(photo), plain.transform(symmetric_image)])
    with torch.no_grad():
        g = grid(x)                                                              # [2, 1280, 2, 2]
        assert g.shape == (2, 1280, 2, 2)
        torch.testing.assert_close(g.mean(dim=(2, 3)), plain(x))
        mirror = grid(x.flip(-1)).flip(-1)
        torch.testing.assert_close(flipped_grid(x), (g + mirror) / 2)
        torch.testing.assert_close(flipped(x), (g + mirror).mean(dim=(2, 3)) / 2)
        # a mirror-symmetric image is its own mirror image: averaging changes nothing
        torch.testing.assert_close(flipped(x[1:]), plain(x[1:]), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(flipped(x[:1]), plain(x[:1]), atol=1e-3)


def test_bad_feature_options_are_refused():
    with pytest.raises(ConfigError, match="encoder.features='patches'"):
        build_encoder(image_size=64, features="patches")
    with pytest.raises(ConfigError, match="attention_map"):
        build_encoder(image_size=64, features="grid", attention_map=2)
    with pytest.raises(ConfigError, match="flip_average"):
        build_encoder(image_size=64, flip_average=True, attention_map=2)


def test_the_attention_recipe_trains_evaluates_and_captions_end_to_end(tiny_shapes, tmp_path):
    """The flickr8k-mini recipe's model kind (grid features, mirror-averaged, Show, Attend and Tell,
    then self-critical training from it) through the command line on the shapes data."""
    runs = tmp_path / "runs"
    recipe = {"decoder.kind": "show_attend_tell", "encoder.features": "grid", "encoder.grid_size": 2,
              "encoder.flip_average": True, "train.epochs": 6, "decoder.hidden_dim": 48}
    args = ["-q", "train", str(DEMO_CONFIG)]
    for o in tiny_overrides(tiny_shapes, runs, name="sat", **recipe):
        args += ["--set", o]
    assert main(args) == 0
    assert Run.open(runs / "sat").config().encoder.features == "grid"
    stores = sorted(p.name for p in (Path(tiny_shapes).parent / "features").iterdir())
    assert any(name.startswith("efficientnet_lite0-64-nocrop-flip-grid2-") for name in stores)
    scst = {**recipe, "train.loss": "scst", "train.init_from": runs / "sat", "train.epochs": 1,
            "train.scst_samples": 2, "train.lr": 1e-4}
    args = ["-q", "train", str(DEMO_CONFIG)]
    for o in tiny_overrides(tiny_shapes, runs, name="sat-scst", **scst):
        args += ["--set", o]
    assert main(args) == 0
    out = tmp_path / "scores.json"
    assert main(["-q", "evaluate", str(runs / "sat-scst"), "--split", "test", "--beam", "3", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert 0 < scores["CIDEr"] <= 10 and scores["Bleu_4"] > 0
    images = sorted((Path(tiny_shapes).parent / "images").glob("*.png"))[:3]
    assert main(["-q", "caption", str(runs / "sat-scst"), *map(str, images), "--json", str(tmp_path / "c.json")]) == 0
    captions = json.loads((tmp_path / "c.json").read_text())["captions"]
    assert len(captions) == 3 and all(entry["caption"] for entry in captions.values())
