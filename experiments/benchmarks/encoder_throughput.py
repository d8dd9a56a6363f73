"""Frozen-encoder forward throughput (images/s) on CPU, measured side by side.

`ImageEncoder` keeps its weights and inputs channels_last; the "contiguous" rows time the same
network in the default (NCHW-contiguous) memory format for comparison.

    python -m experiments.benchmarks.encoder_throughput [--batch 32] [--rounds 10]
        [--encoders efficientnet_lite0,resnet18]

Configurations are timed in interleaved rounds (one forward each per round) so that load from
other processes hits them alike; prints median and best images/s and ratios to the first one.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from lrcn.models.encoders import build_encoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--encoders", default="efficientnet_lite0")
    ap.add_argument("--sizes", default="224,128")
    args = ap.parse_args()
    configs = []  # (label, encoder, input)
    for name in args.encoders.split(","):
        enc = build_encoder(name, pretrained=False)
        for size in map(int, args.sizes.split(",")):
            x = torch.randn(args.batch, 3, size, size)
            configs.append((f"{name} {size}px (encoder, channels_last)", enc, x))
            body = copy.deepcopy(enc.body).to(memory_format=torch.contiguous_format)
            configs.append((f"{name} {size}px contiguous", body, x))
    times: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    with torch.inference_mode():
        for label, enc, x in configs:  # warm-up
            enc(x)
        for _ in range(args.rounds):
            for label, enc, x in configs:
                t = time.perf_counter()
                enc(x)
                times[label].append(time.perf_counter() - t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.rounds} rounds")
    base = None
    for label, ts in times.items():
        median = args.batch / statistics.median(ts)
        base = base or median
        print(f"{label:50s} median {median:7.1f} img/s  best {args.batch / min(ts):7.1f} img/s  "
              f"x{median / base:.2f}")


if __name__ == "__main__":
    main()
