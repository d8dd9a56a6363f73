"""`lrcn demo`: shapes data -> training -> blind / greedy / beam-3 scores on the test split, offline."""

from __future__ import annotations

import dataclasses
import shutil
import time
from importlib import resources
from pathlib import Path

from lrcn.baselines import consensus_caption
from lrcn.config import Config, load_config
from lrcn.data.loaders import load_samples, split
from lrcn.data.shapes import generate_shapes
from lrcn.evaluate import evaluate
from lrcn.io import write_json
from lrcn.metrics import format_table, score
from lrcn.train.loop import train

DEMO_CONFIG = resources.files("lrcn") / "configs" / "demo.yaml"


def run_demo(out: str | Path = "demo", n: int = 2000, seed: int = 0, overrides: list[str] | None = None,
             json_out: str | Path | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
    started = time.perf_counter()
    out = Path(out)
    data_dir = out / "shapes"
    split_json = data_dir / "dataset_shapes.json"
    if not split_json.exists():
        print(f"rendering {n} shapes images into {data_dir} ...")
        generate_shapes(data_dir, n=n, seed=seed)
    config = load_config(DEMO_CONFIG, [f"data.split_json={split_json}", f"train.runs_dir={out / 'runs'}",
                                       *(overrides or [])])
    run_dir = Path(config.train.runs_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)      # the demo always trains afresh
    print(f"training {config.decoder.kind} for {config.train.epochs} epochs into {run_dir} ...")
    train(config, progress=progress)

    rows = score_blind_greedy_beam(config, run_dir, progress)
    print(f"({time.perf_counter() - started:.0f} s in all; run folder {run_dir})")
    if json_out:
        write_json(json_out, rows)
    return rows


def score_blind_greedy_beam(config: Config, run_dir: Path, progress: bool = True) -> dict[str, dict[str, float]]:
    """Test-split corpus scores of the blind baseline (the most consensual training caption, for
    every input), of greedy decoding and of beam 3 with the trained run; prints a few captions, the
    table and the CIDEr-D ratio of beam 3 to blind. Shared by ``lrcn demo`` and ``lrcn demo --video``."""
    samples = load_samples(config)
    test = split(samples, "test")
    blind = consensus_caption({s.id: s.captions for s in split(samples, "train")})
    rows = {"blind": score({s.id: blind for s in test}, {s.id: s.captions for s in test}).corpus}
    beam3 = dataclasses.replace(config.decode, strategy="beam", beam_size=3)
    for name, decode in (("greedy", config.decode.greedy()), ("beam3", beam3)):
        scores, captions = evaluate(run_dir, "test", decode, progress=progress)
        rows[name] = scores.corpus
    print(f'\nblind baseline caption: "{blind}"')
    for s in [s for s in test if s.id in captions][:5]:      # unreadable inputs have no caption
        print(f"  {s.path.name}: {captions[s.id]!r}   (a reference: {s.captions[0]!r})")
    print()
    print(format_table(rows))
    ratio = rows["beam3"]["CIDEr"] / max(rows["blind"]["CIDEr"], 1e-9)
    print(f"\nCIDEr-D beam3 / blind = {ratio:.1f}x")
    return rows
