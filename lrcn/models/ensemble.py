"""Several trained caption decoders decoding as one, behind the same step interface.

The ensemble's next-word distribution is the mean of its members' probabilities,
``log((1/M) * sum_m exp(log_probs_m))``, so greedy, beam search and sampling in
lrcn.decoding work for it unchanged. Members share the vocabulary; each may read its own
image features (members trained on different encoder settings): the ensemble then takes the
concatenation of their features, ``[B, D_1 + ... + D_M]``, and hands each member its slice.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from lrcn.decoding import DecodeConfig
from lrcn.errors import CheckpointError, ConfigError
from lrcn.metrics import Scores, save_scores, score, write_results
from lrcn.models.decoders import CaptionDecoder, State
from lrcn.models.fast_step import reusing_outputs


class Ensemble(nn.Module):
    """Decoders over one vocabulary whose step averages their next-word probabilities.

    ``feature_dims=None``: every member reads the same features [B, D]. Otherwise the features
    are the members' own concatenated, [B, sum(feature_dims)], split in member order.
    State: the members' state tensors, concatenated as one flat tuple.
    """

    def __init__(self, decoders: Sequence[CaptionDecoder], feature_dims: Sequence[int] | None = None):
        super().__init__()
        if not decoders:
            raise ConfigError("an ensemble needs at least one decoder")
        sizes = {d.vocab_size for d in decoders}
        if len(sizes) != 1:
            raise CheckpointError(f"ensemble members have different vocabulary sizes {sorted(sizes)}; "
                                  "they must be trained with the same vocabulary")
        if feature_dims is not None and len(feature_dims) != len(decoders):
            raise ConfigError(f"{len(feature_dims)} feature sizes for {len(decoders)} ensemble members")
        self.members = nn.ModuleList(decoders)
        self.vocab_size = sizes.pop()
        self.feature_dims = list(feature_dims) if feature_dims is not None else None
        self.state_sizes: list[int] = []          # tensors per member state, known after init_state

    def _split(self, state: State) -> list[State]:
        bounds = [0, *torch.tensor(self.state_sizes).cumsum(0).tolist()]
        return [state[a:b] for a, b in zip(bounds, bounds[1:])]

    def init_state(self, features: Tensor) -> State:
        """features [B, D] (shared) or [B, sum(feature_dims)] -> the members' states, flattened."""
        if self.feature_dims is None:
            parts = [features] * len(self.members)
        else:
            if features.shape[-1] != sum(self.feature_dims):
                raise ConfigError(f"ensemble features have {features.shape[-1]} columns, its members read "
                                  f"{' + '.join(map(str, self.feature_dims))}")
            parts = features.split(self.feature_dims, dim=-1)
        states = [m.init_state(f) for m, f in zip(self.members, parts)]
        self.state_sizes = [len(s) for s in states]
        return tuple(t for s in states for t in s)

    def step(self, words: Tensor, state: State) -> tuple[Tensor, State]:
        """words [B] -> log of the mean of the members' probabilities [B, V], next state."""
        outs = [m.step(words, s) for m, s in zip(self.members, self._split(state))]
        log_probs = torch.stack([lp for lp, _ in outs]).logsumexp(0) - math.log(len(outs))   # [B, V]
        return log_probs, tuple(t for _, s in outs for t in s)

    @contextlib.contextmanager
    def reusing_outputs(self):
        """Every member's ``reusing_outputs`` (where it has one, see lrcn.models.fast_step); the
        ensemble's own log-probs are fresh at every step."""
        with contextlib.ExitStack() as stack:
            for member in self.members:
                stack.enter_context(reusing_outputs(member))
            yield self

    def reorder(self, state: State, index: Tensor) -> State:
        parts = [m.reorder(s, index) for m, s in zip(self.members, self._split(state))]
        return tuple(t for s in parts for t in s)


def evaluate_ensemble(run_dirs: Sequence[str | Path], split: str = "test", decode: DecodeConfig | None = None,
                      which: str = "best", backend: str = "fast", device: str = "auto",
                      progress: bool = True) -> tuple[Scores, dict[str, str]]:
    """``lrcn evaluate`` for an ensemble of runs trained on the same data and vocabulary (seeds,
    decoder kinds, encoder settings): each run's ``which`` checkpoint reads its own cached
    features. Writes results_<split>_<strategy>-ens<M>.json, per_image_ and metrics_ files into
    the first run's folder; ``decode`` defaults to the first run's ``decode:`` section."""
    from lrcn.data.loaders import cached_features, load_samples, split as split_of
    from lrcn.inference import caption_features, decode_config, load_models
    from lrcn.run import Run, resolve_device

    runs = [Run.open(d) for d in run_dirs]
    dev = resolve_device(device)
    vocab = runs[0].vocab()
    decoders, features, kept = [], [], None
    for run in runs:
        config, run_vocab, encoder, decoder = load_models(run, which, dev)
        if run_vocab.words != vocab.words:
            raise CheckpointError(f"{run.dir} has another vocabulary than {runs[0].dir}; ensemble members "
                                  f"must be trained on the same data with the same data.min_word_count")
        if config.encoder.trainable_blocks > 0:
            config.data.feature_dir = str(run.dir / "features")
        samples = split_of(load_samples(config), split)
        x, samples = cached_features(config, samples, encoder, dev, progress)
        rows = {s.id: n for n, s in enumerate(samples)}
        kept = [s for s in (kept if kept is not None else samples) if s.id in rows]
        features.append((x, rows))
        decoders.append(decoder)
    x = torch.cat([f[[rows[s.id] for s in kept]] for f, rows in features], dim=1)   # [N, D_1 + ... + D_M]
    ensemble = Ensemble(decoders, [f.shape[1] for f, _ in features]).to(dev).eval()
    decode = decode or decode_config(runs[0].config())
    hyps = caption_features(ensemble, x, vocab, decode, device=dev)
    candidates = {s.id: vocab.decode(h[0].tokens) for s, h in zip(kept, hyps)}
    scores = score(candidates, {s.id: s.captions for s in kept}, backend=backend)
    name = f"{split}_{decode.label}-ens{len(runs)}"
    write_results(runs[0].dir / f"results_{name}.json", candidates)
    save_scores(runs[0].dir, name, scores)
    return scores, candidates
