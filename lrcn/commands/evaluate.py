"""`lrcn evaluate RUN_DIR` (with ``--ensemble``: several runs decoding as one) and `lrcn baseline
RUN_DIR`: caption a split, score it, and save results, per-image scores and reports into the run
folder (results_<split>_<name>.json, per_image_<split>_<name>.json, metrics_<split>_<name>.json/.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from lrcn.commands.options import add_decoding_arguments, add_score_output, print_scores, run_decode_config
from lrcn.data.loaders import cached_features, load_samples, split as split_of
from lrcn.data.records import Sample
from lrcn.decoding import DecodeConfig
from lrcn.decoding.baselines import BASELINES, baseline_name, consensus_caption, nearest_neighbour_captions
from lrcn.decoding.batch import caption_features
from lrcn.errors import ConfigError
from lrcn.metrics import Scores, save_scores, score, write_results
from lrcn.models.ensemble import Ensemble
from lrcn.models.factory import build_models
from lrcn.run import (Run, decode_config, load_members, load_models, resolve_device, run_feature_config,
                      training_reranker)


def register(sub) -> None:
    s = sub.add_parser("evaluate", help="caption a split with a trained run and score it")
    s.add_argument("run_dir")
    s.add_argument("--split", default="test")
    s.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path")
    add_score_output(s)
    s.add_argument("--ensemble", nargs="+", metavar="RUN_DIR", help="average the next-word probabilities of "
                   "these runs (same data and vocabulary) with RUN_DIR's; results go into RUN_DIR")
    add_decoding_arguments(s)
    s.set_defaults(func=run)

    s = sub.add_parser("baseline", help="score a baseline (blind, nearest neighbour) on a split, beside a run")
    s.add_argument("run_dir", help="a run folder: its data, encoder features and training split are used")
    s.add_argument("--split", default="test")
    s.add_argument("--kind", default="nn", choices=sorted(BASELINES),
                   help="blind: one consensus caption for all; nn: that of the nearest training image(s)")
    s.add_argument("--k", type=int, default=1, help="nn: pool the captions of the k nearest training images")
    add_score_output(s)
    s.set_defaults(func=run_baseline_command)


def run(a: argparse.Namespace) -> None:
    if a.ensemble:                       # several runs decoding as one (lrcn.models.ensemble)
        scores, _ = evaluate_ensemble([a.run_dir, *a.ensemble], a.split, run_decode_config(a), which=a.checkpoint,
                                      backend=a.backend, progress=not a.quiet)
    else:
        scores, _ = evaluate(a.run_dir, a.split, run_decode_config(a), which=a.checkpoint, backend=a.backend,
                             progress=not a.quiet)
    print_scores(a, a.split, scores)


def run_baseline_command(a: argparse.Namespace) -> None:
    scores, _ = run_baseline(a.run_dir, a.split, a.kind, k=a.k, backend=a.backend, progress=not a.quiet)
    print_scores(a, baseline_name(a.kind, a.k), scores)


def save_results(run: Run, name: str, candidates: dict[str, str], samples: Sequence[Sample],
                 backend: str) -> tuple[Scores, dict[str, str]]:
    """Score ``candidates`` against the samples' captions; write results_<name>.json, per_image_ and
    metrics_ files into the run folder."""
    scores = score(candidates, {s.id: s.captions for s in samples}, backend=backend)
    write_results(run.dir / f"results_{name}.json", candidates)
    save_scores(run.dir, name, scores)
    return scores, candidates


def evaluate(run_dir: str | Path, split: str = "test", decode: DecodeConfig | None = None, which: str = "best",
             backend: str = "fast", device: str = "auto", progress: bool = True) -> tuple[Scores, dict[str, str]]:
    """Scores of the run's ``which`` checkpoint on ``split``; writes results_<split>_<strategy>.json,
    per_image_<split>_<strategy>.json and metrics_<split>_<strategy>.json/.md into the run folder."""
    run = Run.open(run_dir)
    dev = resolve_device(device)
    config, vocab, encoder, decoder = load_models(run, which, dev)
    decode = decode or config.decode
    config = run_feature_config(run, config)
    samples = split_of(load_samples(config), split)
    features, samples = cached_features(config, samples, encoder, dev, progress)
    reranker = training_reranker(run, config, encoder, decode, dev, progress)
    hyps = caption_features(decoder, features, vocab, decode, device=dev, bf16=config.train.bf16, reranker=reranker)
    candidates = {s.id: vocab.decode(h[0].tokens) for s, h in zip(samples, hyps)}
    return save_results(run, f"{split}_{decode.label}", candidates, samples, backend)


def evaluate_ensemble(run_dirs: Sequence[str | Path], split: str = "test", decode: DecodeConfig | None = None,
                      which: str = "best", backend: str = "fast", device: str = "auto",
                      progress: bool = True) -> tuple[Scores, dict[str, str]]:
    """``lrcn evaluate`` for an ensemble of runs trained on the same data and vocabulary (seeds,
    decoder kinds, encoder settings): each run's ``which`` checkpoint reads its own cached
    features. Writes results_<split>_<strategy>-ens<M>.json, per_image_ and metrics_ files into
    the first run's folder; ``decode`` defaults to the first run's ``decode:`` section."""
    dev = resolve_device(device)
    members, vocab = load_members(run_dirs, which, dev)
    features, kept = [], None
    for member in members:
        config = run_feature_config(member.run, member.config)
        samples = split_of(load_samples(config), split)
        x, samples = cached_features(config, samples, member.encoder, dev, progress)
        rows = {s.id: n for n, s in enumerate(samples)}
        kept = [s for s in (kept if kept is not None else samples) if s.id in rows]
        features.append((x, rows))
    chosen = [f[[rows[s.id] for s in kept]] for f, rows in features]     # each member's [N, *shape_m]
    x = torch.cat([f.flatten(1) for f in chosen], dim=1)                 # [N, n_1 + ... + n_M]
    ensemble = Ensemble([m.decoder for m in members], [f.shape[1:] for f in chosen]).to(dev).eval()
    first = members[0]                                         # its features find the reranker's neighbours
    decode = decode or decode_config(first.config)
    reranker = training_reranker(first.run, first.config, first.encoder, decode, dev, progress)
    hyps = caption_features(ensemble, x, vocab, decode, device=dev, reranker=reranker, rerank_features=chosen[0])
    candidates = {s.id: vocab.decode(h[0].tokens) for s, h in zip(kept, hyps)}
    return save_results(first.run, f"{split}_{decode.label}-ens{len(members)}", candidates, kept, backend)


def run_baseline(run_dir: str | Path, split: str = "val", kind: str = "nn", k: int = 1, backend: str = "fast",
                 device: str = "auto", progress: bool = True) -> tuple[Scores, dict[str, str]]:
    """Caption ``split`` with a baseline built from the run's training split (``kind`` in
    ``BASELINES``) and score it; writes results_<split>_<name>.json, per_image_<split>_<name>.json
    and metrics_<split>_<name>.json/.md into the run folder, as ``lrcn evaluate`` does. The
    nearest-neighbour baseline uses the run's pretrained encoder features (its feature store)."""
    if kind not in BASELINES:
        raise ConfigError(f"unknown baseline {kind!r}; choose one of {sorted(BASELINES)}")
    run = Run.open(run_dir)
    config = run.config()
    samples = load_samples(config)
    train, queries = split_of(samples, "train"), split_of(samples, split)
    if kind == "blind":
        caption = consensus_caption({s.id: s.captions for s in train})
        candidates = {s.id: caption for s in queries}
    else:
        dev = resolve_device(device)
        encoder, _ = build_models(config, vocab_size=len(run.vocab()))   # pretrained weights, as cached
        train_x, train = cached_features(config, train, encoder, dev, progress)
        query_x, queries = cached_features(config, queries, encoder, dev, progress)
        candidates = dict(zip((s.id for s in queries), nearest_neighbour_captions(train_x, train, query_x, k)))
    return save_results(run, f"{split}_{baseline_name(kind, k)}", candidates, queries, backend)
