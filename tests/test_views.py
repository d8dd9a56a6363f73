"""Training views (data.train_views): random crops of each training image, extracted once and drawn
from their row ids, and a training loop that reads one view of each image per batch, resumably."""

from __future__ import annotations

import zlib

import pytest
import torch

from conftest import tiny_overrides
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.config import load_config
from lrcn.data.features import FeatureSpec, extract
from lrcn.data.loaders import cached_features, cached_views, extract_splits, load_samples, split
from lrcn.data.media import load_image
from lrcn.data.records import read_karpathy
from lrcn.errors import ConfigError
from lrcn.models.encoders import build_encoder
from lrcn.run import Run
from lrcn.train import loop


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("efficientnet_lite0", image_size=64, crop=False)


def test_each_crop_is_drawn_from_its_row_id_in_any_worker(encoder, tiny_shapes, tmp_path):
    paths = [s.path for s in read_karpathy(tiny_shapes)[:2]]
    rows = [paths[0], paths[0], paths[1]]
    ids = ["a#view1", "a#view2", "b#view1"]
    spec = FeatureSpec(batch_size=2, num_workers=0, crop_area=0.3)
    crops = extract(encoder, rows, ids, tmp_path / "one", spec, progress=False).tensor()
    again = extract(encoder, rows, ids, tmp_path / "two", FeatureSpec(batch_size=1, num_workers=2, crop_area=0.3),
                    progress=False).tensor()
    assert torch.equal(crops, again)                       # the same crops whatever the batching and workers
    transform = encoder.random_crop_transform(0.3)
    expected = []
    for path, i in zip(rows, ids):
        torch.manual_seed(zlib.crc32(i.encode()))
        expected.append(transform(load_image(path)))
    with torch.inference_mode():
        torch.testing.assert_close(crops, encoder(torch.stack(expected)), atol=1e-5, rtol=1e-5)
        whole = encoder(encoder.transform(load_image(paths[0]))[None])[0]
    # two crops of one image differ from each other and from the whole image
    assert not torch.allclose(crops[0], crops[1], atol=1e-3) and not torch.allclose(crops[0], whole, atol=1e-3)
    assert spec.key(encoder) == f"{encoder.key}-crop0.3"


def test_random_crops_need_images_and_a_share_of_the_image():
    with pytest.raises(ConfigError, match="need images"):
        FeatureSpec(modality="video", crop_area=0.5)
    with pytest.raises(ConfigError, match="in \\(0, 1\\]"):
        FeatureSpec(crop_area=1.5)


def views_config(tiny_shapes, tmp_path, name, **extra):
    return load_config(DEMO_CONFIG, tiny_overrides(tiny_shapes, tmp_path, name=name, **{
        "data.train_views": 2, "data.view_min_area": 0.4, "data.feature_dir": str(tmp_path / "features"),
        "train.epochs": 2, "train.val_max_images": 2, **extra}))


def test_lrcn_extract_fills_the_views_store_that_training_reads(encoder, tiny_shapes, tmp_path):
    config = views_config(tiny_shapes, tmp_path, "x")
    stores = extract_splits(config, encoder, ("train",), progress=False)
    assert set(stores) == {"train", "train views"} and stores["train views"].name.startswith(
        f"{encoder.key}-crop0.4-96-")                              # 48 training images x 2 crops
    train = split(load_samples(config), "train")
    whole, kept = cached_features(config, train, encoder, progress=False)
    views = cached_views(config, kept, whole, encoder, progress=False)
    assert views.shape == (48, 3, encoder.out_dim) and torch.equal(views[:, 0], whole)
    assert not torch.allclose(views[:, 1], views[:, 2], atol=1e-3)


def test_training_reads_one_view_of_each_image_per_batch_and_resumes_exactly(encoder, tiny_shapes, tmp_path,
                                                                             monkeypatch):
    seen, stop_at = [], [0]             # (inputs, rows) of every training step; the step to stop at (0: none)
    real = loop.TrainStep.forward

    def spy(self, x, words, rows, step):
        seen.append((x.clone(), rows.clone()))
        if stop_at[0] and len(seen) == stop_at[0]:
            raise KeyboardInterrupt
        return real(self, x, words, rows, step)

    monkeypatch.setattr(loop.TrainStep, "forward", spy)
    straight = loop.train(views_config(tiny_shapes, tmp_path, "straight", **{"train.checkpoint_every": 2,
                                                                               "decoder.dropout": 0.3}),
                          progress=False)
    config = views_config(tiny_shapes, tmp_path, "straight")
    train = split(load_samples(config), "train")
    whole, kept = cached_features(config, train, encoder, progress=False)
    views = cached_views(config, kept, whole, encoder, progress=False)            # [48, 3, D]
    chosen = []
    for x, rows in seen:
        match = (x[:, None] - views[rows]).abs().amax(-1) < 1e-6                  # [B, 3]: which view each row is
        assert (match.sum(1) == 1).all()
        chosen += match.float().argmax(1).tolist()
    assert len(chosen) == 2 * 48 and {0, 1, 2} <= set(chosen)   # every image once per epoch, crops among them

    # killed after its 3rd step (last.pt of step 2), resumed: the same weights as the run never killed
    seen.clear()
    stop_at[0] = 3
    with pytest.raises(KeyboardInterrupt):
        loop.train(views_config(tiny_shapes, tmp_path, "resumed", **{"train.checkpoint_every": 2,
                                                                      "decoder.dropout": 0.3}), progress=False)
    stop_at[0] = 0
    assert Run(tmp_path / "resumed").checkpoint("last")["progress"]["step"] == 2
    loop.train(None, resume=tmp_path / "resumed", progress=False)
    a, b = Run(straight).checkpoint("last")["model"], Run(tmp_path / "resumed").checkpoint("last")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
