import pytest
import torch
from torch.nn import functional as F

from lrcn.errors import ConfigError
from lrcn.models.decoders import DECODERS, build_decoder

V, D = 23, 12


def make(kind, **kw):
    torch.manual_seed(0)
    return build_decoder(kind, V, D, embed_dim=16, hidden_dim=20, **kw)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_shapes_and_teacher_forcing_agrees_with_steps(kind):
    model = make(kind).eval()
    features, words = torch.randn(4, D), torch.randint(0, V, (4, 7))
    logits = model(features, words)
    assert logits.shape == (4, 7, V)
    state = model.init_state(features)
    assert all(s.shape[0] == 4 for s in state)
    steps = []
    for t in range(7):
        log_probs, state = model.step(words[:, t], state)
        assert log_probs.shape == (4, V)
        steps.append(log_probs)
    torch.testing.assert_close(torch.stack(steps, 1), F.log_softmax(logits, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_reorder_gathers_rows(kind):
    model = make(kind).eval()
    features = torch.randn(3, D)
    state = model.init_state(features)
    index = torch.tensor([2, 2, 0])
    a, _ = model.step(torch.tensor([1, 1, 1]), model.reorder(state, index))
    b, _ = model.step(torch.tensor([1, 1, 1]), model.init_state(features[index]))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_overfits_a_tiny_batch(kind):
    """Each decoder learns 4 captions of 6 words for 4 images to near-zero loss."""
    model = make(kind, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, D, generator=g)
    words = torch.cat([torch.ones(4, 1, dtype=torch.long), torch.randint(4, V, (4, 6), generator=g),
                       torch.full((4, 1), 2)], 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(features, words[:, :-1]).flatten(0, 1), words[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    # and greedy stepping reproduces every caption exactly
    model.eval()
    state, word, out = model.init_state(features), words[:, 0], []
    for _ in range(7):
        log_probs, state = model.step(word, state)
        word = log_probs.argmax(-1)
        out.append(word)
    assert torch.equal(torch.stack(out, 1), words[:, 1:])


def test_unknown_kind_is_named():
    with pytest.raises(ConfigError, match="'transformer' is unknown"):
        build_decoder("transformer", V, D)
