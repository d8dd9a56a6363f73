"""Self-critical training: time of the reward per step against the decoder's forward and backward.

Runs the ``scst`` loss of ``lrcn.train.losses`` on batches of a trained run's training images
(its config, vocabulary, best weights and cached features) and splits each step's time into

1. forward: sampling K captions per image with gradients, plus the greedy baseline's decoding;
2. reward: CIDEr-D of the B*K sampled (and B greedy) captions against the training references,
   one ``CiderD.score_batch`` call with document frequencies built once from the training set;
3. backward: ``loss.backward()``.

    python -m experiments.benchmarks.scst_step_time RUN_DIR [--steps 20] [--batch-size 32] [--samples 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from lrcn.data.loaders import cached_features, load_samples, split
from lrcn.models.factory import build_models
from lrcn.run import Run
from lrcn.train.losses import SelfCritical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained run folder (cross-entropy or SCST)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default: the run's)")
    parser.add_argument("--samples", type=int, default=5, help="captions sampled per image")
    parser.add_argument("--baseline", default="greedy", choices=["greedy", "mean"])
    args = parser.parse_args()

    run = Run.open(args.run)
    config, vocab = run.config(), run.vocab()
    config.train = dataclasses.replace(config.train, loss="scst", scst_samples=args.samples,
                                       scst_baseline=args.baseline)
    batch_size = args.batch_size or config.train.batch_size
    train = split(load_samples(config), "train")
    encoder, decoder = build_models(config, len(vocab))
    features, train = cached_features(config, train, encoder, progress=False)
    decoder.load_state_dict(run.checkpoint("best")["model"])
    decoder.train()

    started = time.perf_counter()
    loss_fn = SelfCritical(config, vocab, train)
    build_s = time.perf_counter() - started

    generator = torch.Generator().manual_seed(0)
    forward, reward, backward, lengths = [], [], [], []
    for step in range(args.steps + 1):
        rows = torch.randperm(len(train), generator=generator)[:batch_size]
        t0 = time.perf_counter()
        total, count, logs = loss_fn(decoder, features[rows], None, rows, step)
        t1 = time.perf_counter()
        decoder.zero_grad(set_to_none=True)
        (total / count).backward()
        t2 = time.perf_counter()
        if step == 0:
            continue                                   # warm-up
        reward.append(logs["reward_ms"])
        forward.append((t1 - t0) * 1000 - logs["reward_ms"])
        backward.append((t2 - t1) * 1000)
        lengths.append(float(logs["sample_length"]))

    f, r, b = (statistics.median(x) for x in (forward, reward, backward))
    print(f"{run.dir.name}: decoder {config.decoder.kind} {config.decoder.embed_dim}/{config.decoder.hidden_dim}, "
          f"vocabulary {len(vocab)}, {len(train)} training images; {batch_size} images x {args.samples} samples "
          f"per step ({args.baseline} baseline), {args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"CIDEr-D scorer built from the training references once: {build_s:.2f} s")
    print(f"mean sampled caption length: {statistics.mean(lengths):.1f} words")
    print("| per step (median) | ms | share of the step |")
    print("|---|---:|---:|")
    for name, value in [("forward: sampling with grad + greedy baseline", f), ("reward: CIDEr-D, one batch", r),
                        ("backward", b)]:
        print(f"| {name} | {value:.1f} | {value / (f + r + b):.0%} |")
    print(f"reward / (forward + backward) = {r / (f + b):.3f}")


if __name__ == "__main__":
    main()
