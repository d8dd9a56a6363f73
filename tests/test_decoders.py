"""The decoders' contract, for every kind and the GRU of tests/test_new_decoder.py; the CPU fast
step (lrcn.models.fast_step) for the kinds that opt into it, against the plain step."""

import contextlib

import pytest
import torch
from torch.nn import functional as F

from conftest import assert_step_interface, overfit_and_replay
from lrcn.errors import ConfigError
from lrcn.models.base import CaptionDecoder
from lrcn.models.registry import DECODERS, build_decoder
from lrcn.models.fast_step import FastStep, log_softmax_
from test_new_decoder import GRUDecoder

V, D = 23, 12
KINDS = [*sorted(DECODERS), "gru"]                  # the contract: every kind, and a new one
FAST_KINDS = sorted(set(DECODERS) - {"show_attend_tell"})   # the kinds that opt into the fast step


def make(kind, **kw):
    torch.manual_seed(0)
    if kind == "gru":
        return GRUDecoder(V, D, embed_dim=16, hidden_dim=20, **kw)
    return build_decoder(kind, V, D, embed_dim=16, hidden_dim=20, **kw)


def test_the_registered_kinds_opt_into_the_fast_step_and_the_new_one_does_not():
    assert all(isinstance(make(kind), FastStep) for kind in FAST_KINDS)
    for plain in ("gru", "show_attend_tell"):
        assert not isinstance(make(plain), FastStep) and not hasattr(make(plain), "reusing_outputs")


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_forcing_agrees_with_steps_and_reorder_gathers(kind):
    assert_step_interface(make(kind).eval(), torch.randn(4, D), torch.randint(0, V, (4, 7)))


@pytest.mark.parametrize("kind", KINDS)
def test_overfits_a_tiny_batch(kind):
    """Each decoder learns 4 captions of 6 words for 4 images to near-zero loss."""
    model = make(kind, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, D, generator=g)
    words = torch.cat([torch.ones(4, 1, dtype=torch.long), torch.randint(4, V, (4, 6), generator=g),
                       torch.full((4, 1), 2)], 1)
    assert overfit_and_replay(model, features, words) < 0.02     # and greedy stepping replays every caption


@pytest.mark.parametrize("kind", KINDS)
def test_plain_step_is_log_softmax_of_one_forward_step(kind):
    """``CaptionDecoder.step``: words [B] -> float log-probs [B, V], the state ``forward_steps`` leaves."""
    model = make(kind).eval()
    state, words = model.init_state(torch.randn(5, D)), torch.randint(0, V, (5,))
    log_probs, after = CaptionDecoder.step(model, words, state)
    logits, expected = model.forward_steps(words[:, None], state)
    assert log_probs.shape == (5, V) and log_probs.dtype == torch.float32
    assert torch.equal(log_probs, F.log_softmax(logits[:, 0], -1))
    assert all(torch.equal(a, b) for a, b in zip(after, expected, strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_tied_embeddings_are_one_matrix_that_learns_and_survives_a_checkpoint(kind):
    """``tie_embeddings``: the output layer's weights are the embedding (one parameter fewer, and
    one gradient from both uses), small at the start, and a tied model's state dict loads into
    a fresh tied model."""
    def tied():
        torch.manual_seed(0)
        sizes = dict(embed_dim=20, hidden_dim=20, dropout=0.0)
        decoder = GRUDecoder(V, D, **sizes) if kind == "gru" else build_decoder(kind, V, D, **sizes)
        untied = sum(p.numel() for p in decoder.parameters())
        decoder.tie_embeddings()
        return decoder, untied

    model, untied = tied()
    assert model.out.weight is model.embed.weight
    assert sum(p.numel() for p in model.parameters()) == untied - V * 20
    assert model.embed.weight.abs().max() <= 0.1 and not model.embed.weight[0].any()
    g = torch.Generator().manual_seed(1)
    features = torch.randn(4, D, generator=g)
    words = torch.cat([torch.ones(4, 1, dtype=torch.long), torch.randint(4, V, (4, 6), generator=g),
                       torch.full((4, 1), 2)], 1)
    assert overfit_and_replay(model, features, words, steps=300) < 0.02       # tied weights learn more slowly
    assert_step_interface(model.eval(), features, words)
    fresh, _ = tied()
    fresh.load_state_dict(model.state_dict())
    assert fresh.out.weight is fresh.embed.weight and torch.equal(fresh.out.weight, model.out.weight)


def test_tying_needs_the_output_layer_to_read_embedding_sized_vectors():
    with pytest.raises(ValueError, match="embed_dim must equal hidden_dim"):
        make("lrcn_1u").tie_embeddings()                      # E 16, H 20


def test_unknown_kind_is_named():
    with pytest.raises(ConfigError, match="'transformer' is unknown"):
        build_decoder("transformer", V, D)


# ----------------------------------------------------------------------------- the fast step

def steps(model, features, words, step, grad: bool = False):
    """Log-probs [B, L, V] and final state of ``step(words [B], state)`` through ``words`` [B, L]."""
    with torch.set_grad_enabled(grad):
        state, out = model.init_state(features), []
        for t in range(words.shape[1]):
            log_probs, state = step(words[:, t], state)
            out.append(log_probs.clone())
    return torch.stack(out, 1).detach(), tuple(s.detach() for s in state)


def assert_fast_step_is_the_plain_step(model, features, words):
    """The fast step at inference (eval, no_grad) equals the plain step of the same weights
    (``CaptionDecoder.step``: nn.LSTM via ``forward_steps``); with autograd on, the fast kind's
    step is the plain step."""
    def plain_step(w, s):
        return CaptionDecoder.step(model, w, s)

    fast, fast_state = steps(model, features, words, model.step)
    assert model._gate_table is not None       # B x L >= V rows: the word-gate table was used
    plain, plain_state = steps(model, features, words, plain_step)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(fast_state, plain_state, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with_grad, _ = steps(model, features, words, model.step, grad=True)
    assert torch.equal(with_grad, steps(model, features, words, plain_step, grad=True)[0])


@pytest.mark.parametrize("kind, layers", [(kind, None) for kind in FAST_KINDS]
                         + [("show_and_tell", 2), ("init_state", 2)])
def test_fast_step_equals_the_plain_step(kind, layers):
    """Words 1-2 multiply (16 rows < V), words 3-6 look the word gates up in the table."""
    model = make(kind, **({} if layers is None else {"num_layers": layers})).eval()
    assert_fast_step_is_the_plain_step(model, torch.randn(8, D), torch.randint(0, V, (8, 6)))


def test_word_gate_table_follows_the_weights():
    """The cached table is rebuilt after an optimizer step, load_state_dict and .double()."""
    model = make("lrcn_2u")
    features, words = torch.randn(8, D), torch.randint(0, V, (8, 6))
    assert_fast_step_is_the_plain_step(model.eval(), features, words)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    F.cross_entropy(model.train()(features, words).flatten(0, 1), words.flatten()).backward()
    opt.step()
    assert_fast_step_is_the_plain_step(model.eval(), features, words)
    torch.manual_seed(1)
    model.load_state_dict(build_decoder("lrcn_2u", V, D, embed_dim=16, hidden_dim=20).state_dict())
    assert_fast_step_is_the_plain_step(model, features, words)
    assert_fast_step_is_the_plain_step(model.double(), features.double(), words)


def test_small_decodes_build_no_table():
    """The table costs V rows of multiplies: fewer rows than V since the weights changed multiply."""
    model = make("show_and_tell").eval()
    with torch.no_grad():
        state = model.init_state(torch.randn(2, D))
        for _ in range(11):                                            # 22 rows < V
            _, state = model.step(torch.ones(2, dtype=torch.long), state)
        assert model._gate_table is None
        model.step(torch.ones(2, dtype=torch.long), state)
        assert model._gate_table is not None


def test_weights_made_in_inference_mode_step_without_a_table():
    """Inference tensors have no version counter to key a table on: steps multiply instead."""
    with torch.inference_mode():
        model = make("lrcn_2f").eval()
        assert_step_interface(model, torch.randn(8, D), torch.randint(0, V, (8, 6)))
        assert model._gate_table is None


def test_step_log_softmax_in_place_is_bit_for_bit_log_softmax():
    """At inference the step normalises the fresh logits in their own memory (on the CPU)."""
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 5), (7, 13), (300, 10_001), (2, 100_003)]:
        logits = torch.randn(shape, generator=g) * 30
        expected = F.log_softmax(logits, dim=-1)
        result = log_softmax_(logits)
        assert torch.equal(result, expected)
        assert result.data_ptr() == logits.data_ptr()
    strided = torch.randn(20, 6, generator=g)[:, ::2]             # not contiguous: a fresh result
    expected = F.log_softmax(strided, dim=-1)
    assert torch.equal(log_softmax_(strided), expected) and torch.equal(strided.log_softmax(-1), expected)


def _step_through(model, features, words, rows):
    """Steps of an eval-mode decoder under no_grad on ``words`` [B, L], the batch cut to the
    first ``rows[t]`` rows at step t (as live beams shrink and grow): each step's log-probs,
    copied, with its data pointer, and the pointers of every state tensor."""
    out = []
    with torch.no_grad():
        state = model.init_state(features)
        for t, n in enumerate(rows):
            state = model.reorder(state, torch.arange(n) % state[0].shape[0])
            log_probs, state = model.step(words[:n, t], state)
            out.append((log_probs.clone(), log_probs.data_ptr(), {s.data_ptr() for s in state}))
    return out


@pytest.mark.parametrize("kind", [*FAST_KINDS, "s2vt", "lstm+lrcn_2f"])
def test_reusing_outputs_gives_the_same_numbers_in_kept_memory(kind):
    """Inside ``reusing_outputs`` every step writes its log-probs into the same memory (the batch
    shrinking and growing again), bit for bit what fresh steps give; the state never shares it,
    and after the block steps are fresh again."""
    model = make(kind).eval()
    features = torch.randn(8, 5, D) if kind in ("s2vt", "lstm+lrcn_2f") else torch.randn(8, D)
    words, rows = torch.randint(0, V, (8, 7)), [3, 8, 8, 6, 3, 8, 5]   # 41 rows >= V: the gate table too
    _step_through(model, features, words, rows)              # builds the gate table
    fresh = _step_through(model, features, words, rows)
    with model.reusing_outputs():
        kept = _step_through(model, features, words, rows)
    again = _step_through(model, features, words, rows)
    for (a, _, _), (b, _, _), (c, _, _) in zip(fresh, kept, again, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    if kind != "s2vt":                           # S2VT steps through nn.LSTM, all fresh
        assert len({ptr for _, ptr, _ in kept}) == 2            # one realloc: 3 rows, then 8
        assert all(ptr not in states for _, ptr, states in kept)
    inner = getattr(model, "decoder", model)
    assert inner._buffers_kept is None


@pytest.mark.parametrize("reuse", [False, True])
def test_reused_log_probs_are_overwritten_by_the_next_step(reuse):
    """The documented contract: a step's output inside the block holds only until the next step;
    outside it, every step's output is its own."""
    model = make("show_and_tell").eval()
    with torch.no_grad(), model.reusing_outputs() if reuse else contextlib.nullcontext():
        state = model.init_state(torch.randn(4, D))
        first, state = model.step(torch.ones(4, dtype=torch.long), state)
        copy = first.clone()
        second, _ = model.step(torch.full((4,), 5), state)
    assert (first.data_ptr() == second.data_ptr()) == reuse
    assert torch.equal(first, copy) != reuse
