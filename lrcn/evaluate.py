"""Evaluate a run on a split: decode, score, and save results, per-image scores and reports."""

from __future__ import annotations

from pathlib import Path

import torch

from lrcn.data.loaders import cached_features, load_samples, split as split_of
from lrcn.decoding import DecodeConfig
from lrcn.inference import caption_features, load_models, run_feature_config, training_reranker
from lrcn.metrics import Scores, save_scores, score, write_results
from lrcn.run import Run, resolve_device


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
    reranker = training_reranker(run, config, encoder, decode.rerank, dev, progress)
    hyps = caption_features(decoder, features, vocab, decode, device=dev, bf16=config.train.bf16, reranker=reranker)
    candidates = {s.id: vocab.decode(h[0].tokens) for s, h in zip(samples, hyps)}
    scores = score(candidates, {s.id: s.captions for s in samples}, backend=backend)
    name = f"{split}_{decode.label}"
    write_results(run.dir / f"results_{name}.json", candidates)
    save_scores(run.dir, name, scores)
    return scores, candidates
