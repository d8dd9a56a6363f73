"""The blind and nearest-neighbour baselines on hand-made examples with known answers."""

from pathlib import Path

import pytest
import torch

from lrcn.decoding.baselines import consensus_caption, most_consensual, nearest_neighbour_captions
from lrcn.data.records import Sample
from lrcn.errors import ConfigError

DOG = ["a dog runs on the grass", "a brown dog runs across the grass", "a dog is running on green grass",
       "the animal plays outside", "a dog runs on the grass in a park"]
BEACH = ["two children play on the beach", "kids playing in the sand at the beach", "a boy and a girl on a beach",
         "two children play in the sand on the beach", "children play on the beach near the water"]
SNOW = ["a man skis down a snowy hill", "a skier goes down the mountain", "a person skiing in the snow",
        "a man skis down the snowy mountain", "a man in a red jacket skis down a hill"]


def _samples() -> list[Sample]:
    return [Sample(name, Path(f"{name}.jpg"), "train", caps) for name, caps in
            [("dog", DOG), ("beach", BEACH), ("snow", SNOW)]]


CONSENSUS = ["a dog runs on the grass", "two children play on the beach", "a man skis down a snowy hill"]


def test_most_consensual_picks_the_caption_closest_to_the_others():
    # "a dog runs on the grass" shares most n-grams with the other dog captions; the odd one out
    # ("the animal plays outside", CIDEr-D 0) and the longer variants lose.
    assert most_consensual([DOG, BEACH, SNOW]) == CONSENSUS
    assert most_consensual([["only one"]]) == ["only one"]


def test_most_consensual_agrees_with_pycocoevalcap_leave_one_out_cider():
    from pycocoevalcap.cider.cider import Cider

    pools = [DOG, BEACH, SNOW]
    gts = {f"{n}_{j}": pool[:j] + pool[j + 1:] for n, pool in enumerate(pools) for j in range(len(pool))}
    res = {f"{n}_{j}": [pool[j]] for n, pool in enumerate(pools) for j in range(len(pool))}
    _, per_caption = Cider().compute_score(gts, res)      # pycocoevalcap's Cider is CIDEr-D
    per_caption = dict(zip(gts, per_caption))
    best = [max(pool, key=lambda c, n=n, pool=pool: per_caption[f"{n}_{pool.index(c)}"])
            for n, pool in enumerate(pools)]
    assert best == most_consensual(pools)


def test_nearest_neighbour_returns_the_consensus_caption_of_the_closest_training_image():
    train = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])      # dog, beach, snow
    # cosine similarity: scale does not matter, direction does
    queries = torch.tensor([[0.1, 5.0, 0.2], [9.0, 1.0, 1.0], [0.2, 0.1, 0.3], [0.0, 2.0, 2.1]])
    dog, beach, snow = CONSENSUS
    assert nearest_neighbour_captions(train, _samples(), queries) == [beach, dog, snow, snow]


def test_nearest_neighbour_with_k_pools_the_captions_of_the_k_nearest_images():
    # each caption set of DOG / BEACH / SNOW split over two training images that lie close together
    names_captions = [("x", [DOG[3], DOG[0]]), ("y", [DOG[1], DOG[2], DOG[4]]), ("b1", BEACH[:2]), ("b2", BEACH[2:]),
                      ("s1", SNOW[:2]), ("s2", SNOW[2:])]
    samples = [Sample(name, Path(f"{name}.jpg"), "train", caps) for name, caps in names_captions]
    train = torch.tensor([[1.0, 0, 0], [1, 0.2, 0], [0, 1, 0], [0.2, 1, 0], [0, 0, 1], [0, 0.2, 1]])
    queries = torch.tensor([[1.0, 0.05, 0], [0, 1, 0.05], [0.05, 0, 1]])
    # k=2 pools x+y, b1+b2, s1+s2: the same pools as DOG, BEACH, SNOW, so the same consensus
    assert nearest_neighbour_captions(train, samples, queries, k=2) == CONSENSUS
    # k=1: x alone holds "the animal plays outside" and "a dog runs on the grass", which share no
    # n-gram (both CIDEr-D 0): the tie goes to the first
    assert nearest_neighbour_captions(train, samples, queries[:1], k=1) == ["the animal plays outside"]
    with pytest.raises(ConfigError, match="k=7"):
        nearest_neighbour_captions(train, samples, queries, k=7)


def test_blind_baseline_picks_the_obviously_most_consensual_caption():
    common = "a dog runs on the grass"
    references = {f"img{i}": [common, f"a dog runs on the grass near tree number {i}", "a dog is outside",
                              f"unrelated words {i} zebra", "a brown dog runs"] for i in range(6)}
    references["odd"] = ["a plane flies in the sky", "an airplane in the clouds", "a jet overhead",
                         "a plane in a blue sky", "the aircraft is flying"]
    assert consensus_caption(references) == common


def test_baseline_command_scores_nn_and_blind_into_the_run_folder(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from lrcn.cli import main
    from lrcn.config import load_config
    from lrcn.data.records import write_karpathy
    from lrcn.metrics import load_results
    from lrcn.run import Run
    from lrcn.text import Vocabulary

    colours = {"dog": (200, 30, 30), "beach": (30, 200, 30), "snow": (240, 240, 250)}
    train = []
    for (name, caps), colour in zip([("dog", DOG), ("beach", BEACH), ("snow", SNOW)], colours.values()):
        Image.new("RGB", (64, 48), colour).save(tmp_path / f"{name}.png")
        train.append(Sample(name, tmp_path / f"{name}.png", "train", caps))
    # the val images are copies of two training images: their nearest neighbours are those images
    val = [Sample(f"val_{name}", tmp_path / f"{name}.png", "val", ["a reference caption", "another one"])
           for name in ("snow", "dog")]
    write_karpathy(tmp_path / "data.json", "handmade", train + val, tmp_path)
    config = load_config(None, [f"data.split_json={tmp_path / 'data.json'}", f"train.runs_dir={tmp_path}",
                                "name=run", "encoder.image_size=64", "encoder.crop=false", "data.num_workers=0"])
    run = Run.create(config)
    monkeypatch.setattr("lrcn.metrics.scoring.java_available", lambda: False)   # no METEOR: a minute of Java
    Vocabulary.build([c for s in train for c in s.captions]).save(run.vocab_path)

    assert main(["-q", "baseline", str(run.dir), "--split", "val", "--kind", "nn"]) == 0
    assert "CIDEr" in capsys.readouterr().out
    dog, _, snow = CONSENSUS
    assert load_results(run.dir / "results_val_nn.json") == {"val_snow": snow, "val_dog": dog}
    assert (run.dir / "metrics_val_nn.json").exists() and (run.dir / "per_image_val_nn.json").exists()

    assert main(["-q", "baseline", str(run.dir), "--split", "val", "--kind", "blind"]) == 0
    blind = consensus_caption({s.id: s.captions for s in train})
    assert load_results(run.dir / "results_val_blind.json") == {"val_snow": blind, "val_dog": blind}
