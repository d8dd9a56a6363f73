"""Training losses: label smoothing, word dropout, scheduled sampling, self-critical sequence training (SCST)."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import tiny_overrides
from lrcn.config import Config, load_config, validate
from lrcn.data.records import Sample
from lrcn.decoding import DecodeConfig
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.errors import ConfigError
from lrcn.metrics.cider import CiderD
from lrcn.models.decoders import CaptionDecoder, ShowAndTell
from lrcn.models.registry import VIDEO_DECODERS
from lrcn.text import Vocabulary
from lrcn.train import loop
from lrcn.train.losses import (CrossEntropy, SamplingSchedule, SelfCritical, build_loss, drop_words,
                               scheduled_sampling_log_probs, _argmax)

VOCAB = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "b", "c", "dog", "runs"])
A, B, C, DOG, RUNS = 4, 5, 6, 7, 8
V = len(VOCAB)
NEVER = -30.0   # a logit whose probability is negligible (e^-30)


class TableDecoder(CaptionDecoder):
    """A bigram model: the next word's logits are a learnable row of ``table`` [V, V] chosen by the
    input word. Records every input word it is fed."""

    def __init__(self, table: torch.Tensor):
        super().__init__(table.shape[0], 1, embed_dim=1, hidden_dim=1, dropout=0.0)
        self.table = nn.Parameter(table.clone())
        self.fed: list[torch.Tensor] = []

    def init_state(self, features):
        return (features[:, :1].clone(),)          # [B, 1]: only carries the batch size

    def forward_steps(self, words, state):
        self.fed.append(words.clone())
        return self.table[words], state            # [B, T, V]


def config(**train) -> Config:
    c = Config()
    for k, v in train.items():
        setattr(c.train, k, v)
    return c


def samples(n: int, captions: list[str]) -> list[Sample]:
    return [Sample(id=f"s{i}", path=f"s{i}.png", split="train", captions=list(captions)) for i in range(n)]


def table(first: dict[int, float], after_word: int = 2) -> torch.Tensor:
    """After <start>: the logits in ``first`` (others NEVER); after any word: ``after_word`` (<end>) surely."""
    t = torch.full((V, V), NEVER)
    for w, logit in first.items():
        t[VOCAB.start, w] = logit
    t[4:, after_word] = 0.0
    return t


# --------------------------------------------------------------------------- cross-entropy

def test_label_smoothing_is_the_smoothed_cross_entropy():
    torch.manual_seed(0)
    decoder = TableDecoder(torch.randn(V, V))
    words = torch.tensor([[1, A, B, 2, 0], [1, DOG, RUNS, C, 2]])
    features = torch.zeros(1, 1)                              # one image, two captions
    plain = CrossEntropy(config(), VOCAB, samples(1, ["a"]))
    smooth = CrossEntropy(config(label_smoothing=0.2), VOCAB, samples(1, ["a"]))
    total0, count0, _ = plain(decoder, features, words, torch.tensor([0]), 0)
    total, count, logs = smooth(decoder, features, words, torch.tensor([0]), 0)
    # by hand: (1 - eps) * -log p(target) + eps * mean over the vocabulary of -log p(w)
    log_p = decoder.table.detach().log_softmax(-1)
    pairs = [(1, A), (A, B), (B, 2), (1, DOG), (DOG, RUNS), (RUNS, C), (C, 2)]
    nll = sum(-log_p[i, j] for i, j in pairs)
    uniform = sum(-log_p[i].mean() for i, _ in pairs)
    assert count == count0 == 7 and logs == {}
    assert total0.item() == pytest.approx(nll.item(), rel=1e-6)
    assert total.item() == pytest.approx((0.8 * nll + 0.2 * uniform).item(), rel=1e-6)
    assert (total / count).item() == pytest.approx(F.cross_entropy(
        decoder.table.detach()[words[:, :-1]].flatten(0, 1), words[:, 1:].flatten(), ignore_index=0,
        label_smoothing=0.2).item(), rel=1e-6)


def test_word_dropout_replaces_input_words_by_unk_and_keeps_the_targets():
    words = torch.tensor([[1, A, B, C, 2, 0, 0], [1, DOG, RUNS, A, B, C, 2]] * 2000)     # [4000, 7]
    torch.manual_seed(0)
    dropped = drop_words(words, 0.25, VOCAB.unk, VOCAB.pad)
    changed = dropped != words
    assert (dropped[changed] == VOCAB.unk).all()
    assert not changed[:, 0].any() and not changed[words == VOCAB.pad].any()          # <start>, padding kept
    share = changed[:, 1:][words[:, 1:] != VOCAB.pad].float().mean().item()
    assert share == pytest.approx(0.25, abs=0.01)
    assert drop_words(words, 0.0, VOCAB.unk, VOCAB.pad) is words

    # the loss feeds the dropped words and scores the reference words
    torch.manual_seed(0)
    decoder = TableDecoder(torch.randn(V, V))
    batch = words[:2]
    loss = CrossEntropy(config(word_dropout=0.5), VOCAB, samples(1, ["a"]))
    torch.manual_seed(1)
    total, count, _ = loss(decoder, torch.zeros(1, 1), batch, torch.tensor([0]), 0)
    fed = decoder.fed[-1]
    torch.manual_seed(1)
    assert torch.equal(fed, drop_words(batch, 0.5, VOCAB.unk, VOCAB.pad)[:, :-1])
    assert (fed != batch[:, :-1]).any()
    log_p = decoder.table.detach().log_softmax(-1)
    targets = batch[:, 1:]
    nll = -log_p[fed, targets][targets != VOCAB.pad].sum()
    assert count == 10 and total.item() == pytest.approx(nll.item(), rel=1e-6)

    decoder.eval()                     # validation: the reference words themselves
    loss(decoder, torch.zeros(1, 1), batch, torch.tensor([0]), 0)
    assert torch.equal(decoder.fed[-1], batch[:, :-1])


# --------------------------------------------------------------------------- scheduled sampling

def test_schedules_at_known_steps():
    linear = SamplingSchedule("linear", 0.1, 0.25, start_epoch=1, steps_per_epoch=10)
    assert [linear(s) for s in (0, 10, 15, 30)] == pytest.approx([0.0, 0.0, 0.05, 0.2])
    assert linear(1000) == 0.25                                                    # capped
    exponential = SamplingSchedule("exponential", 0.5, 1.0, start_epoch=0, steps_per_epoch=4)
    assert [exponential(s) for s in (0, 4, 8, 6)] == pytest.approx([0.0, 0.5, 0.75, 1 - 0.5 ** 1.5])
    sigmoid = SamplingSchedule("inverse_sigmoid", 2.0, 1.0, start_epoch=0, steps_per_epoch=1)
    assert [sigmoid(s) for s in (0, 2)] == pytest.approx([1 / 3, 1 - 2 / (2 + math.e)])
    assert sigmoid(10 ** 6) == 1.0                                                 # no overflow
    assert SamplingSchedule("off", 0.0, 1.0, 0, 1)(10 ** 6) == 0.0
    with pytest.raises(ConfigError, match="ss_k"):
        SamplingSchedule("inverse_sigmoid", 0.5, 1.0, 0, 1)
    with pytest.raises(ConfigError, match="scheduled_sampling"):
        SamplingSchedule("cosine", 0.5, 1.0, 0, 1)


def test_scheduled_sampling_at_probability_0_is_teacher_forcing():
    torch.manual_seed(0)
    decoder = ShowAndTell(V, 6, embed_dim=8, hidden_dim=8, dropout=0.0)
    features = torch.randn(3, 6)
    words = torch.tensor([[1, A, B, 2, 0], [1, DOG, RUNS, C, 2], [1, C, 2, 0, 0]])
    unrolled = scheduled_sampling_log_probs(decoder, decoder.init_state(features), words, 0.0, _argmax)
    forced = decoder(features, words[:, :-1]).log_softmax(-1)
    torch.testing.assert_close(unrolled, forced, rtol=1e-5, atol=1e-6)
    # the loss before the schedule starts is the teacher-forced one, and logs the probability 0
    scheduled = CrossEntropy(config(scheduled_sampling="linear", ss_k=0.5, ss_start_epoch=2.0, batch_size=1),
                             VOCAB, samples(3, ["a"]))
    total, count, logs = scheduled(decoder, features, words, torch.arange(3), 5)
    total0, count0, _ = CrossEntropy(config(), VOCAB, samples(3, ["a"]))(decoder, features, words, torch.arange(3), 5)
    assert logs == {"ss_prob": 0.0} and count == count0 and total.item() == pytest.approx(total0.item())


@pytest.mark.parametrize("pick", ["argmax", "sample"])
def test_scheduled_sampling_at_probability_1_feeds_only_predictions(pick):
    torch.manual_seed(0)
    t = torch.full((V, V), NEVER)
    t[:, C] = 0.0                             # after any word the model predicts "c" (argmax and sample)
    t[C, A] = 1.0                             # ... except after "c": "a" (argmax) or a draw from {a, b}
    t[C, B], t[C, C] = 0.0, NEVER
    decoder = TableDecoder(t)
    words = torch.tensor([[1, DOG, RUNS, DOG, RUNS, 2]] * 200)
    loss = CrossEntropy(config(scheduled_sampling="linear", ss_k=1.0, ss_max_prob=1.0, ss_pick=pick,
                               batch_size=200), VOCAB, samples(200, ["a"]))
    total, count, logs = loss(decoder, torch.zeros(200, 1), words, torch.arange(200), step=5)  # epoch 5: p = 1
    fed = torch.cat(decoder.fed, dim=1)                                            # [N, L-1]
    assert logs["ss_prob"] == 1.0 and fed.shape == (200, 5)
    assert (fed[:, 0] == 1).all() and (fed[:, 1] == C).all() and (fed[:, 3] == C).all()
    assert not ((fed[:, 1:] == DOG) | (fed[:, 1:] == RUNS)).any()                 # never the reference
    if pick == "argmax":
        assert (fed[:, 2] == A).all() and (fed[:, 4] == A).all()
    else:                                     # p(a | c) = e / (1 + e) = 0.73
        assert set(fed[:, 2].tolist()) == {A, B} and 0.6 < (fed[:, 2] == A).float().mean() < 0.85
    # the targets stay the reference words: the loss is the reference words' NLL given the fed words
    log_p = decoder.table.detach().log_softmax(-1)
    nll = -log_p[fed, words[:, 1:]].sum()
    assert count == 1000 and total.item() == pytest.approx(nll.item(), rel=1e-5)


def test_scheduled_sampling_mixes_at_the_scheduled_rate():
    torch.manual_seed(0)
    t = torch.full((V, V), NEVER)
    t[:, C] = 0.0
    decoder = TableDecoder(t)
    words = torch.tensor([[1, DOG, RUNS, DOG, RUNS, 2]] * 400)
    scheduled_sampling_log_probs(decoder, decoder.init_state(torch.zeros(400, 1)), words, 0.25, _argmax)
    own = (torch.cat(decoder.fed, dim=1)[:, 1:] == C).float().mean().item()
    assert 0.2 < own < 0.3


# --------------------------------------------------------------------------- self-critical training

class StubRewards(SelfCritical):
    """SCST with a given reward per first word instead of CIDEr-D."""

    def __init__(self, config, reward_of: dict[int, float]):
        super().__init__(config, VOCAB, samples(1, ["a dog runs"]))
        self.reward_of = reward_of

    def rewards(self, rows, tokens, lengths):
        return torch.tensor([self.reward_of[int(t[0])] for t in tokens])


def scst_config(**train) -> Config:
    c = config(loss="scst", **train)
    c.decode = DecodeConfig(max_len=4)
    return c


def caption_log_probs(decoder: TableDecoder, tokens: torch.Tensor, lengths: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """log p of each caption (its words and <end>) under the bigram table at ``temperature``."""
    log_p = (decoder.table / temperature).log_softmax(-1)
    out = []
    for caption, n in zip(tokens.tolist(), lengths.tolist()):
        seq = [VOCAB.start, *caption[:n], VOCAB.end]
        out.append(sum(log_p[i, j] for i, j in zip(seq, seq[1:])))
    return torch.stack(out)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_scst_gradient_is_minus_advantage_times_grad_log_prob(temperature):
    """With the mean baseline, the gradient of the loss is -sum_i advantage_i * d log p(caption_i),
    p being the sampling distribution (the model's at temperature 1)."""
    torch.manual_seed(0)
    decoder = TableDecoder(table({A: 0.0, B: 0.5, C: -0.5}))
    loss = StubRewards(scst_config(scst_samples=4, scst_baseline="mean", scst_temperature=temperature),
                       {A: 1.0, B: 0.0, C: 0.5})
    recorded = {}
    import lrcn.train.losses as losses
    original = losses.sample_with_logprobs

    def spy(*args, **kwargs):
        recorded["out"] = out = original(*args, **kwargs)
        return out

    losses.sample_with_logprobs = spy
    try:
        total, count, logs = loss(decoder, torch.zeros(6, 1), torch.zeros(30, 3, dtype=torch.long),
                                  torch.zeros(6, dtype=torch.long), 0)
    finally:
        losses.sample_with_logprobs = original
    out = recorded["out"]
    assert count == 24 and set(out.tokens[:, 0].tolist()) == {A, B, C} and (out.lengths == 1).all()
    rewards = torch.tensor([{A: 1.0, B: 0.0, C: 0.5}[w] for w in out.tokens[:, 0].tolist()]).view(6, 4)
    advantage = rewards - (rewards.sum(1, keepdim=True) - rewards) / 3
    (grad,) = torch.autograd.grad(total, decoder.table)
    log_p = caption_log_probs(decoder, out.tokens, out.lengths, temperature)
    (expected,) = torch.autograd.grad(-(advantage.flatten() * log_p).sum(), decoder.table)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
    assert logs["reward"].item() == pytest.approx(rewards.mean().item())
    assert logs["baseline"].item() == pytest.approx(rewards.mean().item())        # mean of others, averaged
    assert logs["entropy"].item() == pytest.approx(-log_p.sum().item() / 48, rel=1e-4)   # 24 words + 24 <end>


def test_scst_raises_the_log_prob_of_positive_advantage_captions_and_lowers_negative():
    torch.manual_seed(1)
    decoder = TableDecoder(table({A: 0.0, B: 0.0, C: 0.3}))
    # greedy caption: "c" (reward 0.5) -> advantage of "a" +0.5, of "b" -0.5, of "c" 0
    loss = StubRewards(scst_config(scst_samples=5, scst_baseline="greedy"), {A: 1.0, B: 0.0, C: 0.5})
    total, count, logs = loss(decoder, torch.zeros(8, 1), torch.zeros(40, 3, dtype=torch.long),
                              torch.zeros(8, dtype=torch.long), 0)
    assert logs["baseline"].item() == pytest.approx(0.5) and logs["greedy_reward"].item() == pytest.approx(0.5)
    captions = torch.tensor([[A], [B], [C]])
    before = caption_log_probs(decoder, captions, torch.ones(3, dtype=torch.long)).detach()
    (total / count).backward()
    with torch.no_grad():
        decoder.table -= 0.5 * decoder.table.grad
    after = caption_log_probs(decoder, captions, torch.ones(3, dtype=torch.long)).detach()
    assert after[0] > before[0] + 0.01 and after[1] < before[1] - 0.01


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_scst_identical_rewards_give_zero_loss(baseline):
    torch.manual_seed(0)
    decoder = TableDecoder(table({A: 0.0, B: 0.0, C: 0.0}))
    loss = StubRewards(scst_config(scst_samples=3, scst_baseline=baseline), {A: 0.7, B: 0.7, C: 0.7})
    total, count, logs = loss(decoder, torch.zeros(4, 1), torch.zeros(12, 3, dtype=torch.long),
                              torch.zeros(4, dtype=torch.long), 0)
    assert total.item() == 0.0 and count == 12
    total.backward()
    assert (decoder.table.grad == 0).all()


def scst_on(refs: list[list[str]]) -> tuple[SelfCritical, Vocabulary]:
    """An SCST loss whose training references are ``refs`` (one list per image), and its vocabulary."""
    train = [Sample(id=f"s{i}", path=f"s{i}.png", split="train", captions=r) for i, r in enumerate(refs)]
    vocab = Vocabulary.build([c for r in refs for c in r])
    return SelfCritical(scst_config(), vocab, train), vocab


def test_scst_rewards_are_cider_d_against_the_training_references():
    refs = [["A dog runs.", "a dog runs on the grass", "the dog is running"],
            ["A cat sleeps", "a cat is asleep", "the cat sleeps on a bed"],
            ["Two men walk", "men walking in a street", "two people walk"]]
    loss, vocab = scst_on(refs)
    captions = ["a dog runs", "a cat sleeps on a bed", "a dog runs", "men walk"]
    rows = [0, 1, 1, 2]
    ids = [vocab.encode(c) for c in captions]
    tokens = torch.tensor([x + [vocab.end] * (7 - len(x)) for x in ids])
    got = loss.rewards(rows, tokens, torch.tensor([len(x) for x in ids]))
    # pycocoevalcap's CIDEr-D (tokenized as the COCO evaluation does) with one more word, standing for <end>,
    # at the end of every caption and reference
    ends = {i: [f"{c} endword" for c in r] for i, r in enumerate(refs)}
    reference = CiderD(ends, tokenize=True).score_batch(rows, [f"{c} endword" for c in captions])
    np.testing.assert_allclose(got.numpy(), reference, rtol=1e-6)
    assert got[0] > got[2] and got[0] > 0.5              # a dog's caption scores on the dog, not the cat


def test_scst_rewards_count_the_end_of_a_caption():
    """A caption cut short earns less than the same words ending where the references end: the n-grams
    with <end> are part of the reward."""
    refs = [["a dog runs on the grass", "a dog runs on grass", "the dog runs on the grass"],
            ["a cat sleeps", "a cat is asleep on a bed", "the cat sleeps"],
            ["two men walk", "men walking in a street", "two people walk"]]
    loss, vocab = scst_on(refs)
    ids = [vocab.encode("a dog runs on the grass"), vocab.encode("a dog runs on the")]
    tokens = torch.tensor([ids[0], ids[1] + [vocab.end]])
    complete, cut = loss.rewards([0, 0], tokens, torch.tensor([6, 5])).tolist()
    plain = CiderD({i: r for i, r in enumerate(refs)}).score_batch([0, 0], ["a dog runs on the grass",
                                                                           "a dog runs on the"])
    assert cut / complete < plain[1] / plain[0]


def test_scst_with_real_rewards_and_one_certain_caption_gives_zero_loss():
    train = [Sample(id=f"s{i}", path=f"s{i}.png", split="train", captions=c) for i, c in
             enumerate([["a dog runs", "the dog runs"], ["a b c", "c b a"], ["dog dog", "a dog"]])]
    decoder = TableDecoder(table({DOG: 0.0}))
    loss = SelfCritical(scst_config(scst_samples=4, scst_baseline="mean"), VOCAB, train)
    total, count, logs = loss(decoder, torch.zeros(3, 1), torch.zeros(15, 3, dtype=torch.long), torch.arange(3), 0)
    assert logs["reward"].item() > 0 and total.item() == 0.0


def test_scst_runs_on_a_video_decoder_through_the_step_interface():
    torch.manual_seed(0)
    decoder = VIDEO_DECODERS["s2vt"](V, 6, embed_dim=8, hidden_dim=8, dropout=0.0)
    loss = StubRewards(scst_config(scst_samples=3), {w: float(w) for w in range(V)})
    total, count, logs = loss(decoder, torch.randn(4, 5, 6), torch.zeros(20, 3, dtype=torch.long),
                              torch.zeros(4, dtype=torch.long), 0)
    total.backward()
    assert count == 12 and decoder.out.weight.grad.abs().sum() > 0 and decoder.frame_embed.weight.grad.abs().sum() > 0
    assert {"reward", "baseline", "greedy_reward", "entropy", "sample_length", "reward_ms"} <= set(logs)


def test_unknown_losses_and_settings_are_refused():
    """(by the config's validation, which `lrcn train` and lrcn.train.loop.train run first)"""
    with pytest.raises(ConfigError, match="train.loss"):
        validate(config(loss="ppo"))
    with pytest.raises(ConfigError, match="scst_baseline"):
        validate(config(loss="scst", scst_baseline="critic"))
    with pytest.raises(ConfigError, match="scst_samples"):
        validate(config(loss="scst", scst_baseline="mean", scst_samples=1))
    with pytest.raises(ConfigError, match="ss_pick"):
        validate(config(ss_pick="beam"))


# --------------------------------------------------------------------------- through the trainer

def scalars(run_dir) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_scst_from_a_cross_entropy_run_trains_and_logs(tiny_shapes, tmp_path):
    xe = loop.train(load_config(DEMO_CONFIG, tiny_overrides(
        tiny_shapes, tmp_path, name="xe", **{"train.epochs": 1, "train.scheduled_sampling": "linear",
                                             "train.ss_k": 1.0, "train.log_every": 2})), progress=False)
    logged = scalars(xe)
    assert logged["train/ss_prob"] and max(logged["train/ss_prob"]) > 0
    scst = loop.train(load_config(DEMO_CONFIG, tiny_overrides(
        tiny_shapes, tmp_path, name="scst", **{"train.epochs": 1, "train.loss": "scst", "train.init_from": str(xe),
                                               "train.lr": 1e-3, "train.scst_samples": 2})), progress=False)
    logged = scalars(scst)
    for name in ("reward", "baseline", "entropy", "greedy_reward"):
        values = logged[f"train/{name}"]
        assert values and all(math.isfinite(v) for v in values)
    assert logged["train/entropy"][0] > 0 and "val/CIDEr" in logged
