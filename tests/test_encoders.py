"""CNN image encoders: real offline weights, shapes, freezing, fine-tuning, errors."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18

from lrcn.errors import ConfigError, WeightsUnavailableError
from lrcn.models.encoders import ENCODERS, SameConv2d, build_encoder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny forwards: one thread is faster, and far faster when other jobs load the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lite0():
    return build_encoder()  # the default: EfficientNet-Lite0 with its packaged ImageNet weights


def top5(encoder, array: np.ndarray) -> list[str]:
    x = encoder.transform(Image.fromarray(array)).unsqueeze(0)
    with torch.no_grad():
        logits = encoder.classify(x)
    return [encoder.categories[i] for i in logits[0].topk(5).indices]


def test_offline_lite0_weights_are_real_imagenet_weights(lite0):
    assert lite0.name == "efficientnet_lite0" and len(lite0.categories) == 1000
    cat = top5(lite0, skimage.data.chelsea())
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(cat), cat
    coffee = top5(lite0, skimage.data.coffee())
    assert {"cup", "espresso", "coffee mug"} & set(coffee), coffee


def test_lite0_preprocessing_is_tf_scaling_with_center_crop(lite0):
    assert lite0.image_size == 224
    image = Image.new("RGB", (400, 300), (255, 127, 0))  # non-square -> resize + center crop
    x = lite0.transform(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    expected = torch.tensor([(255 - 127) / 128, 0.0, -127 / 128]).view(3, 1, 1)  # (x*255-127)/128
    torch.testing.assert_close(x, expected.expand(3, 224, 224), atol=1e-6, rtol=0)
    raw = torch.tensor([1.0, 127 / 255, 0.0]).view(3, 1, 1).expand(2, 3, 8, 8)  # [0, 1] tensors
    torch.testing.assert_close(lite0.normalize(raw), expected.expand(2, 3, 8, 8), atol=1e-6, rtol=0)
    gray = lite0.transform(Image.new("L", (50, 80), 127))  # grayscale photos become RGB
    assert gray.shape == (3, 224, 224)
    assert build_encoder(pretrained=False, image_size=128).transform(image).shape == (3, 128, 128)


def test_crop_false_keeps_the_borders():
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 100, 200))  # left quarter red
    cropped = build_encoder(pretrained=False)
    squashed = build_encoder(pretrained=False, crop=False, image_size=128)
    red = cropped.normalize(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1))[:, 0, 0]
    x = squashed.transform(image)
    assert x.shape == (3, 128, 128)
    torch.testing.assert_close(x[:, 64, :30], red[:, None].expand(3, 30), atol=1e-5, rtol=0)
    assert not torch.isclose(cropped.transform(image)[0], red[0]).any()  # centre crop drops it
    assert (cropped.key, squashed.key) == ("efficientnet_lite0-random-224", "efficientnet_lite0-random-128-nocrop")


def test_same_conv_pads_like_tensorflow():
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # TF 'SAME': output ceil(4/2)=2, the one padding pixel goes to the right/bottom only
    torch.testing.assert_close(conv(x), torch.tensor([[[[45.0, 39.0], [66.0, 50.0]]]]))
    conv1 = SameConv2d(1, 1, 5, stride=1, bias=False)
    assert conv1(torch.zeros(1, 1, 7, 9)).shape == (1, 1, 7, 9)


# every splitter and head layout; the deeper resnets/vgg19 only repeat their family's layout
@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "resnet50", "vgg16",
                                  "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                                  "efficientnet_b1"])
def test_feature_shapes(name):
    enc = build_encoder(name, pretrained=False)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        grid, pooled, logits = enc.forward_grid(x), enc(x), enc.classify(x)
    assert grid.shape == (2, enc.grid_dim, 2, 2)
    assert pooled.shape == (2, enc.out_dim)
    torch.testing.assert_close(pooled, grid.mean(dim=(2, 3)))
    assert logits.shape == (2, 1000) and len(enc.categories) == 1000
    assert enc.image_size in (224, 240) and len(enc.blocks) >= 5


def test_frozen_by_default_and_batchnorm_stats_stay_put():
    enc = build_encoder("resnet18", pretrained=False)
    assert enc.is_frozen and not any(p.requires_grad for p in enc.parameters())
    assert list(enc.trainable_parameters()) == [] and enc.param_groups(1e-4) == []
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.train()
    assert enc.training and not any(m.training for m in enc.modules() if m is not enc)
    with torch.no_grad():
        enc(torch.randn(4, 3, 64, 64) * 3 + 1)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_trainable_blocks_unfreezes_exactly_the_last_block():
    enc = build_encoder("efficientnet_b0", pretrained=False, trainable_blocks=1)
    last = enc.blocks[-1]
    assert not enc.is_frozen
    assert {id(p) for p in enc.trainable_parameters()} == {id(p) for p in last.parameters()}
    enc.train()
    assert all(m.training for m in last.modules())
    assert not any(m.training for b in enc.blocks[:-1] for m in b.modules())
    assert not any(m.training for m in enc.head.modules())
    enc(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in last.parameters())
    assert all(p.grad is None for n, p in enc.named_parameters() if not p.requires_grad)
    (group,) = enc.param_groups(3e-5)
    assert group["lr"] == 3e-5 and len(group["params"]) == len(list(last.parameters()))
    enc.eval()
    assert not any(m.training for m in enc.modules())
    with pytest.raises(ConfigError, match="trainable_blocks"):
        build_encoder("resnet18", pretrained=False, trainable_blocks=len(enc.blocks) + 10)


def test_encode_frames_equals_a_per_frame_loop(lite0):
    frames = torch.randn(2, 3, 3, 64, 64)  # [B, T, 3, S, S]
    with torch.no_grad():
        batched = lite0.encode_frames(frames)
        looped = torch.stack([lite0(frames[:, t]) for t in range(frames.shape[1])], dim=1)
    assert batched.shape == (2, 3, lite0.out_dim)
    torch.testing.assert_close(batched, looped, atol=1e-4, rtol=1e-4)


def test_unknown_encoder_lists_the_known_names():
    with pytest.raises(ConfigError, match="resnet9000") as e:
        build_encoder("resnet9000")
    assert all(name in str(e.value) for name in ENCODERS)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache under tmp_path and a download that fails like having no network."""
    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def test_offline_torchvision_weights_error_is_actionable(offline):
    with pytest.raises(WeightsUnavailableError) as e:
        build_encoder("resnet18")
    message = str(e.value)
    cached = offline / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    for needle in ["could not be fetched", str(cached), "TORCH_HOME", "weights_path",
                   "efficientnet_lite0", "name resolution"]:
        assert needle in message, needle
    # following the advice: a file placed at the named path is used without any download
    model = resnet18()
    torch.save(model.state_dict(), cached)
    enc = build_encoder("resnet18")
    assert all(torch.equal(a, b) for a, b in zip(enc.parameters(), model.parameters(), strict=True))


def test_weights_path(offline):
    model = mobilenet_v3_large()
    path = offline / "mnv3.pth"
    torch.save(model.state_dict(), path)
    enc = build_encoder("mobilenet_v3_large", weights_path=str(path))
    assert all(torch.equal(a, b) for a, b in zip(enc.parameters(), model.parameters(), strict=True))
    # feature stores are named by the weights' content: other weights never read back these features
    other = offline / "mnv3-other.pth"
    torch.save(mobilenet_v3_large().state_dict(), other)
    same = offline / "mnv3-copy.pth"
    same.write_bytes(path.read_bytes())
    assert enc.key.startswith("mobilenet_v3_large-w") and enc.key.endswith("-224")
    assert build_encoder("mobilenet_v3_large", weights_path=str(same)).key == enc.key
    assert build_encoder("mobilenet_v3_large", weights_path=str(other)).key != enc.key
    assert build_encoder("mobilenet_v3_large", pretrained=False).key == "mobilenet_v3_large-random-224"
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_encoder("resnet18", weights_path=str(offline / "missing.pth"))
    with pytest.raises(WeightsUnavailableError, match="EfficientNet-Lite0"):
        build_encoder("efficientnet_lite0", weights_path=str(path))
    with pytest.raises(WeightsUnavailableError, match="does not hold resnet18 weights"):
        build_encoder("resnet18", weights_path=str(path))
    (offline / "junk.pth").write_bytes(b"not a tensor file")
    with pytest.raises(WeightsUnavailableError, match="cannot read"):
        build_encoder("resnet18", weights_path=str(offline / "junk.pth"))
