"""Decoding strategies written once on top of the decoder step interface.

Every caption decoder, image or video, offers::

    state = model.init_state(features)           # tuple of batch-first tensors [B, ...]
    log_probs, state = model.step(words, state)  # words [B] long -> log-probs [B, V]
    state = model.reorder(state, index)          # gather rows along the batch dim

Decoding feeds ``bos`` first. A finished caption is a list of words followed by ``eos``; its
log-probability is the sum over the words *and* the ``eos`` (after ``max_len`` words ``eos``
is forced, and its log-probability still counts). The ranking score divides that sum by a
length penalty of ``len(words) + 1`` (the number of predicted tokens):

* ``"none"``: 1; ``"avg"``: the length (average log-probability per token);
* ``"gnmt"``: ``((5 + length) / 6) ** alpha`` (Wu et al., 2016).

Two layers: tensor-level functions (:func:`greedy`, :func:`beam_search`,
:func:`diverse_beam_search`, :func:`sample` returning :class:`DecodeOutput`, and
:func:`sample_with_logprobs` returning :class:`SampleOutput` with gradients for self-critical
training), and :func:`generate`, which runs the strategy a :class:`DecodeConfig` selects and
returns :class:`Hypothesis` lists.

A strategy is one :class:`Strategy` entry of :data:`STRATEGIES`: its name, its search function,
the options it reads, its rules on them and its results-file label. Adding one there makes it
selectable (``decode.strategy``, ``--strategy``), validated, and evaluated into its own files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from functools import partial, wraps
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import torch
from torch import Tensor

from lrcn.decoding.processors import NEG_INF, ProcessorList, build_constraints, build_warpers
from lrcn.errors import ConfigError

State = tuple[Tensor, ...]


class StepModel(Protocol):
    """What decoding needs of a model. A model may also offer ``reusing_outputs()``, a context
    manager within which each step's log-probs need to stay valid only until the next step
    (lrcn's decoders then reuse their memory; see ``lrcn.models.fast_step.FastStep.reusing_outputs``): every
    strategy here enters it."""

    def init_state(self, features: Any) -> State: ...
    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]: ...
    def reorder(self, state: State, index: Tensor) -> State: ...


def _reusing_outputs(search: Callable) -> Callable:
    """A decoding loop ``search(model, ...)`` run inside ``model.reusing_outputs()`` where the
    model offers it: the loops here are done with each step's log-probs before the next step."""
    @wraps(search)
    def run(model: StepModel, *args, **kwargs):
        reuse = getattr(model, "reusing_outputs", None)
        with reuse() if reuse is not None else contextlib.nullcontext():
            return search(model, *args, **kwargs)
    return run


# ----------------------------------------------------------------------------- length penalties

def _no_penalty(length, alpha: float):
    return 1.0


def _average(length, alpha: float):
    return length


def _gnmt(length, alpha: float):
    return ((5.0 + length) / 6.0) ** alpha


# length -> divisor of the summed log-prob; `length` counts the words and the <end>
LENGTH_PENALTIES: dict[str, Callable] = {"none": _no_penalty, "avg": _average, "gnmt": _gnmt}
RERANK_METRICS = ("features", "captions")   # decode.rerank_metric: how lrcn.decoding.rerank finds neighbours


# ----------------------------------------------------------------------------- configuration

@dataclass
class DecodeConfig:
    """How to decode captions: the YAML config's ``decode:`` section, or built directly.

    strategy: a name in :data:`STRATEGIES`, or "auto": chosen by the flags below (``sample`` ->
        sample, ``groups`` > 1 -> diverse, ``beam_size`` > 1 -> beam, else greedy). A strategy
        named here reads only its own options (``Strategy.options``) besides the shared ones.
    beam_size: hypotheses kept per input.
    groups: diverse beam search groups (Vijayakumar et al.); ``beam_size`` must be a multiple.
    diversity_strength: Hamming diversity penalty (lambda) between groups.
    length_penalty: "none" | "avg" | "gnmt" (see the module docstring); alpha: GNMT exponent.
    min_len / max_len: fewest / most words before ``<end>`` (``<end>`` is forced after max_len).
    block_ngram: forbid repeating any n-gram of this size (0 = off).
    suppress_unk: never generate ``<unk>``. suppress_tokens: further ids never generated.
    sample: draw captions at random instead of searching; temperature, top_k (0 = off),
        top_p (1.0 = off) shape the distribution; seed makes the draws reproducible.
    n_best: captions returned per input (<= beam_size when searching; samples drawn when sampling).
    rerank: k > 0: the search's beam_size candidates (sampling: its n_best draws) are re-ordered by
        consensus with the captions of the k nearest training images (lrcn.decoding.rerank; done by
        the commands that know the training set, not by :func:`generate`); 0 = off.
    rerank_metric: how those nearest training images are found: "features" (cosine of the encoder's
        features) or "captions" (the training images whose captions best match the query's captions
        as predicted from its features by a ridge regression; lrcn.decoding.rerank.CaptionSpace).

    Every value is checked when the config is made; a ConfigError names the ``decode.`` key.
    """

    strategy: str = "auto"
    beam_size: int = 1
    groups: int = 1
    diversity_strength: float = 0.5
    length_penalty: str = "none"
    alpha: float = 0.6
    min_len: int = 1
    max_len: int = 20
    block_ngram: int = 0
    suppress_unk: bool = True
    suppress_tokens: tuple = ()
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    n_best: int = 1
    seed: int | None = None
    rerank: int = 0
    rerank_metric: str = "features"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "suppress_tokens":
                if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
                    raise ConfigError(f"decode.suppress_tokens: expected a list of token ids, got {value!r}")
                self.suppress_tokens = tuple(value)
            elif not _type_ok(value, hints[f.name]):
                raise ConfigError(f"decode.{f.name}: expected {_describe(hints[f.name])}, got {value!r}")
            elif hints[f.name] is float:
                setattr(self, f.name, float(value))
        problems = [message for ok, message in _rules(self) if not ok]
        if not problems:                                   # (the strategy is known)
            problems = self.selected.problems(self)
        if problems:
            raise ConfigError("invalid decode settings: " + "; ".join(problems))

    @property
    def selected(self) -> Strategy:
        """The entry of :data:`STRATEGIES` this config selects."""
        return STRATEGIES[_auto_strategy(self) if self.strategy == "auto" else self.strategy]

    @property
    def label(self) -> str:
        """The results-file label of these settings (greedy, beam3, sample-t0.7-k10, ...)."""
        label = self.selected.label(self)
        if not self.rerank:
            return label
        return f"{label}-rerank{self.rerank}" + ("-captions" if self.rerank_metric == "captions" else "")

    def greedy(self) -> DecodeConfig:
        """These settings (lengths, suppressions, blocked n-grams) decoding greedily, one caption each."""
        return dataclasses.replace(self, strategy="greedy", n_best=1, rerank=0)

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["suppress_tokens"] = list(self.suppress_tokens)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DecodeConfig:
        """Build from a plain dict (a YAML ``decode:`` section); unknown keys raise ConfigError."""
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"decode: unknown key(s) {unknown}; valid keys are {names}")
        return cls(**d)


def _rules(c: DecodeConfig) -> list[tuple[bool, str]]:
    """(holds, what is wrong otherwise) for the options every strategy shares or may read."""
    names = ["auto", *STRATEGIES]
    return [
        (c.strategy in names, f"decode.strategy {c.strategy!r} is unknown; choose one of {', '.join(names)}"),
        (c.beam_size >= 1, f"decode.beam_size must be >= 1 (got {c.beam_size})"),
        (c.groups >= 1, f"decode.groups must be >= 1 (got {c.groups})"),
        (c.diversity_strength >= 0, f"decode.diversity_strength must be >= 0 (got {c.diversity_strength})"),
        (c.length_penalty in LENGTH_PENALTIES,
         f"decode.length_penalty {c.length_penalty!r} is unknown; choose one of {', '.join(LENGTH_PENALTIES)}"),
        (math.isfinite(c.alpha), f"decode.alpha must be a finite number (got {c.alpha})"),
        (c.max_len >= 1, f"decode.max_len must be >= 1 (got {c.max_len})"),
        (0 <= c.min_len <= c.max_len, f"decode.min_len must be between 0 and decode.max_len={c.max_len} "
                                      f"(got {c.min_len})"),
        (c.block_ngram >= 0, f"decode.block_ngram must be >= 0 (got {c.block_ngram})"),
        (0 < c.temperature < math.inf, f"decode.temperature must be > 0 (got {c.temperature})"),
        (c.top_k >= 0, f"decode.top_k must be >= 0, 0 for off (got {c.top_k})"),
        (0 < c.top_p <= 1, f"decode.top_p must be in (0, 1], 1 for off (got {c.top_p})"),
        (c.n_best >= 1, f"decode.n_best must be >= 1 (got {c.n_best})"),
        (c.rerank >= 0, f"decode.rerank must be >= 0, 0 for off (got {c.rerank})"),
        (c.rerank == 0 or max(c.beam_size, c.n_best) >= 2,
         f"decode.rerank={c.rerank} re-orders candidates, but decoding gives one: set decode.beam_size "
         f"(or, sampling, decode.n_best) to 2 or more"),
        (c.rerank_metric in RERANK_METRICS,
         f"decode.rerank_metric {c.rerank_metric!r} is unknown; choose one of {', '.join(RERANK_METRICS)}"),
        (c.strategy != "auto" or not c.sample or (c.beam_size == 1 and c.groups == 1),
         f"decode.sample cannot be combined with decode.beam_size > 1 or decode.groups > 1 "
         f"(got beam_size={c.beam_size}, groups={c.groups}); or name the strategy in decode.strategy"),
    ]


def _auto_strategy(c: DecodeConfig) -> str:
    """The strategy ``strategy: auto`` stands for, as chosen by the flags (configs before ``strategy``)."""
    if c.sample:
        return "sample"
    if c.groups > 1:
        return "diverse"
    return "beam" if c.beam_size > 1 else "greedy"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_ok(value: Any, expected: Any) -> bool:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is int:
        return _is_int(value)
    if expected is float:
        return _is_int(value) or isinstance(value, float)
    return isinstance(value, expected)


def _describe(expected: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             type(None): "null"}
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(expected))
    return names.get(expected, str(expected))


# ----------------------------------------------------------------------------- outputs

class DecodeOutput(NamedTuple):
    """n-best lists of B inputs, best first. Missing entries (fewer than n found) score -inf."""

    tokens: Tensor      # [B, n, T] long: the words, then <end> up to T
    lengths: Tensor     # [B, n] long: number of words (without <end>)
    scores: Tensor      # [B, n] ranking score (after length penalty)
    log_probs: Tensor   # [B, n] summed log-prob of the words and <end>


class SampleOutput(NamedTuple):
    """Sampled captions, row ``i * n + j`` being sample ``j`` of input ``i``."""

    tokens: Tensor           # [B*n, T] long: words, then <end> (and <end> after it)
    token_log_probs: Tensor  # [B*n, T] log-prob of each token under the sampling distribution
    #                          (with grad; 0 where mask is False)
    mask: Tensor             # [B*n, T] bool: True on the words and the first <end>
    lengths: Tensor          # [B*n] long: number of words
    log_probs: Tensor        # [B*n] summed model log-prob of words and <end> (no grad)


@dataclass
class Hypothesis:
    tokens: list[int]   # the words, without <start> / <end>
    score: float        # ranking score (after length penalty)
    log_prob: float     # summed log-prob of the words and <end>


def to_hypotheses(output: DecodeOutput) -> list[list[Hypothesis]]:
    """Per input, its hypotheses best first (entries scoring -inf are left out)."""
    tokens, lengths = output.tokens.tolist(), output.lengths.tolist()
    scores, log_probs = output.scores.tolist(), output.log_probs.tolist()
    return [[Hypothesis(t[:n], s, lp) for t, n, s, lp in zip(*row) if s != NEG_INF]
            for row in zip(tokens, lengths, scores, log_probs)]


# ----------------------------------------------------------------------------- shared pieces

def _constraints(config: DecodeConfig, *, bos: int, eos: int, unk: int | None,
                 pad: int | None) -> ProcessorList:
    suppress = [bos, *config.suppress_tokens]
    suppress += [t for t in (pad,) if t is not None]
    if config.suppress_unk and unk is not None:
        suppress.append(unk)
    return build_constraints(min_len=config.min_len, max_len=config.max_len, eos=eos,
                             suppress=suppress, block_ngram=config.block_ngram)


def _penalty(config: DecodeConfig) -> Callable:
    return partial(LENGTH_PENALTIES[config.length_penalty], alpha=config.alpha)


def _start(model: StepModel, features: Any, copies: int) -> tuple[State, int]:
    """Initial state with every input repeated ``copies`` times (rows i*copies ... stay together)."""
    state = model.init_state(features)
    batch = state[0].size(0)
    if copies > 1:
        index = torch.arange(batch, device=state[0].device).repeat_interleave(copies)
        state = model.reorder(state, index)
    return state, batch


def _sort_best(scores: Tensor, *others: Tensor, n: int, dim: int) -> list[Tensor]:
    """The ``n`` best entries along ``dim`` of ``scores`` and of every tensor aligned with it.

    Stable: among equal scores the earlier entry wins, so an entry kept once is never displaced
    by a later one with the same score."""
    order = scores.sort(dim=dim, descending=True, stable=True).indices.narrow(dim, 0, n)
    out = []
    for t in (scores, *others):
        index = order.view(order.shape + (1,) * (t.dim() - order.dim()))
        out.append(t.gather(dim, index.expand(order.shape + t.shape[order.dim():])))
    return out


# ----------------------------------------------------------------------------- greedy & sampling

@_reusing_outputs
def _rollout(model: StepModel, features: Any, constraints: ProcessorList, pick: Callable,
             copies: int, *, bos: int, eos: int, max_len: int):
    """Feed each row's chosen word back until every row has produced <end>.

    ``pick(scores [N, V], tokens [N, t]) -> (words [N], model log-prob [N], sampling log-prob [N] or None)``.
    Returns tokens [N, T], per-step sampling log-probs [N, T] or None, lengths [N], log-prob sums [N].
    """
    state, batch = _start(model, features, copies)
    device = state[0].device
    rows = batch * copies
    words = torch.full((rows,), bos, dtype=torch.long, device=device)
    tokens = torch.full((rows, max_len + 1), eos, dtype=torch.long, device=device)
    alive = torch.ones(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    log_prob_sum = torch.zeros(rows, device=device)
    step_log_probs = []
    for t in range(max_len + 1):
        log_probs, state = model.step(words, state)                 # [N, V]
        if log_probs.requires_grad:
            log_probs = log_probs.clone()                            # processors edit in place
        scores = constraints(log_probs, tokens[:, :t])
        scores[:, eos].masked_fill_(~alive, 0.0)                     # finished rows: <end> again
        words, word_log_prob, sample_log_prob = pick(scores, tokens[:, :t])
        words = words.masked_fill(~alive, eos)
        tokens[:, t] = words
        log_prob_sum += word_log_prob.float().masked_fill(~alive, 0.0)
        if sample_log_prob is not None:
            step_log_probs.append(sample_log_prob.masked_fill(~alive, 0.0))
        alive &= words != eos
        lengths += alive
        if not alive.any():
            break
    steps = t + 1
    step_log_probs = torch.stack(step_log_probs, dim=1) if step_log_probs else None
    return tokens[:, :steps], step_log_probs, lengths, log_prob_sum


def _greedy_pick(scores: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, None]:
    words = scores.argmax(dim=-1)
    return words, scores.gather(1, words[:, None]).squeeze(1), None


def _sampling_pick(scores: Tensor, tokens: Tensor, warpers: ProcessorList,
                   generator: torch.Generator | None):
    warped = warpers(scores.clone(), tokens) if warpers else scores
    log_probs = warped.log_softmax(dim=-1)                           # the distribution sampled from
    words = torch.multinomial(log_probs.detach().exp(), 1, generator=generator).squeeze(1)
    word_log_prob = scores.detach().gather(1, words[:, None]).squeeze(1)
    return words, word_log_prob, log_probs.gather(1, words[:, None]).squeeze(1)


@torch.no_grad()
def greedy(model: StepModel, features: Any, config: DecodeConfig, *, bos: int, eos: int,
           unk: int | None = None, pad: int | None = None) -> DecodeOutput:
    """Pick the most probable word at every step (n = 1; ``tokens[:, 0]`` is the [B, T] tensor)."""
    constraints = _constraints(config, bos=bos, eos=eos, unk=unk, pad=pad)
    tokens, _, lengths, log_probs = _rollout(model, features, constraints, _greedy_pick, 1,
                                             bos=bos, eos=eos, max_len=config.max_len)
    scores = log_probs / _penalty(config)(lengths + 1)
    return DecodeOutput(tokens[:, None], lengths[:, None], scores[:, None], log_probs[:, None])


def sample_with_logprobs(model: StepModel, features: Any, config: DecodeConfig, *, bos: int,
                         eos: int, unk: int | None = None, pad: int | None = None,
                         generator: torch.Generator | None = None) -> SampleOutput:
    """Draw ``config.n_best`` captions per input, keeping the graph for policy-gradient training.

    Words are drawn from the model's distribution after the constraints and the temperature /
    top-k / top-p warpers; ``token_log_probs`` are log-probs under that distribution. The
    generator defaults to one seeded with ``config.seed`` (or torch's global one if None)."""
    if generator is None and config.seed is not None:
        generator = torch.Generator(device=_device_of(model, features)).manual_seed(config.seed)
    constraints = _constraints(config, bos=bos, eos=eos, unk=unk, pad=pad)
    warpers = build_warpers(temperature=config.temperature, top_k=config.top_k, top_p=config.top_p)
    pick = partial(_sampling_pick, warpers=warpers, generator=generator)
    tokens, step_log_probs, lengths, log_probs = _rollout(
        model, features, constraints, pick, config.n_best, bos=bos, eos=eos, max_len=config.max_len)
    positions = torch.arange(tokens.size(1), device=tokens.device)
    mask = positions[None, :] <= lengths[:, None]
    return SampleOutput(tokens, step_log_probs, mask, lengths, log_probs)


@torch.no_grad()
def sample(model: StepModel, features: Any, config: DecodeConfig, *, bos: int, eos: int,
           unk: int | None = None, pad: int | None = None,
           generator: torch.Generator | None = None) -> DecodeOutput:
    """``config.n_best`` sampled captions per input, sorted by score."""
    out = sample_with_logprobs(model, features, config, bos=bos, eos=eos, unk=unk, pad=pad,
                               generator=generator)
    n = config.n_best
    batch = out.tokens.size(0) // n
    scores = out.log_probs / _penalty(config)(out.lengths + 1)
    scores, tokens, lengths, log_probs = _sort_best(
        scores.view(batch, n), out.tokens.view(batch, n, -1), out.lengths.view(batch, n),
        out.log_probs.view(batch, n), n=n, dim=1)
    return DecodeOutput(tokens, lengths, scores, log_probs)


def _device_of(model: Any, features: Any) -> torch.device:
    if isinstance(features, Tensor):
        return features.device
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


# ----------------------------------------------------------------------------- beam search

def _first_non_end(words: Tensor, eos: int, kg: int) -> Tensor:
    """Positions of the kg first candidates that are not <end> (then of <end> ones, if too few)."""
    width = words.size(-1)
    rank = torch.arange(width, device=words.device)
    return ((words == eos) * width + rank).topk(kg, dim=-1, largest=False).indices


def _select(scores: Tensor, live: Tensor, beam_log_prob: Tensor, eos: int,
            diversity: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each group's 2*kg best extensions and, among them, the kg best that are not <end>.

    scores: [L, V] next-word log-probs of the live beams, which are rows ``live`` [L] of the
    n*G*kg beams; beam_log_prob: [n, G, kg] (beams that are not live extend to -inf). Returns, in
    ranking order, cumulative log-prob [n, G, 2kg], source beam [n, G, 2kg], word [n, G, 2kg] and
    keep [n, G, kg] (positions of the kg best non-<end> candidates). With ``diversity`` > 0 the
    ranking of group g subtracts ``diversity`` times the number of times the previous groups chose
    each word at this step (Hamming diversity); the returned log-probs stay unpenalised."""
    n, groups, kg = beam_log_prob.shape
    width, vocab = 2 * kg, scores.size(1)
    if groups > 1 and diversity > 0:
        full = scores.new_full((n * groups * kg, vocab), NEG_INF).index_copy_(0, live, scores)
        return _select_diverse(full.view(n, groups, kg, vocab).add_(beam_log_prob[..., None]), eos, diversity)
    # a group's best extensions are among its beams' own best: rank each live beam's `per_beam`
    # best words, then the group's kg * per_beam candidates (the [L, V] scores are read once)
    per_beam = min(width, vocab)
    row_top, row_word = scores.topk(per_beam, dim=-1)                  # [L, per_beam]
    row_top += beam_log_prob.view(-1)[live, None]
    every_top = row_top.new_full((n * groups * kg, per_beam), NEG_INF).index_copy_(0, live, row_top)
    every_word = row_word.new_zeros(every_top.shape).index_copy_(0, live, row_word)   # dead beams: -inf
    top, index = every_top.view(n, groups, kg * per_beam).topk(width, dim=-1)
    words = every_word.view(n, groups, kg * per_beam).gather(-1, index)
    return top, index // per_beam, words, _first_non_end(words, eos, kg)


def _select_diverse(cand: Tensor, eos: int, diversity: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_select` on cand [n, G, kg, V], the cumulative log-prob of every extension, groups
    ranked one after the other."""
    batch, groups, kg, vocab = cand.shape
    width = 2 * kg
    counts = cand.new_zeros(batch, vocab)            # times each word was chosen by earlier groups
    results = []
    for g in range(groups):
        flat = cand[:, g].reshape(batch, kg * vocab)
        ranked = (cand[:, g] - diversity * counts[:, None, :]).view(batch, kg * vocab)
        index = ranked.topk(width, dim=-1).indices
        top, words = flat.gather(1, index), index % vocab
        keep = _first_non_end(words, eos, kg)
        alive = (top.gather(1, keep) > NEG_INF).to(counts.dtype)      # dead beams choose nothing
        counts.scatter_add_(1, words.gather(1, keep), alive)
        results.append((top, index // vocab, words, keep))
    return tuple(torch.stack(parts, dim=1) for parts in zip(*results))


@torch.no_grad()
@_reusing_outputs
def _beam_search(model: StepModel, features: Any, config: DecodeConfig, groups: int,
                 diversity: float, *, bos: int, eos: int, unk: int | None, pad: int | None,
                 early_stop: bool) -> DecodeOutput:
    """Beam search over all inputs at once: B x k beams, split into ``groups`` groups of kg beams.

    Each step, every group ranks its kg x V extensions; <end> extensions among the kg best
    become finished captions (each group keeps its n_best best by score), and the kg best
    extensions that are not <end> stay alive. Only *live* beams are stepped through the model:
    a beam is dead while its log-prob is -inf (at the first step all beams of a group but one)
    and, with ``early_stop``, once even its best reachable score cannot beat its group's worst
    kept caption (then none of its extensions can rank above a live beam's, nor enter the
    n-best list); an input is done once none of its beams is live, and leaves the batch. Exact:
    the result equals running every beam of every input to ``max_len`` (tests check it). Diverse
    search keeps hopeless beams, which still steer the later groups."""
    k, n_best, max_len = config.beam_size, config.n_best, config.max_len
    kg = k // groups
    prune = early_stop and (groups == 1 or diversity == 0)
    constraints = _constraints(config, bos=bos, eos=eos, unk=unk, pad=pad)
    penalty = _penalty(config)
    state = model.init_state(features)                                # one row per input
    batch = state[0].size(0)
    device = state[0].device

    active = torch.arange(batch, device=device)          # inputs still searched, n = len(active)
    beam_log_prob = torch.zeros(batch, groups, kg, device=device)
    beam_log_prob[:, :, 1:] = NEG_INF                     # all beams of a group start as one
    live = torch.arange(0, batch * k, kg, device=device)  # beams with a row in the model's state
    if groups > 1:
        state = model.reorder(state, live // k)
    words = torch.full((len(live),), bos, dtype=torch.long, device=device)
    history = torch.full((batch * k, max_len + 1), eos, dtype=torch.long, device=device)  # alive words
    # finished captions of each active (input, group), best first
    fin = [torch.full((batch, groups, n_best), NEG_INF, device=device),                 # score
           torch.full((batch, groups, n_best), NEG_INF, device=device),                 # log-prob
           torch.zeros((batch, groups, n_best), dtype=torch.long, device=device),       # length
           torch.full((batch, groups, n_best, max_len + 1), eos, dtype=torch.long, device=device)]
    results = [x.clone() for x in fin]                    # of all inputs, filled as they finish

    for t in range(max_len + 1):
        n = len(active)
        log_probs, state = model.step(words, state)                  # [L, V], the live beams
        scores = constraints(log_probs.float(), history[:, :t].index_select(0, live))
        top_log_prob, top_beam, top_word, keep = _select(scores, live, beam_log_prob, eos, diversity)

        # <end> among the kg best: finished captions of t words
        end_log_prob = top_log_prob[..., :kg].masked_fill(top_word[..., :kg] != eos, NEG_INF)
        source = top_beam[..., :kg, None].expand(-1, -1, -1, max_len + 1)
        end_tokens = history.view(n, groups, kg, -1).gather(2, source)
        end_length = torch.full_like(end_log_prob, t, dtype=torch.long)
        fin = _sort_best(*(torch.cat(pair, dim=2) for pair in zip(
            fin, (end_log_prob / penalty(t + 1), end_log_prob, end_length, end_tokens))), n=n_best, dim=2)

        # the kg best that are not <end> stay alive
        beam_log_prob = top_log_prob.gather(-1, keep)                 # [n, G, kg]
        if t == max_len:
            break
        first_row = torch.arange(n * groups, device=device).view(n, groups, 1) * kg
        rows = (first_row + top_beam.gather(-1, keep)).view(n, k)    # source beams
        words = top_word.gather(-1, keep).view(n, k)
        hopeful = beam_log_prob > NEG_INF                             # [n, G, kg]
        if early_stop:
            # log-probs only fall; the best score a beam can reach uses the largest penalty ahead
            best_possible = beam_log_prob / max(penalty(t + 2), penalty(max_len + 1))
            can_win = best_possible > fin[0][..., -1:]                # beats the worst kept caption
            done = ~can_win.flatten(1).any(1)                         # [n]
            if prune:
                hopeful &= can_win
            n_done = int(done.sum())
            if n_done == n:
                break
            if n_done:                                                # drop the done inputs
                gone, stay = done.nonzero().squeeze(1), (~done).nonzero().squeeze(1)
                for result, x in zip(results, fin):
                    result.index_copy_(0, active[gone], x[gone])
                active, rows, words, hopeful = active[stay], rows[stay], words[stay], hopeful[stay]
                beam_log_prob, fin = beam_log_prob[stay], [x[stay] for x in fin]
        rows, words = rows.view(-1), words.view(-1)
        history = history.index_select(0, rows)
        history[:, t] = words
        # the model's state holds the previous live beams: row live[j] of the old layout is row j
        position = torch.empty(n * k, dtype=torch.long, device=device)
        position[live] = torch.arange(len(live), device=device)
        live = hopeful.view(-1).nonzero().squeeze(1)
        if not len(live):                                             # nothing left that could finish
            break
        state = model.reorder(state, position[rows[live]])
        words = words[live]

    for result, x in zip(results, fin):
        result.index_copy_(0, active, x)
    score, log_prob, length, tokens = results
    return _final(score.view(batch, -1), log_prob.view(batch, -1), length.view(batch, -1),
                  tokens.view(batch, groups * n_best, -1), n_best, distinct=groups > 1)


def _final(scores: Tensor, log_probs: Tensor, lengths: Tensor, tokens: Tensor, n: int,
           distinct: bool) -> DecodeOutput:
    """The n best of each row (duplicates dropped if ``distinct``), trimmed to the longest caption."""
    scores, log_probs, lengths, tokens = _sort_best(scores, log_probs, lengths, tokens,
                                                    n=scores.size(1), dim=1)
    if distinct:   # groups of a diverse search may find the same caption: keep its first copy
        same = (tokens[:, :, None, :] == tokens[:, None, :, :]).all(-1)          # [B, M, M]
        earlier = torch.ones(same.shape[1:], dtype=torch.bool, device=same.device).tril(-1)
        repeat = (same & earlier & (scores > NEG_INF)[:, None, :]).any(-1)
        scores = scores.masked_fill(repeat, NEG_INF)
        scores, log_probs, lengths, tokens = _sort_best(scores, log_probs, lengths, tokens,
                                                        n=scores.size(1), dim=1)
    scores, log_probs, lengths, tokens = (x[:, :n] for x in (scores, log_probs, lengths, tokens))
    width = int(lengths.max()) + 1 if lengths.numel() else 1
    return DecodeOutput(tokens[..., :width], lengths, scores, log_probs)


def beam_search(model: StepModel, features: Any, config: DecodeConfig, *, bos: int, eos: int,
                unk: int | None = None, pad: int | None = None, early_stop: bool = True) -> DecodeOutput:
    """Beam search with ``config.beam_size`` beams over the whole batch at once (``config.groups``
    is ignored). ``early_stop=False`` steps every beam that can still finish, hopeless or not,
    to ``max_len`` (same result, slower)."""
    return _beam_search(model, features, config, 1, 0.0, bos=bos, eos=eos, unk=unk, pad=pad,
                        early_stop=early_stop)


def diverse_beam_search(model: StepModel, features: Any, config: DecodeConfig, *, bos: int,
                        eos: int, unk: int | None = None, pad: int | None = None,
                        early_stop: bool = True) -> DecodeOutput:
    """Diverse beam search (Vijayakumar et al., 2018): ``config.groups`` groups of
    ``beam_size / groups`` beams; a group's ranking is penalised by ``diversity_strength`` for
    every time an earlier group chose the same word at the same step. The n-best list merges
    the groups' captions, distinct, by score."""
    return _beam_search(model, features, config, config.groups, config.diversity_strength,
                        bos=bos, eos=eos, unk=unk, pad=pad, early_stop=early_stop)


# ----------------------------------------------------------------------------- strategies

def _no_problems(config: DecodeConfig) -> list[str]:
    return []


def _one_caption(config: DecodeConfig) -> list[str]:
    return [] if config.n_best == 1 else [f"decode.n_best must be 1 for greedy decoding (got {config.n_best})"]


def _beams(config: DecodeConfig) -> list[str]:
    return [] if config.n_best <= config.beam_size else [
        f"decode.n_best ({config.n_best}) must be <= decode.beam_size ({config.beam_size})"]


def _groups(config: DecodeConfig) -> list[str]:
    return _beams(config) + ([] if config.beam_size % config.groups == 0 else [
        f"decode.beam_size ({config.beam_size}) must be a multiple of decode.groups ({config.groups})"])


def _penalty_label(config: DecodeConfig) -> str:
    """"" | "-avg" | "-gnmt0.9": how finished captions were ranked, when not by log-prob alone."""
    if config.length_penalty == "none":
        return ""
    return f"-{config.length_penalty}" + (f"{config.alpha:g}" if config.length_penalty == "gnmt" else "")


def _greedy_label(config: DecodeConfig) -> str:
    return "greedy"


def _beam_label(config: DecodeConfig) -> str:
    return f"beam{config.beam_size}{_penalty_label(config)}"


def _diverse_label(config: DecodeConfig) -> str:
    return f"beam{config.beam_size}-g{config.groups}{_penalty_label(config)}"


def _sample_label(config: DecodeConfig) -> str:
    parts = ["sample", f"t{config.temperature:g}"]
    parts += [f"k{config.top_k}"] if config.top_k else []
    parts += [f"p{config.top_p:g}"] if config.top_p < 1 else []
    return "-".join(parts)


# the DecodeConfig fields every strategy reads (through the constraints and the length penalty)
SHARED_OPTIONS = ("min_len", "max_len", "block_ngram", "suppress_unk", "suppress_tokens", "length_penalty", "alpha")


@dataclass(frozen=True)
class Strategy:
    """One decoding strategy, all of it in one entry of :data:`STRATEGIES`.

    name: what ``decode.strategy`` (and ``--strategy``) call it.
    search: ``search(model, features, config, *, bos, eos, unk, pad) -> DecodeOutput``.
    options: the DecodeConfig fields it reads besides :data:`SHARED_OPTIONS` (the command line
        says which strategies use each option).
    label: ``label(config) -> str``, its results-file name (``results_<split>_<label>.json``):
        the strategy and the options that change its captions.
    problems: ``problems(config) -> [message, ...]``, its own rules on its options, each message
        naming the ``decode.`` key (checked whenever a DecodeConfig selecting it is made).
    """

    name: str
    search: Callable[..., DecodeOutput]
    options: tuple[str, ...]
    label: Callable[[DecodeConfig], str]
    problems: Callable[[DecodeConfig], list[str]] = _no_problems


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("greedy", greedy, ("n_best",), _greedy_label, _one_caption),
    Strategy("beam", beam_search, ("beam_size", "n_best"), _beam_label, _beams),
    Strategy("diverse", diverse_beam_search, ("beam_size", "groups", "diversity_strength", "n_best"),
             _diverse_label, _groups),
    Strategy("sample", sample, ("temperature", "top_k", "top_p", "n_best", "seed"), _sample_label),
)}


# ----------------------------------------------------------------------------- entry point

def generate(model: StepModel, features: Any, config: DecodeConfig | Mapping[str, Any], *,
             bos: int, eos: int, unk: int | None = None, pad: int | None = None) -> list[list[Hypothesis]]:
    """Decode every input with the strategy ``config`` selects; per input its n_best
    hypotheses, best first. ``bos`` / ``pad`` (if given) and, with ``suppress_unk``, ``unk`` are
    never generated. The caller chooses the model's mode (``model.eval()``)."""
    if not isinstance(config, DecodeConfig):
        config = DecodeConfig.from_dict(config)
    output = config.selected.search(model, features, config, bos=bos, eos=eos, unk=unk, pad=pad)
    return to_hypotheses(output)
