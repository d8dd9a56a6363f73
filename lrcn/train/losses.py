"""Training losses behind one interface, chosen by ``train.loss`` in the config.

A loss is built once per run with ``(config, vocab, train_samples)`` and called on every batch as
``loss(decoder, features, words, rows, step) -> (total, count, logs)``:

- ``features`` [B, ...]: one row per training image (or clip);
- ``words`` [B*S, L]: S reference captions per image (``<start> w1 .. wn <end> <pad>*``);
- ``rows`` [B]: the images' indices into ``train_samples`` (SCST looks up their references);
- ``step``: optimizer steps since the start of the run (schedules read it);
- ``total``: the loss summed over its ``count`` items (tokens, captions); the trainer divides by the
  count summed over all processes, so a distributed run follows the same gradient as one process
  with the same global batch;
- ``logs``: scalar tensors/floats for TensorBoard (``train/<name>``), averaged over the batch.

The losses (``LOSSES``):

- ``xe``: cross-entropy of every next word, with optional label smoothing, word dropout (Bowman et
  al., 2016) and scheduled sampling (Bengio et al., 2015);
- ``scst``: self-critical sequence training (Rennie et al., 2017), REINFORCE with the CIDEr-D of
  sampled captions as the reward.

Both run the decoder only through ``forward`` (teacher forcing) or the step interface, so they
work for image and video decoders alike.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from lrcn.config_schema import Config
from lrcn.data.records import Sample
from lrcn.decoding import greedy, sample_with_logprobs
from lrcn.errors import ConfigError
from lrcn.metrics.cider import CiderD
from lrcn.models.base import CaptionDecoder
from lrcn.text import Vocabulary, tokenize


# --------------------------------------------------------------------------- scheduled sampling

def _off(k: float, epoch: float) -> float:
    return 0.0


def _linear(k: float, epoch: float) -> float:
    return k * epoch


def _exponential(k: float, epoch: float) -> float:
    return 1.0 - k ** epoch


def _inverse_sigmoid(k: float, epoch: float) -> float:
    return 1.0 - k / (k + math.exp(min(epoch / k, 700.0)))


# name -> (k, epochs since train.ss_start_epoch) -> probability of feeding the model's own word.
# Bengio et al. (2015) write the probability of the ground truth, eps_i = 1 - p: linear
# eps = 1 - k*i, exponential eps = k**i (k < 1), inverse sigmoid eps = k / (k + exp(i / k)) (k >= 1).
SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "off": _off, "linear": _linear, "exponential": _exponential, "inverse_sigmoid": _inverse_sigmoid,
}

# name -> (is k valid, what k must be)
SCHEDULE_K: dict[str, tuple[Callable[[float], bool], str]] = {
    "off": (lambda k: True, ""),
    "linear": (lambda k: k > 0, "> 0 (probability gained per epoch)"),
    "exponential": (lambda k: 0 < k < 1, "in (0, 1)"),
    "inverse_sigmoid": (lambda k: k >= 1, ">= 1"),
}


def schedule_problems(name: str, k: float, max_prob: float) -> list[str]:
    """What is wrong with a scheduled-sampling setting (``train.scheduled_sampling``, ``ss_k``,
    ``ss_max_prob``), each problem naming its key; checked by lrcn.config.validate and
    :class:`SamplingSchedule`."""
    if name not in SCHEDULES:
        return [f"train.scheduled_sampling {name!r} is unknown; choose one of {', '.join(SCHEDULES)}"]
    valid, what = SCHEDULE_K[name]
    problems = [] if valid(k) else [f"train.ss_k={k} does not suit train.scheduled_sampling={name}: it must be {what}"]
    if not 0 <= max_prob <= 1:
        problems.append(f"train.ss_max_prob must be in [0, 1] (got {max_prob})")
    return problems


def _argmax(log_probs: Tensor) -> Tensor:
    return log_probs.argmax(dim=-1)


def _draw(log_probs: Tensor) -> Tensor:
    return torch.multinomial(log_probs.exp(), 1).squeeze(1)


# train.ss_pick -> log-probs [N, V] -> the model's own word [N]
PICKS: dict[str, Callable[[Tensor], Tensor]] = {"sample": _draw, "argmax": _argmax}


class SamplingSchedule:
    """The probability of feeding the model's own previous word instead of the reference word,
    as a function of the optimizer step: 0 before ``start_epoch``, then ``SCHEDULES[name](k, e)``
    with ``e`` the (fractional) epochs since ``start_epoch``, clipped to ``[0, max_prob]``."""

    def __init__(self, name: str, k: float, max_prob: float, start_epoch: float, steps_per_epoch: int):
        problems = schedule_problems(name, k, max_prob)
        if problems:
            raise ConfigError("; ".join(problems))
        self.fn, self.k, self.max_prob = SCHEDULES[name], k, max_prob
        self.start_epoch, self.steps_per_epoch = start_epoch, max(1, steps_per_epoch)

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch - self.start_epoch
        if epoch < 0:
            return 0.0
        return min(self.max_prob, max(0.0, self.fn(self.k, epoch)))


def scheduled_sampling_log_probs(decoder: CaptionDecoder, state: tuple[Tensor, ...], words: Tensor, prob: float,
                                 pick: Callable[[Tensor], Tensor] = _draw) -> Tensor:
    """Log-probs [N, L-1, V] of every next word of ``words`` [N, L] from ``state`` (the decoder's
    initial state of each row), unrolled through ``decoder.step``:
    after ``<start>``, each input word is, with probability ``prob`` (independently per caption and
    position), the model's own word picked from its previous output (``pick``, no gradient through
    the choice) instead of the reference word. ``prob=0`` is teacher forcing; ``prob=1`` feeds only
    the model's words."""
    inputs = words[:, 0]
    out = []
    for t in range(words.shape[1] - 1):
        if t > 0:
            own = torch.rand(words.shape[0], device=words.device) < prob              # [N]
            inputs = torch.where(own, pick(log_probs.detach()), words[:, t])
        log_probs, state = decoder.step(inputs, state)                                # [N, V]
        out.append(log_probs)
    return torch.stack(out, dim=1)


def drop_words(words: Tensor, prob: float, unk: int, pad: int) -> Tensor:
    """Word dropout (Bowman et al., 2016): ``words`` [N, L] with each word after ``<start>`` (not
    padding) replaced by ``unk`` with probability ``prob``, independently; the input words of
    teacher forcing, so that the next word must also be told from the image and the longer
    context. The targets stay the reference words."""
    if prob <= 0:
        return words
    drop = (torch.rand(words.shape, device=words.device) < prob) & (words != pad)
    drop[:, 0] = False
    return words.masked_fill(drop, unk)


class CrossEntropy:
    """Cross-entropy of every next word, padding masked, optional label smoothing
    (``train.label_smoothing``), word dropout of the input words (``train.word_dropout``,
    :func:`drop_words`) and scheduled sampling (``train.scheduled_sampling``; plain teacher
    forcing while its probability is 0)."""

    def __init__(self, config: Config, vocab: Vocabulary, samples: Sequence[Sample]):
        t = config.train
        self.pad, self.smoothing, self.auxiliary_weight = vocab.pad, t.label_smoothing, t.auxiliary_weight
        self.unk, self.word_dropout = vocab.unk, t.word_dropout
        self.pick = PICKS[t.ss_pick]
        self.schedule = SamplingSchedule(t.scheduled_sampling, t.ss_k, t.ss_max_prob, t.ss_start_epoch,
                                         math.ceil(len(samples) / t.batch_size))
        self.scheduled = t.scheduled_sampling != "off"

    def __call__(self, decoder: CaptionDecoder, features: Tensor, words: Tensor, rows: Tensor,
                 step: int) -> tuple[Tensor, Tensor, dict]:
        per_image = words.shape[0] // features.shape[0]
        # each image is encoded once; its S captions start from copies of its state
        rows_of_captions = torch.arange(features.shape[0], device=words.device).repeat_interleave(per_image)
        state = decoder.reorder(decoder.init_state(features), rows_of_captions)
        prob = self.schedule(step)
        inputs = drop_words(words, self.word_dropout, self.unk, self.pad) if decoder.training else words
        if prob > 0:
            scores = scheduled_sampling_log_probs(decoder, state, inputs, prob, self.pick)     # [B*S, L-1, V]
        else:
            scores, _ = decoder.forward_steps(inputs[:, :-1], state)                        # [B*S, L-1, V]
        targets = words[:, 1:].flatten()
        total = F.cross_entropy(scores.flatten(0, 1).float(), targets, ignore_index=self.pad,
                                label_smoothing=self.smoothing, reduction="sum")
        logs = {"ss_prob": prob} if self.scheduled else {}
        auxiliary = getattr(decoder, "auxiliary_loss", None)        # e.g. lrcn.models.concepts: its detectors'
        if auxiliary is not None and self.auxiliary_weight:
            extra = auxiliary(features, words)
            total = total + self.auxiliary_weight * extra
            logs["auxiliary_loss"] = extra.detach() / features.shape[0]                # nats per image
        return total, (targets != self.pad).sum(), logs


# --------------------------------------------------------------------------- self-critical training

def _minus_greedy(rewards: Tensor, greedy_rewards: Tensor) -> Tensor:
    return rewards - greedy_rewards[:, None]


def _minus_mean_of_others(rewards: Tensor, greedy_rewards: Tensor) -> Tensor:
    # the mean of the differences, so that equal rewards give exactly 0
    return (rewards[:, :, None] - rewards[:, None, :]).sum(dim=2) / (rewards.shape[1] - 1)


# train.scst_baseline -> (sample rewards [B, K], greedy captions' rewards [B]) -> advantages [B, K]
ADVANTAGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"greedy": _minus_greedy, "mean": _minus_mean_of_others}


class SelfCritical:
    """Self-critical sequence training (Rennie et al., 2017).

    For each image, ``train.scst_samples`` (K) captions are sampled from the decoder (in its
    training mode, at temperature ``train.scst_temperature``, with the ``decode:`` section's
    max_len, min_len, block_ngram and suppressions); the reward of a caption is its CIDEr-D against
    the image's training references, with document frequencies from all training references, and
    ``<end>`` counted as the last word of every caption and reference, as in Rennie et al.'s code
    (self-critical.pytorch): without it a caption cut short ("a dog runs in the") loses nothing
    for its missing end, and SCST learns such endings. The
    loss is ``-(reward - baseline) * log p(caption)`` summed over the B*K captions (``count`` =
    B*K), ``log p`` being under the sampling distribution, and the baseline
    (``train.scst_baseline``) the reward of the image's greedy caption (decoded in eval mode, as at
    test time; "greedy") or the mean reward of the image's other K-1 samples ("mean", the "new
    self-critical" baseline of Luo, 2020).

    Logs: ``reward`` (mean sample reward), ``baseline``, ``greedy_reward`` (greedy baseline only),
    ``entropy`` (the sampling distribution's entropy per word, estimated by the mean -log p of the
    sampled words and ``<end>``), ``sample_length`` (words) and ``reward_ms`` (time spent scoring).
    """

    def __init__(self, config: Config, vocab: Vocabulary, samples: Sequence[Sample]):
        t = config.train
        self.vocab, self.k, self.advantage = vocab, t.scst_samples, ADVANTAGES[t.scst_baseline]
        self.uses_greedy = t.scst_baseline == "greedy"
        self.greedy_config = config.decode.greedy()
        self.sample_config = dataclasses.replace(config.decode, strategy="sample", n_best=self.k,
                                                 temperature=t.scst_temperature, top_k=0, top_p=1.0, seed=None)
        self.tokens = dict(bos=vocab.start, eos=vocab.end, unk=vocab.unk, pad=vocab.pad)
        self.end_word = vocab.words[vocab.end]
        references = {}
        for row, s in enumerate(samples):
            tokenized = [" ".join([*tokenize(c), self.end_word]) for c in s.captions]
            references[row] = [c for c in tokenized if c != self.end_word] or tokenized
        self.cider = CiderD(references, tokenize=False)

    def rewards(self, rows: Sequence[int], tokens: Tensor, lengths: Tensor) -> Tensor:
        """CIDEr-D [N] of each caption ``tokens[n, :lengths[n]]`` followed by ``<end>`` against the
        references (each followed by ``<end>``) of training row ``rows[n]``, scored as one batch."""
        words = self.vocab.words
        captions = [[*(words[i] for i in ids[:n]), self.end_word] for ids, n in zip(tokens.tolist(), lengths.tolist())]
        return torch.from_numpy(self.cider.score_batch(list(rows), captions)).float()

    def __call__(self, decoder: CaptionDecoder, features: Tensor, words: Tensor, rows: Tensor,
                 step: int) -> tuple[Tensor, int, dict]:
        batch, k = features.shape[0], self.k
        out = sample_with_logprobs(decoder, features, self.sample_config, **self.tokens)   # rows i*K + j
        rows = rows.tolist()
        tokens, lengths = [out.tokens], [out.lengths]
        if self.uses_greedy:
            training = decoder.training
            decoder.eval()
            best = greedy(decoder, features, self.greedy_config, **self.tokens)
            decoder.train(training)
            tokens.append(best.tokens[:, 0])
            lengths.append(best.lengths[:, 0])
        started = time.perf_counter()
        width = max(t.shape[1] for t in tokens)
        tokens = torch.cat([F.pad(t, (0, width - t.shape[1]), value=self.vocab.end) for t in tokens])
        scored = self.rewards([r for r in rows for _ in range(k)] + (rows if self.uses_greedy else []),
                              tokens, torch.cat(lengths))
        reward_ms = (time.perf_counter() - started) * 1000
        rewards = scored[: batch * k].view(batch, k)                                       # [B, K]
        greedy_rewards = scored[batch * k:]                                                # [B] or empty
        advantage = self.advantage(rewards, greedy_rewards)                                # [B, K]
        log_prob = out.token_log_probs.sum(dim=1)                                          # [B*K]
        total = -(advantage.flatten().to(log_prob.device) * log_prob).sum()
        logs = {"reward": rewards.mean(), "baseline": (rewards - advantage).mean(),
                "entropy": -out.token_log_probs.detach().sum() / out.mask.sum(),
                "sample_length": out.lengths.float().mean(), "reward_ms": reward_ms}
        if self.uses_greedy:
            logs["greedy_reward"] = greedy_rewards.mean()
        return total, batch * k, logs


LOSSES = {"xe": CrossEntropy, "scst": SelfCritical}


def build_loss(config: Config, vocab: Vocabulary, samples: Sequence[Sample]):
    """The loss ``train.loss`` names (a config that lrcn.config.validate accepted)."""
    return LOSSES[config.train.loss](config, vocab, samples)
