"""The ensemble decoder: mean of the members' probabilities behind the step interface."""

import json

import pytest
import torch

from lrcn.decoding import DecodeConfig, generate
from lrcn.errors import CheckpointError, ConfigError
from lrcn.models.registry import build_decoder
from lrcn.models.ensemble import Ensemble

V = 19


def decoder(kind: str, feature_dim: int, seed: int):
    torch.manual_seed(seed)
    return build_decoder(kind, V, feature_dim, embed_dim=8, hidden_dim=10, dropout=0.0).eval()


def test_one_member_decodes_exactly_as_the_member():
    member = decoder("show_and_tell", 6, 0)
    features = torch.randn(5, 6)
    config = DecodeConfig(beam_size=3, max_len=8, n_best=2)
    alone = generate(member, features, config, bos=1, eos=2)
    together = generate(Ensemble([member]), features, config, bos=1, eos=2)
    assert [[h.tokens for h in hyps] for hyps in alone] == [[h.tokens for h in hyps] for hyps in together]


def test_step_is_the_log_of_the_mean_probability_through_reorders():
    # members with different state layouts: show_and_tell (h, c), lrcn_2f (4 LSTM tensors + image)
    members = [decoder("show_and_tell", 6, 1), decoder("lrcn_2f", 6, 2), decoder("init_state", 6, 3)]
    ensemble = Ensemble(members)
    features = torch.randn(4, 6)
    words = torch.randint(3, V, (4, 5))
    index = torch.tensor([3, 0, 0, 1])
    state = ensemble.init_state(features)
    states = [m.init_state(features) for m in members]
    with torch.no_grad():
        for t in range(5):
            log_probs, state = ensemble.step(words[:, t], state)
            outs = [m.step(words[:, t], s) for m, s in zip(members, states)]
            states = [s for _, s in outs]
            expected = torch.stack([lp.exp() for lp, _ in outs]).mean(0).log()
            torch.testing.assert_close(log_probs, expected, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(4))
            if t == 2:   # beam search gathers rows: every member's state follows
                state = ensemble.reorder(state, index)
                states = [m.reorder(s, index) for m, s in zip(members, states)]
                words = words[index]


def test_members_read_their_own_slice_of_concatenated_features():
    """A pooled-vector member [B, 4], another [B, 7] and an attention member on a region grid
    [B, 5, 2, 3]: the ensemble's features are theirs flattened side by side, [B, 4 + 7 + 30]."""
    a, b, c = decoder("show_and_tell", 4, 4), decoder("lrcn_1u", 7, 5), decoder("show_attend_tell", 5, 6)
    fa, fb, fc = torch.randn(3, 4), torch.randn(3, 7), torch.randn(3, 5, 2, 3)
    ensemble = Ensemble([a, b, c], feature_shapes=[4, (7,), (5, 2, 3)])
    start = torch.ones(3, dtype=torch.long)
    with torch.no_grad():
        log_probs, _ = ensemble.step(start, ensemble.init_state(torch.cat([fa, fb, fc.flatten(1)], dim=1)))
        pa, _ = a.step(start, a.init_state(fa))
        pb, _ = b.step(start, b.init_state(fb))
        pc, _ = c.step(start, c.init_state(fc))
    torch.testing.assert_close(log_probs, ((pa.exp() + pb.exp() + pc.exp()) / 3).log(), atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match=r"shape \[3, 10\], its members read \[B, 4 \+ 7 \+ 30\]"):
        ensemble.init_state(torch.randn(3, 10))


def test_greedy_ensemble_follows_the_averaged_distribution():
    members = [decoder("show_and_tell", 6, 6), decoder("show_and_tell", 6, 7)]
    features = torch.randn(2, 6)
    hyps = generate(Ensemble(members), features, DecodeConfig(max_len=6, suppress_unk=False), bos=1, eos=2)
    # by hand: feed the argmax of the mean probability (never <start> or <pad>) until <end>
    for row, found in zip(features, hyps):
        states = [m.init_state(row[None]) for m in members]
        word, tokens = torch.tensor([1]), []
        with torch.no_grad():
            for _ in range(7):
                outs = [m.step(word, s) for m, s in zip(members, states)]
                states = [s for _, s in outs]
                probs = torch.stack([lp.exp() for lp, _ in outs]).mean(0)[0]
                probs[[0, 1]] = 0
                word = probs.argmax()[None]
                if word.item() == 2 or len(tokens) == 6:
                    break
                tokens.append(word.item())
        assert found[0].tokens == tokens


def test_members_must_share_the_vocabulary():
    other = build_decoder("show_and_tell", V + 1, 6, embed_dim=8, hidden_dim=10)
    with pytest.raises(CheckpointError, match="vocabulary"):
        Ensemble([decoder("show_and_tell", 6, 0), other])


@pytest.fixture(scope="module")
def seed_runs(tiny_shapes, tmp_path_factory):
    """Two one-epoch runs on tiny shapes that differ only in their seed, and the runs folder."""
    from conftest import tiny_overrides
    from lrcn.config import load_config
    from lrcn.commands.demo import DEMO_CONFIG
    from lrcn.train.loop import train

    runs_dir = tmp_path_factory.mktemp("runs")
    return [train(load_config(DEMO_CONFIG, tiny_overrides(tiny_shapes, runs_dir, name=f"s{seed}", **{
        "train.seed": seed, "train.epochs": 1})), progress=False) for seed in (0, 1)], runs_dir


def test_evaluate_ensemble_of_one_run_equals_evaluate_and_of_two_writes_its_files(seed_runs, tiny_shapes,
                                                                                   monkeypatch):
    from conftest import tiny_overrides
    from lrcn.cli import main
    from lrcn.config import load_config
    from lrcn.commands.demo import DEMO_CONFIG
    from lrcn.commands.evaluate import evaluate
    from lrcn.metrics import load_results
    from lrcn.commands.evaluate import evaluate_ensemble
    from lrcn.train.loop import train

    runs, runs_dir = seed_runs
    monkeypatch.setattr("lrcn.metrics.scoring.java_available", lambda: False)   # no METEOR: a minute of Java
    greedy = DecodeConfig(max_len=10)
    _, alone = evaluate(runs[0], "val", greedy, progress=False)
    scores, together = evaluate_ensemble(runs[:1], "val", greedy, progress=False)
    assert together == alone and "CIDEr" in scores.corpus
    assert main(["-q", "evaluate", str(runs[0]), "--split", "val", "--beam", "2", "--ensemble", str(runs[1])]) == 0
    captions = load_results(runs[0] / "results_val_beam2-ens2.json")
    assert len(captions) == 6 and (runs[0] / "metrics_val_beam2-ens2.json").exists()
    with pytest.raises(CheckpointError, match="vocabulary"):
        other = train(load_config(DEMO_CONFIG, tiny_overrides(tiny_shapes, runs_dir, name="other", **{
            "train.epochs": 1, "data.min_word_count": 100})), progress=False)
        evaluate_ensemble([runs[0], other], "val", greedy, progress=False)


def test_evaluate_ensemble_of_attention_on_a_grid_beside_pooled_features(seed_runs, tiny_shapes, monkeypatch):
    """A Show-Attend-Tell run reads [D, h, w] grids, the seed runs pooled [D] vectors: they decode
    as one, and the attention run averaged with itself captions exactly as it does alone."""
    from conftest import tiny_overrides
    from lrcn.commands.demo import DEMO_CONFIG
    from lrcn.commands.evaluate import evaluate, evaluate_ensemble
    from lrcn.config import load_config
    from lrcn.train.loop import train

    runs, runs_dir = seed_runs
    monkeypatch.setattr("lrcn.metrics.scoring.java_available", lambda: False)
    sat = train(load_config(DEMO_CONFIG, tiny_overrides(tiny_shapes, runs_dir, name="sat", **{
        "train.epochs": 1, "decoder.kind": "show_attend_tell", "encoder.features": "grid",
        "encoder.grid_size": 2})), progress=False)
    beam = DecodeConfig(beam_size=2, max_len=10)
    _, alone = evaluate(sat, "val", beam, progress=False)
    assert evaluate_ensemble([sat, sat], "val", beam, progress=False)[1] == alone
    scores, mixed = evaluate_ensemble([runs[0], sat, runs[1]], "val", beam, progress=False)
    assert len(mixed) == 6 and all(mixed.values()) and "CIDEr" in scores.corpus


def test_caption_with_an_ensemble_captions_as_evaluate_does(seed_runs, tiny_shapes, tmp_path, monkeypatch):
    from conftest import tiny_overrides
    from lrcn.cli import main
    from lrcn.commands.caption import caption_paths
    from lrcn.commands.evaluate import evaluate_ensemble
    from lrcn.config import load_config
    from lrcn.commands.demo import DEMO_CONFIG
    from lrcn.data.loaders import load_samples, split
    from lrcn.train.loop import train

    runs, runs_dir = seed_runs
    monkeypatch.setattr("lrcn.metrics.scoring.java_available", lambda: False)
    beam = DecodeConfig(beam_size=2, max_len=10)
    val = split(load_samples(load_config(runs[0] / "config.yaml")), "val")
    images = [str(s.path) for s in val]
    _, expected = evaluate_ensemble(runs, "val", beam, progress=False)       # from the feature stores
    result = caption_paths(runs[0], images, decode=beam, ensemble=[runs[1]], progress=False)
    assert {s.id: result["captions"][str(s.path)]["caption"] for s in val} == expected
    assert result["ensemble"] == [str(runs[1].resolve())]
    # a run averaged with itself is the run alone
    alone = caption_paths(runs[0], images, decode=beam, progress=False)
    assert {s.id: alone["captions"][str(s.path)]["caption"] for s in val} != expected   # the members disagree
    assert caption_paths(runs[0], images, decode=beam, ensemble=[runs[0]], progress=False)["captions"] == \
        alone["captions"]
    # --ensemble after the inputs; a results folder written without the ensemble is not resumed with it
    out = tmp_path / "out"
    assert main(["-q", "caption", str(runs[0]), *images, "--out", str(out), "--beam", "2"]) == 0
    assert main(["-q", "caption", str(runs[0]), *images, "--out", str(out), "--beam", "2",
                 "--ensemble", str(runs[1])]) == 0
    written = json.loads((out / "captions.json").read_text())
    assert {s.id: written["captions"][str(s.path)]["caption"] for s in val} == expected
    # members must read inputs alike: another image size is refused before any image is read
    other = train(load_config(DEMO_CONFIG, tiny_overrides(tiny_shapes, runs_dir, name="size48", **{
        "train.epochs": 1, "encoder.image_size": 48})), progress=False)
    with pytest.raises(ConfigError, match="size48.*other features"):
        caption_paths(runs[0], images, ensemble=[other], progress=False)


def test_reusing_outputs_enters_every_member():
    members = [decoder("show_and_tell", 6, 1), decoder("lrcn_2u", 6, 2)]
    ensemble = Ensemble(members)
    with ensemble.reusing_outputs():
        assert all(m._buffers_kept == {} for m in members)
    assert all(m._buffers_kept is None for m in members)
