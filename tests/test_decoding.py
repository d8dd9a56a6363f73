"""Decoding strategies on fake step models with known probabilities.

``TableModel``: log-probs depend only on the input and the previous word (a transition table).
``PrefixModel``: log-probs depend on the whole prefix (through a rolling hash).
``FunctionModel``: log-probs from a Python function of the prefix, for hand-made cases.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrcn.decoding import (
    LENGTH_PENALTIES, DecodeConfig, NoRepeatNGram, Temperature, TopK, TopP, beam_search,
    build_constraints, diverse_beam_search, generate, greedy, sample, sample_with_logprobs,
    to_hypotheses,
)
from lrcn.errors import ConfigError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
IDS = dict(bos=BOS, eos=EOS, unk=UNK, pad=PAD)
NEG_INF = float("-inf")


# ----------------------------------------------------------------------------- fake models

def _reorder(state, index):
    return tuple(x.index_select(0, index) for x in state)


class TableModel(nn.Module):
    """log p(w | input i, previous word v) = log_softmax(logits[i, v])[w]."""

    def __init__(self, n_inputs: int, vocab: int, seed: int, scale: float = 2.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.randn(n_inputs, vocab, vocab, generator=g) * scale)

    def init_state(self, features):          # features: [B] input ids
        return (features.clone(),)

    def step(self, words, state):
        return self.logits[state[0], words].log_softmax(-1), state

    reorder = staticmethod(_reorder)


class PrefixModel:
    """log p(w | prefix) = table[hash(input, prefix)][w]; a different distribution per prefix."""

    def __init__(self, vocab: int, seed: int, buckets: int = 100_003, scale: float = 2.0):
        g = torch.Generator().manual_seed(seed)
        self.table = (torch.randn(buckets, vocab, generator=g) * scale).log_softmax(-1)
        self.buckets = buckets

    def init_state(self, features):          # features: [B] input ids
        return (features * 7919 % self.buckets,)

    def step(self, words, state):
        h = (state[0] * 1_000_003 + words + 1) % self.buckets
        return self.table[h], (h,)

    reorder = staticmethod(_reorder)


class FunctionModel:
    """log p(w | prefix) = log fn(prefix)[w] with fn: tuple of words -> {word: prob}; the
    remaining probability is spread evenly over the other words (so nothing is impossible)."""

    def __init__(self, fn, vocab: int, max_len: int = 30):
        self.fn, self.vocab, self.max_len = fn, vocab, max_len

    def init_state(self, features):
        batch = features.size(0)
        return (torch.zeros(batch, self.max_len + 2, dtype=torch.long), torch.zeros(batch, dtype=torch.long))

    def step(self, words, state):
        prefixes, lengths = state
        prefixes = prefixes.clone()
        prefixes[torch.arange(len(words)), lengths] = words
        lengths = lengths + 1
        rows = []
        for prefix, n in zip(prefixes.tolist(), lengths.tolist()):
            given = self.fn(tuple(prefix[1:n]))                  # words after <start>
            rest = (1.0 - sum(given.values())) / (self.vocab - len(given))
            rows.append([given.get(w, rest) for w in range(self.vocab)])
        return torch.tensor(rows).log(), (prefixes, lengths)

    reorder = staticmethod(_reorder)


def random_model(kind: str, vocab: int = 9, seed: int = 0, n_inputs: int = 4, scale: float = 2.0):
    if kind == "table":
        return TableModel(n_inputs, vocab, seed, scale)
    return PrefixModel(vocab, seed, scale=scale)


# ----------------------------------------------------------------------------- references

def penalty(name: str, alpha: float, length: int) -> float:
    return LENGTH_PENALTIES[name](length, alpha)


def has_repeated_ngram(words: list[int], n: int) -> bool:
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


@torch.no_grad()
def brute_force(model, feature: int, config: DecodeConfig, alphabet: list[int]):
    """Every caption over ``alphabet`` allowed by ``config``, best first: (score, log_prob, words)."""
    results = []

    def visit(words, state, last, log_prob):
        log_probs, state = model.step(torch.tensor([last]), state)
        log_probs = log_probs[0].float()
        if len(words) >= config.min_len:
            total = float(log_prob + log_probs[EOS])
            score = total / penalty(config.length_penalty, config.alpha, len(words) + 1)
            results.append((score, total, words))
        if len(words) < config.max_len:
            for w in alphabet:
                if config.block_ngram and has_repeated_ngram(words + [w], config.block_ngram):
                    continue
                visit(words + [w], state, w, log_prob + log_probs[w])

    visit([], model.init_state(torch.tensor([feature])), BOS, torch.tensor(0.0))
    return sorted(results, key=lambda r: -r[0])


def reference_beam(model, feature: int, config: DecodeConfig, groups: int = 1,
                   diversity: float = 0.0) -> list[tuple[float, float, list[int]]]:
    """Straightforward per-input (diverse) beam search with Python lists, run to max_len."""
    k, n_best = config.beam_size, config.n_best
    kg = k // groups
    constraints = build_constraints(min_len=config.min_len, max_len=config.max_len, eos=EOS,
                                    suppress=[BOS, PAD] + ([UNK] if config.suppress_unk else []),
                                    block_ngram=config.block_ngram)
    state = model.reorder(model.init_state(torch.tensor([feature])), torch.zeros(k, dtype=torch.long))
    beams = [[([], 0.0 if j == 0 else NEG_INF) for j in range(kg)] for _ in range(groups)]
    finished = [[] for _ in range(groups)]              # (score, log_prob, words) best first
    words = [BOS] * k
    for t in range(config.max_len + 1):
        log_probs, state = model.step(torch.tensor(words), state)
        history = torch.tensor([b[0] for group in beams for b in group], dtype=torch.long).view(k, t)
        log_probs = constraints(log_probs.float(), history)
        counts = torch.zeros(log_probs.size(1))
        new_beams, rows, words = [], [], []
        for g in range(groups):
            start = g * kg
            prev = torch.tensor([b[1] for b in beams[g]])                      # float32
            cand = prev[:, None] + log_probs[start:start + kg]                # [kg, V]
            ranked = cand - diversity * counts if g else cand
            flat_rank, flat_cand = ranked.flatten().tolist(), cand.flatten().tolist()
            order = sorted(range(len(flat_rank)), key=lambda i: -flat_rank[i])[:2 * kg]
            vocab = cand.size(1)
            for rank, i in enumerate(order[:kg]):
                if i % vocab == EOS and flat_cand[i] > NEG_INF:
                    total = flat_cand[i]
                    score = float(torch.tensor(total) / penalty(config.length_penalty, config.alpha, t + 1))
                    finished[g].append((score, total, beams[g][i // vocab][0]))
            finished[g] = sorted(finished[g], key=lambda r: -r[0])[:n_best]  # stable
            alive = [i for i in order if i % vocab != EOS][:kg]
            group_beams = []
            for i in alive:
                source, word = divmod(i, vocab)
                group_beams.append((beams[g][source][0] + [word], flat_cand[i]))
                rows.append(start + source)
                words.append(word)
                if flat_cand[i] > NEG_INF:
                    counts[word] += 1
            new_beams.append(group_beams)
        beams = new_beams
        state = model.reorder(state, torch.tensor(rows))
    merged, seen = [], set()
    for r in sorted((r for f in finished for r in f), key=lambda r: -r[0]):
        if tuple(r[2]) not in seen:
            seen.add(tuple(r[2]))
            merged.append(r)
    return merged[:n_best]


def as_tuples(hypotheses):
    return [(h.score, h.log_prob, h.tokens) for h in hypotheses]


def assert_same(actual, expected, tol=1e-5):
    """Same captions in the same order, same scores and log-probs."""
    assert [a[2] for a in actual] == [e[2] for e in expected]
    for a, e in zip(actual, expected):
        assert a[0] == pytest.approx(e[0], abs=tol) and a[1] == pytest.approx(e[1], abs=tol)


def decode(model, features, **config):
    return generate(model, torch.as_tensor(features), DecodeConfig(**config), **IDS)


# ----------------------------------------------------------------------------- beam search: exactness

@pytest.mark.parametrize("kind", ["table", "prefix"])
@pytest.mark.parametrize("length_penalty", ["none", "avg", "gnmt"])
def test_exhaustive_beam_returns_exactly_the_best_captions(kind, length_penalty):
    # vocab: pad bos eos unk + 3 words; with a beam wider than every prefix set, beam search
    # enumerates everything, so its n-best must equal brute force over all captions <= max_len
    model = random_model(kind, vocab=7, seed=1)
    config = DecodeConfig(beam_size=108, n_best=6, max_len=3, min_len=0, length_penalty=length_penalty,
                          alpha=0.9)
    for feature in range(3):
        expected = brute_force(model, feature, config, alphabet=[4, 5, 6])[:6]
        actual = as_tuples(decode(model, [feature], **vars(config))[0])
        assert_same(actual, expected)


@pytest.mark.parametrize("kind", ["table", "prefix"])
def test_beam_matches_per_input_reference_implementation(kind):
    model = random_model(kind, vocab=12, seed=2)
    for k, lp, n_best in [(2, "none", 1), (3, "avg", 3), (5, "gnmt", 4), (4, "none", 4)]:
        config = DecodeConfig(beam_size=k, n_best=n_best, max_len=6, min_len=1, length_penalty=lp)
        actual = decode(model, [0, 1, 2, 3], **vars(config))
        for feature in range(4):
            assert_same(as_tuples(actual[feature]), reference_beam(model, feature, config))


def test_beam_finds_the_best_caption_where_greedy_does_not():
    # <start> -> a .6, b .4 ; a -> <end> .34, a .33, b .33 ; b -> <end> .9
    a, b = 4, 5
    table = {(): {a: .6, b: .4 - 1e-6}, (a,): {EOS: .34, a: .33 - 1e-6, b: .33 - 1e-6}}
    model = FunctionModel(lambda p: table.get(p[-1:], {EOS: .9}) if p else table[()], vocab=6)
    greedy_best = decode(model, [0], max_len=4)[0][0]
    beam_best = decode(model, [0], beam_size=2, max_len=4)[0][0]
    assert greedy_best.tokens == [a] and greedy_best.log_prob == pytest.approx(math.log(.6 * .34), abs=1e-5)
    assert beam_best.tokens == [b] and beam_best.log_prob == pytest.approx(math.log(.4 * .9), abs=1e-4)


@pytest.mark.parametrize("kind", ["table", "prefix"])
def test_beam_of_one_equals_greedy(kind):
    for seed in range(3):
        model = random_model(kind, vocab=10, seed=seed)
        config = DecodeConfig(max_len=8, min_len=1)
        g = greedy(model, torch.arange(4), config, **IDS)
        b = beam_search(model, torch.arange(4), config, **IDS)
        assert torch.equal(g.tokens, b.tokens) and torch.equal(g.lengths, b.lengths)
        torch.testing.assert_close(g.log_probs, b.log_probs)


@pytest.mark.parametrize("kind", ["table", "prefix"])
@pytest.mark.parametrize("config", [
    dict(beam_size=4, n_best=4, length_penalty="avg"),
    dict(beam_size=3, n_best=2, length_penalty="gnmt", alpha=0.7, block_ngram=2),
    dict(beam_size=6, groups=3, n_best=3, diversity_strength=0.8),
    dict(),
])
def test_batched_equals_one_input_at_a_time(kind, config):
    model = random_model(kind, vocab=10, seed=3, n_inputs=6)
    batched = decode(model, torch.arange(6), max_len=10, **config)
    for i in range(6):
        assert_same(as_tuples(batched[i]), as_tuples(decode(model, [i], max_len=10, **config)[0]))


class CountingRows:
    """The step interface of ``model``, counting the rows of every step."""

    def __init__(self, model):
        self.model, self.rows = model, []

    def init_state(self, features):
        return self.model.init_state(features)

    def step(self, words, state):
        self.rows.append(len(words))
        return self.model.step(words, state)

    def reorder(self, state, index):
        return self.model.reorder(state, index)


@pytest.mark.parametrize("config", [
    dict(length_penalty="none"), dict(length_penalty="avg"), dict(length_penalty="gnmt"),
    dict(length_penalty="gnmt", alpha=-0.5), dict(n_best=1), dict(n_best=1, length_penalty="avg"),
    dict(n_best=4, min_len=3, block_ngram=2), dict(n_best=2, groups=2, diversity_strength=0.0),
    dict(n_best=2, groups=2, diversity_strength=2.0), dict(n_best=4, groups=4, diversity_strength=1.0),
])
@pytest.mark.parametrize("seed", [4, 5])
def test_early_stopping_does_not_change_the_result(config, seed):
    """Stepping only the beams that can still win (and dropping done inputs) gives exactly the
    result of stepping all of them to max_len, on fewer rows; the first step runs one row per
    input (all beams of a group start as one)."""
    model = random_model("prefix", vocab=10, seed=seed, scale=3.0)
    config = DecodeConfig(**{"beam_size": 4, "n_best": 3, "max_len": 12, **config})
    search = diverse_beam_search if config.groups > 1 else beam_search
    early, full = CountingRows(model), CountingRows(model)
    for a, b in zip(search(early, torch.arange(8), config, **IDS),
                    search(full, torch.arange(8), config, **IDS, early_stop=False), strict=True):
        torch.testing.assert_close(a, b)
    assert early.rows[0] == full.rows[0] == 8 * config.groups
    assert full.rows[1:] == [8 * 4] * config.max_len
    if config.groups > 1 and config.diversity_strength > 0:
        # hopeless beams still steer the later groups: only done inputs leave
        assert sum(early.rows) <= sum(full.rows)
    else:
        # with no length penalty a beam is hopeless once its log-prob is below the worst kept caption's
        assert sum(early.rows) < (0.8 if config.length_penalty == "none" else 1.0) * sum(full.rows)


def test_early_stopping_waits_for_captions_whose_average_can_still_rise():
    # after step 1, [a] is finished (average -0.69) and the alive [c, d] has log-prob -2.1:
    # a poor average now, but the next words are near-certain and [c, d, e, f] ends at -0.43
    a, c, d, e, f = 4, 5, 6, 7, 8
    table = {(): {a: .5, c: .12}, (a,): {EOS: .5}, (c,): {d: .999}, (c, d): {e: .999},
             (c, d, e): {f: .999}, (c, d, e, f): {EOS: .999}}
    model = FunctionModel(lambda p: table.get(p, {EOS: .5}), vocab=10)
    for early_stop in (True, False):
        out = beam_search(model, torch.tensor([0]), DecodeConfig(beam_size=2, max_len=8, length_penalty="avg"),
                          **IDS, early_stop=early_stop)
        assert to_hypotheses(out)[0][0].tokens == [c, d, e, f]


def test_beams_that_run_out_of_words_end_the_search():
    """Two words, each usable once (block_ngram=1), max_len 6: after two words every beam can
    only end, so no beam is left to step; the search stops there, early or not, and the model
    is never called with zero rows (FunctionModel cannot take them)."""
    model = FunctionModel(lambda p: {4: .45, 5: .45, EOS: .02}, vocab=6)
    config = DecodeConfig(beam_size=2, n_best=2, max_len=6, block_ngram=1)
    for early_stop in (True, False):
        counter = CountingRows(model)
        hyps = to_hypotheses(beam_search(counter, torch.tensor([0]), config, **IDS, early_stop=early_stop))[0]
        assert sorted(h.tokens for h in hyps) == [[4, 5], [5, 4]]
        assert [h.log_prob for h in hyps] == pytest.approx([math.log(.45 * .45 * .02)] * 2)
        assert counter.rows == [1, 2, 2]


def test_n_best_lists_are_sorted_distinct_and_scored_consistently():
    model = random_model("prefix", vocab=12, seed=5)
    for lp in ["none", "avg", "gnmt"]:
        results = decode(model, torch.arange(4), beam_size=6, n_best=6, max_len=8, length_penalty=lp)
        for hyps in results:
            assert len(hyps) == 6
            scores = [h.score for h in hyps]
            assert scores == sorted(scores, reverse=True)
            assert len({tuple(h.tokens) for h in hyps}) == 6
            for h in hyps:
                assert h.score == pytest.approx(h.log_prob / penalty(lp, 0.6, len(h.tokens) + 1), rel=1e-6)
                assert EOS not in h.tokens and BOS not in h.tokens and PAD not in h.tokens


# ----------------------------------------------------------------------------- constraints & penalties

def test_length_penalty_changes_the_choice():
    # [a] has log-prob log(.7*.5) = -1.05 over 2 tokens; [c, d, e] has log(.3*.95^3) = -1.36 over 4
    a, c, d, e = 4, 5, 6, 7
    table = {(): {a: .7, c: .3 - 1e-6}, (a,): {EOS: .5}, (c,): {d: .95}, (c, d): {e: .95},
             (c, d, e): {EOS: .95}}
    model = FunctionModel(lambda p: table.get(p, {EOS: .5}), vocab=8)
    best = {lp: decode(model, [0], beam_size=3, max_len=5, length_penalty=lp, alpha=2.0)[0][0].tokens
            for lp in ["none", "avg", "gnmt"]}
    assert best == {"none": [a], "avg": [c, d, e], "gnmt": [c, d, e]}
    assert decode(model, [0], beam_size=3, max_len=5, length_penalty="gnmt", alpha=0.0)[0][0].tokens == [a]
    for lp in ["avg", "gnmt"]:  # and agrees with brute force
        config = DecodeConfig(max_len=4, length_penalty=lp, alpha=2.0)
        assert brute_force(model, 0, config, alphabet=[4, 5, 6, 7])[0][2] == best[lp]


def test_ngram_blocking():
    a, b = 4, 5
    # loves "a b a b" and stops after 4 words
    model = FunctionModel(lambda p: {EOS: .9} if len(p) >= 4 else {b: .9} if p[-1:] == (a,) else {a: .9},
                          vocab=7)
    assert decode(model, [0], beam_size=2, max_len=8)[0][0].tokens == [a, b, a, b]
    for n in (1, 2, 3):
        config = DecodeConfig(beam_size=4 * 3 ** 5, n_best=3, max_len=5, block_ngram=n)
        hyps = decode(model, [0], **vars(config))[0]
        for h in hyps:
            assert not has_repeated_ngram(h.tokens, n)
        assert_same(as_tuples(hyps), brute_force(model, 0, config, alphabet=[4, 5, 6])[:3])
    # greedy, sampling and diverse beam obey it too
    for kw in (dict(), dict(sample=True, seed=0, n_best=20), dict(beam_size=4, groups=2, n_best=4)):
        hyps = decode(model, [0], max_len=8, block_ngram=2, **kw)[0]
        assert hyps and all(not has_repeated_ngram(h.tokens, 2) for h in hyps)


def test_min_len_forbids_an_early_end():
    # <end> is the likeliest word everywhere
    model = FunctionModel(lambda p: {EOS: .5, 4: .3, 5: .2 - 1e-6} if not p else {EOS: .6, 4: .25, 5: .15 - 1e-6},
                          vocab=6)
    assert decode(model, [0], beam_size=3, max_len=5, min_len=0)[0][0].tokens == []
    for min_len in (1, 2, 3):
        config = DecodeConfig(beam_size=48, max_len=4, min_len=min_len)
        best = decode(model, [0], **vars(config))[0][0]
        assert len(best.tokens) == min_len
        assert_same([as_tuples([best])[0]], brute_force(model, 0, config, alphabet=[4, 5])[:1])
        for kw in (dict(), dict(sample=True, seed=1, n_best=30), dict(beam_size=4, groups=2)):
            for h in decode(model, [0], max_len=5, min_len=min_len, **kw)[0]:
                assert len(h.tokens) >= min_len


def test_max_len_forces_the_end_and_counts_its_probability():
    model = FunctionModel(lambda p: {4: .9, EOS: .01}, vocab=6)   # never wants to stop
    for kw in (dict(), dict(sample=True, seed=0, top_k=1), dict(beam_size=3, n_best=3)):
        hyps = decode(model, [0], max_len=3, **kw)[0]
        assert hyps[0].tokens == [4, 4, 4]
        assert hyps[0].log_prob == pytest.approx(3 * math.log(.9) + math.log(.01), abs=1e-5)
        assert all(len(h.tokens) == 3 for h in hyps)


def test_unk_suppression():
    model = FunctionModel(lambda p: {UNK: .7, 4: .1, EOS: .19} if len(p) < 2 else {EOS: .9}, vocab=6)
    for kw in (dict(), dict(beam_size=3), dict(beam_size=4, groups=2), dict(sample=True, seed=0, n_best=20)):
        for h in decode(model, [0], max_len=4, **kw)[0]:
            assert UNK not in h.tokens
        assert UNK in decode(model, [0], max_len=4, suppress_unk=False, **kw)[0][0].tokens or kw.get("sample")
    assert decode(model, [0], max_len=4, suppress_unk=False)[0][0].tokens == [UNK, UNK]
    # sampled captions use <unk> when allowed
    assert any(UNK in h.tokens for h in decode(model, [0], max_len=4, suppress_unk=False, sample=True,
                                                seed=0, n_best=20)[0])


# ----------------------------------------------------------------------------- diverse beam search

@pytest.mark.parametrize("kind", ["table", "prefix"])
def test_diverse_with_one_group_equals_beam(kind):
    model = random_model(kind, vocab=10, seed=6)
    config = DecodeConfig(beam_size=4, n_best=3, max_len=8, length_penalty="avg", diversity_strength=2.0)
    d = diverse_beam_search(model, torch.arange(4), config, **IDS)
    b = beam_search(model, torch.arange(4), config, **IDS)
    for x, y in zip(d, b):
        torch.testing.assert_close(x, y)


def test_diverse_without_penalty_is_independent_copies_of_beam():
    # two groups of 2 beams with lambda = 0 find the same captions as one beam of 2 (duplicates dropped)
    model = random_model("prefix", vocab=10, seed=7)
    d = decode(model, torch.arange(4), beam_size=4, groups=2, n_best=2, diversity_strength=0.0, max_len=8)
    b = decode(model, torch.arange(4), beam_size=2, n_best=2, max_len=8)
    for x, y in zip(d, b):
        assert_same(as_tuples(x), as_tuples(y))


@pytest.mark.parametrize("kind", ["table", "prefix"])
@pytest.mark.parametrize("groups,k,strength,vocab", [(2, 2, 100.0, 12), (2, 4, 0.7, 12), (3, 6, 1.5, 12),
                                                      (2, 6, 0.5, 6)])
def test_diverse_matches_per_input_reference(kind, groups, k, strength, vocab):
    # (vocab 6 has 2 allowed words: groups of 3 beams start with a dead beam, which must not
    # count in the diversity penalty)
    model = random_model(kind, vocab=vocab, seed=8)
    config = DecodeConfig(beam_size=k, groups=groups, n_best=k, max_len=6, diversity_strength=strength,
                          length_penalty="avg")
    actual = decode(model, torch.arange(4), **vars(config))
    for feature in range(4):
        assert_same(as_tuples(actual[feature]), reference_beam(model, feature, config, groups, strength))


def test_diversity_penalty_makes_groups_start_differently():
    a, b, c, d, e, f = 4, 5, 6, 7, 8, 9
    table = {(): {a: .6, b: .2, c: .15}, (a,): {d: .31, e: .3, f: .29}, (b,): {EOS: .5}, (c,): {EOS: .5}}
    model = FunctionModel(lambda p: table.get(p, {EOS: .9}), vocab=10)
    plain = decode(model, [0], beam_size=3, n_best=3, max_len=5)[0]
    assert [h.tokens for h in plain] == [[a, d], [a, e], [a, f]]
    diverse = decode(model, [0], beam_size=3, groups=3, n_best=3, max_len=5, diversity_strength=100.0)[0]
    assert [h.tokens for h in diverse] == [[a, d], [b], [c]]
    assert [h.log_prob for h in diverse] == pytest.approx([math.log(x) for x in (.6 * .31 * .9, .1, .075)],
                                                          abs=1e-5)


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("kind", ["table", "prefix"])
def test_sampling_with_top_k_one_equals_greedy(kind):
    model = random_model(kind, vocab=10, seed=10)
    config = DecodeConfig(max_len=8)
    g = greedy(model, torch.arange(4), config, **IDS)
    s = sample(model, torch.arange(4), DecodeConfig(max_len=8, sample=True, top_k=1, temperature=0.7, seed=3),
               **IDS)
    assert torch.equal(g.tokens, s.tokens)
    torch.testing.assert_close(g.log_probs, s.log_probs)
    torch.testing.assert_close(g.scores, s.scores)


def test_processors_edit_scores_exactly():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(TopP(p)(logits.clone(), None)).tolist()[0]  # noqa: E731
    assert kept(0.3) == [False, True, False, False]
    assert kept(0.6) == [False, True, False, True]
    assert kept(0.85) == [True, True, False, True]
    assert kept(0.99) == [True, True, True, True]
    assert torch.isfinite(TopK(2)(logits.clone(), None)).tolist()[0] == [False, True, False, True]
    torch.testing.assert_close(Temperature(2.0)(logits.clone(), None), logits / 2)
    # n-gram blocking: the words that would repeat an n-gram
    tokens = torch.tensor([[4, 5, 6, 4, 5], [7, 7, 7, 7, 7]])
    banned = lambda n: torch.isinf(NoRepeatNGram(n)(torch.zeros(2, 9), tokens)).nonzero().tolist()  # noqa: E731
    assert banned(3) == [[0, 6], [1, 7]]
    assert banned(2) == [[0, 6], [1, 7]]
    assert banned(1) == [[0, 4], [0, 5], [0, 6], [1, 7]]
    assert banned(6) == []


def first_word_counts(model, n: int, **config) -> torch.Tensor:
    out = sample_with_logprobs(model, torch.tensor([0]), DecodeConfig(sample=True, n_best=n, max_len=1, **config),
                               **IDS)
    return torch.bincount(out.tokens[:, 0], minlength=8).double()


def assert_frequencies(counts: torch.Tensor, expected: torch.Tensor):
    n = counts.sum()
    sigma = (n * expected * (1 - expected)).sqrt()
    assert ((counts - n * expected).abs() <= 4 * sigma + 1e-9).all(), (counts / n, expected)
    assert (counts[expected == 0] == 0).all()


FIRST = {4: 0.4, 5: 0.25, 6: 0.2, 7: 0.15 - 1e-9}   # bos, pad, unk, <end> share 1e-9


def test_top_p_samples_exactly_the_nucleus():
    model = FunctionModel(lambda p: FIRST if not p else {EOS: 0.9}, vocab=8)
    counts = first_word_counts(model, 20000, top_p=0.7, seed=0)
    expected = torch.zeros(8, dtype=torch.double)
    expected[4], expected[5], expected[6] = 0.4 / 0.85, 0.25 / 0.85, 0.2 / 0.85
    assert_frequencies(counts, expected)


def test_temperature_reshapes_the_distribution():
    model = FunctionModel(lambda p: FIRST if not p else {EOS: 0.9}, vocab=8)
    p = torch.zeros(8, dtype=torch.double)
    for w, q in FIRST.items():
        p[w] = q
    for temperature in (0.5, 2.0):
        counts = first_word_counts(model, 20000, temperature=temperature, top_k=4, seed=1)
        expected = p ** (1 / temperature)
        assert_frequencies(counts, expected / expected.sum())
    # temperature 1 with top-k 2: the two likeliest, renormalised
    counts = first_word_counts(model, 20000, top_k=2, seed=2)
    assert_frequencies(counts, torch.tensor([0, 0, 0, 0, 0.4 / 0.65, 0.25 / 0.65, 0, 0], dtype=torch.double))


def test_a_fixed_seed_reproduces_samples():
    model = random_model("prefix", vocab=20, seed=11, scale=0.5)
    config = DecodeConfig(sample=True, n_best=5, max_len=10, seed=123, top_p=0.95)
    a = sample(model, torch.arange(4), config, **IDS)
    b = sample(model, torch.arange(4), config, **IDS)
    c = sample(model, torch.arange(4), DecodeConfig(**{**vars(config), "seed": 124}), **IDS)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    g = torch.Generator().manual_seed(123)
    d = sample(model, torch.arange(4), DecodeConfig(**{**vars(config), "seed": None}), **IDS, generator=g)
    assert torch.equal(a.tokens, d.tokens)
    for row in decode(model, torch.arange(4), **vars(config)):
        scores = [h.score for h in row]
        assert len(row) == 5 and scores == sorted(scores, reverse=True)


def test_sample_with_logprobs_keeps_the_graph_and_matches_teacher_forcing():
    model = TableModel(3, 8, seed=12, scale=1.0)
    config = DecodeConfig(sample=True, n_best=4, max_len=5, min_len=0, suppress_unk=False, seed=0)
    out = sample_with_logprobs(model, torch.arange(3), config, bos=BOS, eos=EOS)
    assert out.token_log_probs.requires_grad
    assert out.tokens.shape == out.token_log_probs.shape == out.mask.shape
    assert out.tokens.shape[0] == 12
    assert torch.equal(out.mask.sum(1), out.lengths + 1)
    assert (out.token_log_probs[~out.mask] == 0).all()
    # teacher forcing the sampled tokens gives the same per-token log-probs
    expected = torch.zeros_like(out.token_log_probs)
    for row in range(12):
        previous = BOS
        for t in range(int(out.lengths[row]) + 1):
            scores = model.logits[row // 4, previous].log_softmax(-1).detach().clone()
            scores[BOS] = NEG_INF
            if t == config.max_len:
                scores[torch.arange(8) != EOS] = NEG_INF
            word = int(out.tokens[row, t])
            expected[row, t] = scores.log_softmax(-1)[word]
            previous = word
        assert out.tokens[row, out.lengths[row]] == EOS
    torch.testing.assert_close(out.token_log_probs.detach(), expected)
    out.token_log_probs.sum().backward()
    assert model.logits.grad.abs().sum() > 0


def test_policy_gradient_through_samples_learns():
    # REINFORCE with reward "first word is 6": its probability must rise towards 1
    model = TableModel(1, 8, seed=13, scale=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    config = DecodeConfig(sample=True, n_best=16, max_len=3, seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        out = sample_with_logprobs(model, torch.tensor([0]), config, **IDS, generator=generator)
        reward = (out.tokens[:, 0] == 6).float()
        loss = -((reward - reward.mean())[:, None] * out.token_log_probs).sum() / 16
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    allowed = model.logits[0, BOS, 4:].softmax(-1)      # first words 4..7 (the rest is suppressed)
    assert allowed[6 - 4] > 0.9


# ----------------------------------------------------------------------------- configuration & API

def test_config_from_dict_and_validation():
    c = DecodeConfig.from_dict({"beam_size": 5, "length_penalty": "gnmt", "alpha": 1, "n_best": 3})
    assert c.selected.name == "beam" and c.alpha == 1.0 and isinstance(c.alpha, float)
    assert DecodeConfig.from_dict(c.to_dict()) == c
    assert DecodeConfig.from_dict(None) == DecodeConfig()
    assert DecodeConfig(groups=2, beam_size=4).selected.name == "diverse"
    assert DecodeConfig(sample=True, n_best=5).selected.name == "sample"
    assert DecodeConfig().selected.name == "greedy"
    bad = [{"beam": 5}, {"beam_size": "5"}, {"beam_size": 0}, {"beam_size": 3, "n_best": 4},
           {"beam_size": 4, "groups": 3}, {"sample": True, "beam_size": 3}, {"length_penalty": "norm"},
           {"top_p": 0.0}, {"temperature": 0}, {"min_len": 30}, {"suppress_unk": 1}, {"seed": 1.5}]
    for d in bad:
        with pytest.raises(ConfigError) as e:
            DecodeConfig.from_dict(d)
        assert next(iter(d)) in str(e.value)


def test_generate_output_structure():
    model = random_model("table", vocab=10, seed=14)
    for config in ({}, {"beam_size": 3, "n_best": 2}, {"beam_size": 4, "groups": 2, "n_best": 3},
                   {"sample": True, "n_best": 3, "seed": 0}):
        results = generate(model, torch.arange(4), config, **IDS)
        assert len(results) == 4
        for hyps in results:
            assert len(hyps) == config.get("n_best", 1)
            for h in hyps:
                assert all(isinstance(w, int) and w > UNK for w in h.tokens)
                assert isinstance(h.score, float) and isinstance(h.log_prob, float) and h.log_prob <= 0
    out = beam_search(model, torch.arange(4), DecodeConfig(beam_size=3, n_best=2), **IDS)
    assert out.tokens.shape[:2] == (4, 2) and out.tokens.shape[2] == int(out.lengths.max()) + 1
    assert to_hypotheses(out) == generate(model, torch.arange(4), {"beam_size": 3, "n_best": 2}, **IDS)


# ----------------------------------------------------------------------------- real decoders

def overfit_decoder(kind: str, n_images: int = 12, vocab: int = 24, seed: int = 0):
    """A small decoder of ``kind`` trained until it reproduces one random caption per image."""
    from lrcn.models.registry import build_decoder

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    features = torch.randn(n_images, 16, generator=g)
    captions = [torch.randint(4, vocab, (int(n),), generator=g).tolist()
                for n in torch.randint(3, 8, (n_images,), generator=g)]
    width = max(map(len, captions)) + 1
    inputs = torch.full((n_images, width), PAD)
    targets = torch.full((n_images, width), PAD)
    for i, c in enumerate(captions):
        inputs[i, :len(c) + 1] = torch.tensor([BOS] + c)
        targets[i, :len(c) + 1] = torch.tensor(c + [EOS])
    model = build_decoder(kind, vocab, 16, embed_dim=32, hidden_dim=64, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        logits = model(features, inputs)                           # [B, T, V]
        loss = nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), features, captions


@pytest.mark.parametrize("kind", ["show_and_tell", "init_state", "lrcn_2f"])
def test_real_decoder_batched_beam_equals_per_image_beam(kind):
    model, features, captions = overfit_decoder(kind)
    with torch.no_grad():
        assert [h[0].tokens for h in decode(model, features, max_len=10)] == captions   # it learned
        for config in (dict(beam_size=3, n_best=3), dict(beam_size=4, n_best=2, length_penalty="gnmt"),
                       dict(beam_size=4, groups=2, n_best=4, diversity_strength=0.5)):
            batched = decode(model, features, max_len=10, **config)
            for i in range(len(features)):
                single = decode(model, features[i:i + 1], max_len=10, **config)[0]
                assert_same(as_tuples(batched[i]), as_tuples(single), tol=1e-4)
            assert [h[0].tokens for h in batched] == captions


class KeptRows(CountingRows):
    """``CountingRows`` that passes ``reusing_outputs`` through and records, at every step,
    whether the decoder was inside it."""

    def __init__(self, model):
        super().__init__(model)
        self.inside = []

    def reusing_outputs(self):
        return self.model.reusing_outputs()

    def step(self, words, state):
        self.inside.append(self.model._buffers_kept is not None)
        return super().step(words, state)


@pytest.mark.parametrize("kind", ["show_and_tell", "lrcn_2u"])
def test_every_strategy_reuses_step_outputs_and_decodes_the_same(kind):
    """Greedy, beam, diverse beam and sampling step the decoder inside its ``reusing_outputs``
    and give exactly what they give on fresh step outputs (a wrapper without it)."""
    model, features, _ = overfit_decoder(kind)
    configs = [dict(), dict(beam_size=4, n_best=2, block_ngram=2), dict(beam_size=4, length_penalty="gnmt"),
               dict(beam_size=4, groups=2, n_best=3, diversity_strength=0.5),
               dict(sample=True, seed=3, top_k=5, temperature=1.5, n_best=3), dict(sample=True, seed=4, top_p=0.8)]
    with torch.no_grad():
        decode(model, features, beam_size=4)                  # builds the word-gate table
        for config in configs:
            kept, fresh = KeptRows(model), CountingRows(model)
            expected = [as_tuples(h) for h in decode(fresh, features, **config)]
            assert [as_tuples(h) for h in decode(kept, features, **config)] == expected
            assert kept.inside and all(kept.inside) and kept.rows == fresh.rows
            assert model._buffers_kept is None


@pytest.mark.parametrize("strategy", [dict(beam_size=1), dict(beam_size=3), dict(sample=True, seed=0)])
def test_caption_features_never_emits_pad_or_start(strategy):
    """A model that puts most of its mass on <pad> and <start> still gets real words from
    lrcn.decoding.batch.caption_features: the trained runs' decode path bans both."""
    from lrcn.decoding.batch import caption_features
    from lrcn.text import Vocabulary

    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "b", "c"])
    model = TableModel(n_inputs=4, vocab=len(vocab), seed=0, scale=0.5)
    with torch.no_grad():
        model.logits[:, :, [PAD, BOS]] += 8.0            # p(<pad>) + p(<start>) > 0.99 everywhere
    hyps = caption_features(model, torch.arange(4), vocab, DecodeConfig.from_dict({**strategy, "max_len": 6}))
    tokens = [t for h in hyps for t in h[0].tokens]
    assert tokens and not {PAD, BOS} & set(tokens)
