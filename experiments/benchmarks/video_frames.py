"""Per-frame CNN features of video clips: one batched forward over all B x T frames
(``ImageEncoder.encode_frames``, the TimeDistributed idea) against a forward per clip and a
forward per frame, side by side on the same frames; and the cost of decoding the frames.

    python -m experiments.benchmarks.video_frames [--clips 4] [--frames 8] [--repeats 3] [--device cpu]

The encoder is EfficientNet-Lite0 with its shipped ImageNet weights (nothing is downloaded).
Also checks that the three give the same features.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lrcn.data.video import VideoDataset, collate_videos, write_video
from lrcn.models.encoders import build_encoder


def best_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    encoder = build_encoder("efficientnet_lite0").eval().to(device)
    B, T = args.clips, args.frames

    with tempfile.TemporaryDirectory() as tmp:   # real clips: 60 frames of 320x240 noise each
        rng = np.random.default_rng(0)
        paths = [write_video(Path(tmp) / f"clip{i}.mp4", rng.integers(0, 256, (60, 240, 320, 3), dtype=np.uint8),
                             fps=30) for i in range(B)]
        dataset = VideoDataset(paths, T, encoder.transform)
        decode = best_time(lambda: collate_videos([dataset[i] for i in range(B)]), args.repeats, torch.device("cpu"))
        clips = collate_videos([dataset[i] for i in range(B)]).clips.to(device)   # [B, T, 3, 224, 224]

    with torch.inference_mode():
        batched = encoder.encode_frames(clips)
        per_clip = torch.stack([encoder(clip) for clip in clips])
        per_frame = torch.stack([torch.stack([encoder(f[None])[0] for f in clip]) for clip in clips])
        agree = max((batched - per_clip).abs().max().item(), (batched - per_frame).abs().max().item())
        t_batched = best_time(lambda: encoder.encode_frames(clips), args.repeats, device)
        t_clip = best_time(lambda: [encoder(clip) for clip in clips], args.repeats, device)
        t_frame = best_time(lambda: [encoder(f[None]) for clip in clips for f in clip], args.repeats, device)

    print(f"{B} clips x {T} frames, efficientnet_lite0 at 224 px on {device} "
          f"({torch.get_num_threads()} threads), best of {args.repeats}")
    print(f"  decode + sample + preprocess (mp4, 320x240, 60 frames each): {decode:.3f} s")
    print(f"  one forward over all {B * T} frames:  {t_batched:.3f} s   (1.00x)")
    print(f"  one forward per clip ({B} x {T}):      {t_clip:.3f} s   ({t_clip / t_batched:.2f}x)")
    print(f"  one forward per frame ({B * T} x 1):    {t_frame:.3f} s   ({t_frame / t_batched:.2f}x)")
    print(f"  largest difference between the three: {agree:.2e}")


if __name__ == "__main__":
    main()
