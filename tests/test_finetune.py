"""The two-stage recipe of Show and Tell: a decoder on frozen features, then the top CNN block jointly."""

import torch

from conftest import tiny_overrides
from lrcn.config import load_config
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.commands.evaluate import evaluate
from lrcn.models.encoders import build_encoder, state_tag
from lrcn.run import Run, load_models
from lrcn.train.loop import train


def test_stage_two_fine_tunes_only_the_top_block_starting_from_stage_one(tiny_shapes, tmp_path):
    common = tiny_overrides(tiny_shapes, tmp_path, **{"train.epochs": 1})
    stage1 = Run(train(load_config(DEMO_CONFIG, common + ["name=stage1"]), progress=False))
    stage2 = Run(train(load_config(DEMO_CONFIG, common + [
        "name=stage2", f"train.init_from={stage1.dir}", "encoder.trainable_blocks=1", "encoder.lr=1e-3",
        "train.lr=1e-4"]), progress=False))

    assert stage2.vocab() == stage1.vocab()
    ckpt = stage2.checkpoint("last")
    pretrained = build_encoder("efficientnet_lite0", image_size=64, crop=False).state_dict()
    tuned = ckpt["encoder"]
    last_block = f"body.{len(build_encoder('efficientnet_lite0', pretrained=False).blocks) - 1}."
    changed = {k for k in pretrained if pretrained[k].is_floating_point() and not torch.equal(pretrained[k], tuned[k])}
    assert changed and all(k.startswith(last_block) for k in changed)
    # the decoder started from stage one's weights, not from scratch
    start = stage1.checkpoint("best")["model"]
    for k in start:
        assert (ckpt["model"][k] - start[k]).abs().max() < 0.05, k

    # evaluation uses the fine-tuned encoder (its own feature store inside the run folder)
    scores, captions = evaluate(stage2.dir, "test", progress=False)
    assert len(captions) == 6 and (stage2.dir / "features").is_dir()
    # ... named by the tuned weights, so another checkpoint's features are never read back as these
    encoder = load_models(stage2, "last")[2]
    assert encoder.key == f"efficientnet_lite0{state_tag(tuned)}-64-nocrop" != build_encoder(
        "efficientnet_lite0", image_size=64, crop=False).key
    assert state_tag({**tuned, next(iter(changed)): tuned[next(iter(changed))] + 1e-6}) != state_tag(tuned)
    stores = [p.name for p in (stage2.dir / "features").iterdir()]
    assert stores and all(name.startswith(f"{encoder.key}-") for name in stores)
