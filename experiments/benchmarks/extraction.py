"""End-to-end feature extraction (JPEG files -> feature store) against the encoder's own forward
throughput on tensors already in memory, measured side by side in one run.

    python -m experiments.benchmarks.extraction [IMAGE_FOLDER] [--n 256] [--batch-size 32] [--workers 2]

Without IMAGE_FOLDER it writes N synthetic 500x375 JPEG photos (Flickr's usual size) to a temp folder.
The goal (issue 5): extraction throughput >= 75% of the forward throughput.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lrcn.data.features import extract
from lrcn.data.media import find_images
from lrcn.models.encoders import build_encoder


def synthetic_photos(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # smooth random fields compress and decode like photos, unlike white noise
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        paths.append(folder / f"photo_{i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--encoder", default="efficientnet_lite0")
    a = parser.parse_args()
    encoder = build_encoder(a.encoder).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = find_images(a.folder)[: a.n] if a.folder else synthetic_photos(tmp, a.n)
        n = len(paths)
        x = torch.randn(a.batch_size, 3, encoder.image_size, encoder.image_size)
        with torch.inference_mode():
            encoder(x)                                            # warm-up
            started = time.perf_counter()
            for _ in range(max(1, n // a.batch_size)):
                encoder(x)
            forward = max(1, n // a.batch_size) * a.batch_size / (time.perf_counter() - started)
        started = time.perf_counter()
        extract(encoder, paths, [p.stem for p in paths], tmp / "store", batch_size=a.batch_size,
                num_workers=a.workers, progress=False)
        end_to_end = n / (time.perf_counter() - started)
    print(f"encoder {encoder.key}, {n} images, batch {a.batch_size}, {a.workers} workers, "
          f"{torch.get_num_threads()} threads")
    print(f"forward on in-memory tensors : {forward:8.1f} images/s")
    print(f"extraction end to end        : {end_to_end:8.1f} images/s")
    print(f"ratio                        : {end_to_end / forward:8.2f}  (goal >= 0.75)")


if __name__ == "__main__":
    main()
