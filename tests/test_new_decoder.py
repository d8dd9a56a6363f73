"""A new decoder is one class: a GRU decoder written here, with no fast step, trains and decodes
with every strategy. tests/test_decoders.py runs it through the same contract tests as the
built-in kinds."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lrcn.decoding import DecodeConfig, generate
from lrcn.models.base import CaptionDecoder
from lrcn.models.registry import build_decoder
from lrcn.models.ensemble import Ensemble

PAD, BOS, EOS, UNK = 0, 1, 2, 3
IDS = dict(bos=BOS, eos=EOS, unk=UNK, pad=PAD)
V, D = 20, 10


class GRUDecoder(CaptionDecoder):
    """The image sets the initial hidden state of a GRU stack, which then reads the words."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 num_layers: int = 1, dropout: float = 0.5):
        super().__init__(vocab_size, feature_dim, embed_dim, hidden_dim, dropout)
        self.init_h = nn.Linear(feature_dim, num_layers * hidden_dim)
        self.gru = nn.GRU(embed_dim, hidden_dim, num_layers, batch_first=True)

    def init_state(self, features):                                   # [B, D] -> ([B, L, H],)
        h = torch.tanh(self.init_h(self.dropout(features)))
        return (h.view(len(features), self.gru.num_layers, -1),)

    def forward_steps(self, words, state):                           # [B, T] -> [B, T, V]
        y, h = self.gru(self.dropout(self.embed(words)), state[0].transpose(0, 1).contiguous())
        return self.out(self.dropout(y)), (h.transpose(0, 1),)


def captioning_task(n: int = 8, seed: int = 0):
    """Features [n, D] and one random caption of 3-6 words per image: inputs and targets [n, 7]."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, D, generator=g)
    captions = [torch.randint(4, V, (int(k),), generator=g).tolist() for k in torch.randint(3, 7, (n,), generator=g)]
    inputs, targets = torch.full((n, 7), PAD), torch.full((n, 7), PAD)
    for i, c in enumerate(captions):
        inputs[i, :len(c) + 1] = torch.tensor([BOS, *c])
        targets[i, :len(c) + 1] = torch.tensor([*c, EOS])
    return features, captions, inputs, targets


@pytest.fixture(scope="module")
def trained():
    """A GRU decoder trained with teacher forcing on ``captioning_task``; its losses per step."""
    torch.manual_seed(0)
    model = GRUDecoder(V, D, embed_dim=24, hidden_dim=32, num_layers=2, dropout=0.1)
    features, captions, inputs, targets = captioning_task()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(200):
        loss = F.cross_entropy(model(features, inputs).transpose(1, 2), targets, ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), features, captions, losses


def rescored(model, features, hypotheses) -> list[list[float]]:
    """Teacher-forced log-prob of each hypothesis' words and <end>, per image."""
    out = []
    with torch.no_grad():
        for f, hyps in zip(features, hypotheses):
            row = []
            for h in hyps:
                words = torch.tensor([[BOS, *h.tokens]])
                log_probs = model(f[None], words).log_softmax(-1)[0]                # [T, V]
                row.append(log_probs.gather(1, torch.tensor([*h.tokens, EOS])[:, None]).sum().item())
            out.append(row)
    return out


def assert_scored_by_the_model(model, features, hypotheses):
    for hyps, expected in zip(hypotheses, rescored(model, features, hypotheses), strict=True):
        assert [h.log_prob for h in hyps] == pytest.approx(expected, abs=1e-4)


def test_training_lowers_the_loss_and_greedy_reproduces_the_captions(trained):
    model, features, captions, losses = trained
    assert losses[0] > 2.5 and losses[-1] < 0.02 * losses[0]
    with torch.no_grad():
        hyps = generate(model, features, DecodeConfig(max_len=10), **IDS)
    assert [h[0].tokens for h in hyps] == captions
    assert_scored_by_the_model(model, features, hyps)


@pytest.mark.parametrize("config", [dict(beam_size=3, n_best=3), dict(beam_size=4, n_best=2, length_penalty="gnmt"),
                                    dict(beam_size=4, groups=2, n_best=4, diversity_strength=0.5)])
def test_beam_search_finds_the_captions_and_batches_like_one_image_at_a_time(trained, config):
    model, features, captions, _ = trained
    with torch.no_grad():
        batched = generate(model, features, DecodeConfig(max_len=10, **config), **IDS)
        single = [generate(model, features[i:i + 1], DecodeConfig(max_len=10, **config), **IDS)[0]
                  for i in range(len(features))]
    assert [h[0].tokens for h in batched] == captions
    assert all(len(h) == config["n_best"] for h in batched)
    for a, b in zip(batched, single, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.log_prob for h in a] == pytest.approx([h.log_prob for h in b], abs=1e-4)
    assert_scored_by_the_model(model, features, batched)


def test_sampling_draws_captions_the_model_scores_and_repeats_with_the_seed(trained):
    model, features, captions, _ = trained
    config = DecodeConfig(sample=True, temperature=3.0, n_best=5, seed=7, max_len=10)
    with torch.no_grad():
        hyps = generate(model, features, config, **IDS)
        again = generate(model, features, config, **IDS)
        cold = generate(model, features, DecodeConfig(sample=True, temperature=0.05, seed=1, max_len=10), **IDS)
    assert [[h.tokens for h in row] for row in hyps] == [[h.tokens for h in row] for row in again]
    assert all(len(row) == 5 for row in hyps)
    assert len({tuple(h.tokens) for row in hyps for h in row}) > len(captions)      # hot: varied draws
    assert_scored_by_the_model(model, features, hyps)
    assert [h[0].tokens for h in cold] == captions                                  # cold: the argmax


def test_an_ensemble_with_a_fast_member_decodes_with_the_new_decoder(trained):
    """The ensemble enters the fast member's ``reusing_outputs``; the GRU has none and needs none."""
    model, features, captions, _ = trained
    torch.manual_seed(0)
    other = build_decoder("show_and_tell", V, D, embed_dim=8, hidden_dim=8).eval()
    ensemble = Ensemble([model, other])
    assert not hasattr(model, "reusing_outputs")
    with torch.no_grad(), ensemble.reusing_outputs():
        assert other._buffers_kept is not None
    with torch.no_grad():
        hyps = generate(ensemble, features, DecodeConfig(beam_size=3, max_len=10), **IDS)
    assert_scored_by_the_model(ensemble_as_decoder(ensemble), features, hyps)


def ensemble_as_decoder(ensemble):
    """Teacher forcing of an ensemble by stepping (the ensemble has no forward)."""
    def forward(features, words):
        state, out = ensemble.init_state(features), []
        for t in range(words.shape[1]):
            log_probs, state = ensemble.step(words[:, t], state)
            out.append(log_probs.clone())
        return torch.stack(out, 1)
    return forward
