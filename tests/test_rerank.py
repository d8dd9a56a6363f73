"""Consensus re-ranking: neighbours by cosine or by predicted captions, candidates ordered by mean
CIDEr-D against the neighbours' captions with the training set's document frequencies, wired into
decoding configs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from lrcn.cli import main

from lrcn.decoding import DecodeConfig
from lrcn.decoding.batch import caption_features
from lrcn.decoding.rerank import CaptionSpace, ConsensusReranker, caption_vectors, nearest, pooled
from lrcn.errors import ConfigError
from lrcn.metrics import CiderD
from lrcn.run import Run

TRAIN_CAPTIONS = [
    ["a dog runs on the grass", "a brown dog running in a field", "the dog runs through green grass"],
    ["a man rides a bike", "a cyclist rides down the road", "a man on a bicycle on the street"],
    ["two children play in the water", "kids splash in a pool", "two kids swimming in the water"],
    ["a dog jumps into the water", "a wet dog leaps into a lake", "a black dog splashes in the water"],
]
TRAIN_FEATURES = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.7, 0, 0.7]])


def test_nearest_is_by_cosine_and_pools_grids_and_clips():
    query = torch.tensor([[2.0, 0.1, 0], [0, 0, 0.3], [1, 0, 1.2]])
    assert nearest(TRAIN_FEATURES, query, 2).tolist() == [[0, 3], [2, 3], [3, 2]]
    grid = torch.arange(24.0).view(2, 3, 2, 2)
    assert torch.equal(pooled(grid), grid.mean(dim=(2, 3))) and pooled(torch.ones(2, 5, 3)).shape == (2, 3)
    with pytest.raises(ConfigError, match="choose 1 to 4"):
        nearest(TRAIN_FEATURES, query, 5)


def test_candidates_are_ordered_by_consensus_with_the_neighbours_captions():
    reranker = ConsensusReranker(TRAIN_FEATURES, TRAIN_CAPTIONS, k=2)
    query = torch.tensor([[1.0, 0.05, 0.1], [0, 1.0, 0]])
    candidates = [["a man rides a bike", "a dog runs through the grass", "a dog"],
                  ["a dog runs through the grass", "a man rides a bicycle down the street"]]
    assert reranker.order(query, candidates) == [[1, 2, 0], [1, 0]]
    # the consensus is the mean CIDEr-D against each neighbour's captions, with the training set's
    # document frequencies (a scorer built on all four training images)
    scorer = CiderD({n: c for n, c in enumerate(TRAIN_CAPTIONS)})
    neighbours = [0, 3]
    expected = [np.mean([scorer.score_batch([n], [c])[0] for n in neighbours]) for c in candidates[0]]
    np.testing.assert_allclose(reranker.consensus(query[:1], candidates[:1])[0], expected, rtol=1e-9)


def test_equal_consensus_keeps_the_models_order():
    reranker = ConsensusReranker(TRAIN_FEATURES, TRAIN_CAPTIONS, k=1)
    assert reranker.order(torch.tensor([[0, 1.0, 0]]), [["zebra", "giraffe", "okapi"]]) == [[0, 1, 2]]


class ScriptedDecoder(torch.nn.Module):
    """Beam search sees three captions for every image: word 4 (log-prob -0.1), 5 (-0.5), 6 (-1.0)."""

    vocab_size = 8

    def init_state(self, features):
        return (torch.zeros(len(features), 1),)

    def step(self, words, state):
        first = state[0][:, 0] == 0
        table = torch.full((len(words), 8), -30.0)
        table[first, 4], table[first, 5], table[first, 6] = -0.1, -0.5, -1.0
        table[~first, 2] = 0.0                                   # then <end>
        return table.log_softmax(-1), (torch.ones(len(words), 1),)

    def reorder(self, state, index):
        return tuple(s.index_select(0, index) for s in state)


class Words:
    start, end, unk, pad = 1, 2, 3, 0
    names = {4: "a man rides a bike", 5: "a dog runs through the grass", 6: "two kids swimming in the water"}

    def decode(self, tokens):
        return " ".join(self.names[t] for t in tokens)


def test_caption_features_reranks_every_candidate_of_the_search_and_keeps_n_best():
    reranker = ConsensusReranker(TRAIN_FEATURES, TRAIN_CAPTIONS, k=1)
    features = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    plain = caption_features(ScriptedDecoder(), features, Words(), DecodeConfig(beam_size=3, max_len=3))
    assert [h[0].tokens for h in plain] == [[4], [4], [4]]                   # the model's favourite
    decode = DecodeConfig(beam_size=3, max_len=3, rerank=1)
    reranked = caption_features(ScriptedDecoder(), features, Words(), decode, reranker=reranker)
    assert [[h.tokens for h in nbest] for nbest in reranked] == [[[5]], [[6]], [[4]]]
    two = caption_features(ScriptedDecoder(), features, Words(), DecodeConfig(beam_size=3, n_best=2, max_len=3,
                                                                              rerank=1), reranker=reranker)
    assert [len(nbest) for nbest in two] == [2, 2, 2] and two[0][0].tokens == [5]


def test_caption_vectors_are_unit_tf_idf_rows_of_the_ngrams_two_images_share():
    vectors = caption_vectors([["a dog runs", "a dog"], ["a dog sits"], ["a cat"]]).to_dense()
    # n-grams in two or more images: "a" (3 images: idf log 1 = 0), "dog" and "a dog" (2: log 1.5)
    assert vectors.shape == (3, 3)
    assert torch.allclose(vectors.norm(dim=1), torch.tensor([1.0, 1.0, 0.0]))
    first = sorted(vectors[0].tolist())
    assert first == pytest.approx([0.0, 2 ** -0.5, 2 ** -0.5])          # dog x2, "a dog" x2: equal weights
    assert torch.equal(vectors[0] > 0, vectors[1] > 0)


def shifted_scenes(n_per_class: int, seed: int):
    """Images of three kinds (dogs, bikes, children) whose features are dominated by something no
    caption mentions (a scene's light, 8 large dimensions), the kind only a small signal (3 dims)."""
    g = torch.Generator().manual_seed(seed)
    kinds = torch.arange(3).repeat_interleave(n_per_class)
    features = torch.cat([torch.nn.functional.one_hot(kinds, 3) * 0.5 + 0.05 * torch.randn(len(kinds), 3, generator=g),
                          3 * torch.randn(len(kinds), 8, generator=g)], dim=1)
    return features, kinds


def test_caption_space_finds_the_images_whose_captions_match_where_feature_cosine_does_not():
    features, kinds = shifted_scenes(50, seed=0)
    captions = [TRAIN_CAPTIONS[int(k)] for k in kinds]
    queries, query_kinds = shifted_scenes(5, seed=1)
    space = CaptionSpace(features, captions)
    by_captions = kinds[space.nearest(queries, 5)]                      # [15, 5] kinds of the neighbours
    by_features = kinds[nearest(features, queries, 5)]
    assert (by_captions == query_kinds[:, None]).all()
    assert (by_features == query_kinds[:, None]).float().mean() < 0.5   # the light decides instead


def test_caption_space_ranks_as_the_cosine_of_predicted_and_actual_caption_vectors():
    features, kinds = shifted_scenes(10, seed=2)
    captions = [TRAIN_CAPTIONS[int(k)][: 1 + n % 3] + [f"seen in scene {n}"] for n, k in enumerate(kinds)]
    queries, _ = shifted_scenes(4, seed=3)
    space = CaptionSpace(features, captions, ridge=0.5)
    # the reference: predict centred caption vectors with the ridge solution, compare by cosine
    x = torch.nn.functional.normalize((features - features.mean(0)).double(), dim=-1)
    t = caption_vectors(captions).to_dense().double()
    t = t - t.mean(0)
    a = torch.linalg.solve(x.T @ x + 0.5 * torch.eye(x.shape[1], dtype=x.dtype), x.T @ t)
    q = torch.nn.functional.normalize((queries - features.mean(0)).double(), dim=-1) @ a
    cosine = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(t, dim=-1).T
    # photos with the same captions tie (their one-photo n-grams are dropped), and topk orders ties as
    # the CPU's kernel does: compare the cosines of the neighbours picked, which ties leave unchanged
    picked = cosine.gather(1, space.nearest(queries, 6))
    assert torch.allclose(picked, cosine.topk(6, dim=1).values, atol=1e-6)
    assert (cosine.topk(7, dim=1).values.diff(dim=1) < -1e-3).any()     # some ranks do decide


def test_a_reranker_with_the_caption_metric_orders_by_its_neighbours():
    features, kinds = shifted_scenes(50, seed=0)
    captions = [TRAIN_CAPTIONS[int(k)] for k in kinds]
    reranker = ConsensusReranker(features, captions, k=5, metric="captions")
    queries, query_kinds = shifted_scenes(1, seed=4)
    candidates = [["a man rides a bike", "a dog runs through the grass", "two kids play in the water"]] * 3
    about = {0: 1, 1: 0, 2: 2}                                          # kind -> the candidate that says it
    assert [order[0] for order in reranker.order(queries, candidates)] == [about[int(k)] for k in query_kinds]
    with pytest.raises(ConfigError, match="decode.rerank_metric"):
        ConsensusReranker(features, captions, k=5, metric="clip")


def test_rerank_settings_are_validated_and_named():
    assert DecodeConfig(beam_size=20, rerank=3).label == "beam20-rerank3"
    assert DecodeConfig(beam_size=20, rerank=3, rerank_metric="captions").label == "beam20-rerank3-captions"
    with pytest.raises(ConfigError, match="decode.rerank_metric"):
        DecodeConfig(beam_size=20, rerank=3, rerank_metric="clip")
    assert DecodeConfig(beam_size=20, rerank=3).greedy().rerank == 0
    with pytest.raises(ConfigError, match="decode.rerank"):
        DecodeConfig(beam_size=1, rerank=3)
    with pytest.raises(ConfigError, match="decode.rerank"):
        DecodeConfig(beam_size=3, rerank=-1)


EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def test_the_flickr8k_recipe_runs_end_to_end_on_the_shapes_data(tiny_shapes, tmp_path):
    """experiments/flickr8k_mini_best.yaml as written (EfficientNet-Lite2, mirror-averaged features,
    weight averaging, beam search re-ranked by the captions of training images), only data and sizes
    shrunk; then its self-critical second stage (flickr8k_mini_best_scst.yaml), and an ensemble that
    re-ranks too, scoring a split and captioning photos."""
    runs = tmp_path / "runs"
    small = dict(o.split("=", 1) for o in tiny_overrides(tiny_shapes, runs))
    small.pop("decoder.dropout")                                # the recipe's own
    assert main(["-q", "train", str(EXPERIMENTS / "flickr8k_mini_best.yaml"),
                 *sets({**small, "name": "best", "train.epochs": 3})]) == 0
    best = Run.open(runs / "best")
    config = best.config()
    assert (config.encoder.name, config.encoder.flip_average, config.train.ema) == ("efficientnet_lite2", True, 0.99)
    assert (config.decode.beam_size, config.decode.rerank, config.decode.rerank_metric) == (30, 10, "captions")
    assert "average" in best.checkpoint("last")                 # the averaged weights are resumable
    out = tmp_path / "scores.json"
    assert main(["-q", "evaluate", str(runs / "best"), "--split", "test", "--beam", "4", "--rerank", "3",
                 "--json", str(out)]) == 0
    assert (runs / "best" / "results_test_beam4-rerank3-captions.json").exists()
    assert 0 <= json.loads(out.read_text())["CIDEr"] <= 10
    # the recipe's second stage as written: SCST from the first stage's best weights
    scst = {**small, "name": "scst", "train.epochs": 1, "train.init_from": runs / "best", "train.scst_samples": 2}
    assert main(["-q", "train", str(EXPERIMENTS / "flickr8k_mini_best_scst.yaml"), *sets(scst)]) == 0
    second = Run.open(runs / "scst").config()
    assert (second.train.loss, second.encoder.name, second.train.ema, second.decode.rerank_metric) == \
        ("scst", "efficientnet_lite2", 0.99, "captions")
    # an ensemble re-ranks too, its neighbours found with the first member's features
    assert main(["-q", "evaluate", str(runs / "scst"), "--ensemble", str(runs / "best"), "--split", "test",
                 "--beam", "4", "--rerank", "3", "--rerank-metric", "features"]) == 0
    assert (runs / "scst" / "results_test_beam4-rerank3-ens2.json").exists()
    # and captions new photos as one, with the recipe's own decoding (README: lrcn caption ... --ensemble)
    images = sorted((tiny_shapes.parent / "images").glob("*.png"))[:3]
    out = tmp_path / "captions.json"
    assert main(["-q", "caption", str(runs / "scst"), *map(str, images), "--json", str(out),
                 "--ensemble", str(runs / "best")]) == 0
    written = json.loads(out.read_text())
    assert written["ensemble"] == [str((runs / "best").resolve())] and written["decode"]["rerank"] == 10
    assert len(written["captions"]) == 3 and all(len(e["nbest"]) == 1 for e in written["captions"].values())


def sets(values: dict) -> list[str]:
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def test_nearest_in_chunks_equals_one_matrix(monkeypatch):
    g = torch.Generator().manual_seed(0)
    train, query = torch.randn(50, 8, generator=g), torch.randn(23, 8, generator=g)
    whole = nearest(train, query, 4)
    monkeypatch.setattr("lrcn.decoding.rerank.QUERY_CHUNK", 5)
    assert torch.equal(nearest(train, query, 4), whole) and whole.shape == (23, 4)
    assert nearest(train, query[:0], 4).shape == (0, 4)
