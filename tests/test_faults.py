"""Crash safety by fault injection: `lrcn train`, `lrcn caption` and `lrcn extract` are SIGKILLed at
seeded random points (before the first checkpoint, mid-epoch, in the middle of a checkpoint write,
after a random amount of work) and resumed. After every kill the output folder loads; after resuming, the result is
exactly that of an uninterrupted run. Also numerical faults: a NaN or infinite loss, gradient or
weight stops training with a clear message and the last good checkpoint is kept."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from lrcn.cli import main
from lrcn.config import load_config
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.run import Run
from lrcn.train import loop
from lrcn.train.checkpoint import load_checkpoint

DEMO = str(DEMO_CONFIG)
# the commands run with one thread, as this process does (conftest), so their floats match ours bit for bit
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# where the kills land is drawn from this seed; re-run with others: LRCN_FAULT_SEED=3 pytest tests/test_faults.py
SEED = int(os.environ.get("LRCN_FAULT_SEED", "8"))

# A command whose torch.save writes half of its K-th file and then SIGKILLs its own process: a kill
# in the middle of a checkpoint write at an exactly chosen point, with no hook in lrcn itself.
KILL_MID_SAVE = """
import io, os, signal, sys, torch
from lrcn.cli import main
K, real_save, calls = int(sys.argv[1]), torch.save, []
def save(obj, f, *args, **kwargs):
    calls.append(f)
    if len(calls) == K:
        data = io.BytesIO()
        real_save(obj, data, *args, **kwargs)
        with open(f, "wb") as out:
            out.write(data.getvalue()[: len(data.getvalue()) // 2])
            out.flush()
            os.fsync(out.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.exit(main(sys.argv[2:]))
"""


# ----------------------------------------------------------------------------- running and killing commands

def start(args: list[str], log: Path, mid_save_kill: int | None = None) -> subprocess.Popen:
    """Start ``lrcn -q ARGS`` (or it under KILL_MID_SAVE) in its own process group, output to ``log``."""
    prefix = ["-c", KILL_MID_SAVE, str(mid_save_kill)] if mid_save_kill else ["-m", "lrcn.cli"]
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *prefix, "-q", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=ENV, start_new_session=True)


def sigkill(proc: subprocess.Popen) -> bool:
    """SIGKILL the command, as the OOM killer would, then its DataLoader workers; False if it had ended."""
    alive = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return alive


def wait_for(proc: subprocess.Popen, condition: Callable[[], bool], log: Path, timeout: float = 60,
             interval: float = 0.002) -> bool:
    """Poll ``condition`` until it holds (True) or the command ends without it (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            if proc.returncode not in (0, -signal.SIGKILL):
                pytest.fail(f"the command failed ({proc.returncode}):\n{log.read_text(errors='replace')}")
            return condition()
        time.sleep(interval)
    sigkill(proc)
    pytest.fail(f"timed out waiting for the command:\n{log.read_text(errors='replace')}")


def finish(args: list[str], log: Path) -> None:
    proc = start(args, log)
    assert proc.wait(timeout=120) == 0, log.read_text(errors="replace")


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


# ----------------------------------------------------------------------------- train

def assert_run_loads(run_dir: Path) -> dict:
    """Everything a killed run folder holds loads; returns its last checkpoint's progress ({} if none)."""
    run = Run.open(run_dir)
    run.config()
    if run.vocab_path.exists():
        run.vocab()
    for path in (run.best, run.last):
        if path.exists():
            ckpt = load_checkpoint(path)
            assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    return load_checkpoint(run.last)["progress"] if run.last.exists() else {}


def assert_same_training(a: Path, b: Path) -> None:
    for which in ("last", "best"):
        x, y = Run(a).checkpoint(which), Run(b).checkpoint(which)
        assert x["progress"] == y["progress"]
        assert x["model"].keys() == y["model"].keys()
        assert all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"]), which
        opt_x, opt_y = x["optimizer"]["state"], y["optimizer"]["state"]
        assert opt_x.keys() == opt_y.keys()
        assert all(torch.equal(opt_x[p][k], opt_y[p][k]) for p in opt_x for k in opt_x[p]), which
        assert torch.equal(x["rng"], y["rng"])


def train_overrides(tiny_shapes, runs: Path) -> list[str]:
    # dropout > 0: a resume that did not restore the random state would give other weights
    return tiny_overrides(tiny_shapes, runs, **{"train.epochs": 3, "train.checkpoint_every": 1,
                                                "decoder.dropout": 0.3})


def test_training_killed_anywhere_resumes_to_identical_weights(tiny_shapes, tmp_path):
    rng = random.Random(SEED)
    overrides = train_overrides(tiny_shapes, tmp_path) + ["encoder.batch_size=8"]
    # the uninterrupted run extracts its features here; the killed run into its own, empty store
    assert main(["-q", "train", DEMO, *sets(overrides), "--set", f"data.feature_dir={tmp_path / 'features-a'}",
                 "--set", "name=straight"]) == 0
    run = Run(tmp_path / "killed")
    log = tmp_path / "train.log"
    first = ["train", DEMO, *sets(overrides), "--set", f"data.feature_dir={tmp_path / 'features-b'}",
             "--set", "name=killed"]
    resume = ["train", "--resume", str(run.dir)]
    landed = []

    # 1. early: between the run folder's creation and the first checkpoint (vocabulary, features)
    proc = start(first, log)
    wait_for(proc, run.config_path.exists, log)
    time.sleep(rng.uniform(0, 0.8))
    sigkill(proc)
    landed.append(("early", assert_run_loads(run.dir).get("step")))

    # 2. at a random moment of training
    proc = start(resume, log)
    wait_for(proc, run.last.exists, log)
    before = os.stat(run.last).st_mtime_ns
    wait_for(proc, lambda: os.stat(run.last).st_mtime_ns != before, log)    # training, not starting up
    time.sleep(rng.uniform(0, 0.4))
    sigkill(proc)
    landed.append(("random", assert_run_loads(run.dir).get("step")))

    # 3. in the middle of writing the K-th checkpoint (exactly: half of its bytes are on disk)
    proc = start(resume, log, mid_save_kill=rng.randint(1, 4))
    proc.wait(timeout=120)
    landed.append(("mid-write", assert_run_loads(run.dir).get("step")))
    if proc.returncode == -signal.SIGKILL:
        assert temp_files(run.dir), "the half-written checkpoint is left in its temporary file"
    else:       # the run had fewer than K checkpoints left to write
        assert proc.returncode == 0, log.read_text(errors="replace")

    finish(resume, log)
    steps = [s for _, s in landed if s is not None]
    assert steps == sorted(steps), f"every resume goes on from the last checkpoint: {landed}"
    assert_same_training(tmp_path / "straight", run.dir)
    print("kills landed at (point, last checkpoint's step):", landed)


def test_a_run_killed_before_its_vocabulary_was_written_resumes_from_scratch(tiny_shapes, tmp_path):
    overrides = train_overrides(tiny_shapes, tmp_path) + ["train.epochs=2"]
    assert main(["-q", "train", DEMO, *sets(overrides), "--set", "name=straight"]) == 0
    run = Run.create(load_config(DEMO, overrides + ["name=early"]))         # config.yaml only, as a kill leaves it
    assert not run.vocab_path.exists() and not run.last.exists()
    assert main(["-q", "train", "--resume", str(run.dir)]) == 0
    assert_same_training(tmp_path / "straight", run.dir)


class Stop(Exception):
    """Raised by a patched loss: training dies there (in this process, for speed)."""


def patched_loss(monkeypatch, fault: Callable[[int, torch.Tensor, torch.nn.Module], torch.Tensor]) -> None:
    """Make training's loss ``fault(call number, total, decoder)`` instead of ``total``."""
    real, calls = loop.build_loss, []

    def build(*args):
        inner = real(*args)

        def loss(decoder, *rest):
            total, count, logs = inner(decoder, *rest)
            calls.append(1)
            return fault(len(calls), total, decoder), count, logs
        return loss
    monkeypatch.setattr(loop, "build_loss", build)


def test_fine_tuning_resumes_to_identical_weights(tiny_shapes, tmp_path, monkeypatch):
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{
        "train.epochs": 1, "train.checkpoint_every": 2, "decoder.dropout": 0.3, "encoder.trainable_blocks": 1,
        "encoder.lr": 1e-3, "train.val_max_images": 2})
    straight = loop.train(load_config(DEMO, overrides + ["name=straight"]), progress=False)

    def die(n, total, decoder):
        if n == 4:
            raise Stop
        return total
    patched_loss(monkeypatch, die)
    with pytest.raises(Stop):
        loop.train(load_config(DEMO, overrides + ["name=resumed"]), progress=False)
    monkeypatch.undo()
    assert Run(tmp_path / "resumed").checkpoint("last")["progress"]["step"] == 2
    loop.train(None, resume=tmp_path / "resumed", progress=False)
    a, b = Run(straight).checkpoint("last"), Run(tmp_path / "resumed").checkpoint("last")
    for part in ("model", "encoder"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


# ----------------------------------------------------------------------------- numerical faults

NAN_GRADIENT = "nan gradient"


@pytest.mark.parametrize("bad", [math.nan, math.inf, NAN_GRADIENT])
def test_a_non_finite_loss_or_gradient_stops_training_and_keeps_the_last_good_checkpoint(
        bad, tiny_shapes, tmp_path, monkeypatch, capsys):
    def fault(n, total, decoder):
        if n < 5:
            return total
        if bad == NAN_GRADIENT:          # a finite loss whose gradient is NaN (d sqrt(x)/dx at 0, times 0)
            w = next(decoder.parameters())
            return total + (w.sum() * 0).sqrt()
        return total * bad
    patched_loss(monkeypatch, fault)
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{"train.checkpoint_every": 1, "name": "nan"})
    assert main(["-q", "train", DEMO, *sets(overrides)]) == 2
    err = capsys.readouterr().err.strip()
    what = "the gradient norm became nan" if bad == NAN_GRADIENT else f"the loss became {bad}"
    last = tmp_path / "nan" / "checkpoints" / "last.pt"
    assert err == (f"lrcn train: error: {what} in training step 5; training stopped and {last} keeps the last "
                   f"good weights. Lower train.lr or set train.grad_clip")
    ckpt = load_checkpoint(last)
    assert ckpt["progress"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_weights_that_become_infinite_are_never_saved(tiny_shapes, tmp_path, monkeypatch, capsys):
    real, steps = torch.optim.Adam.step, []

    def step(self, *args, **kwargs):                 # the 5th update overflows one weight to infinity
        out = real(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 5:
            with torch.no_grad():
                self.param_groups[0]["params"][0][0, 0] = math.inf
        return out
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{"train.checkpoint_every": 1, "name": "inf"})
    assert main(["-q", "train", DEMO, *sets(overrides)]) == 2
    last = tmp_path / "inf" / "checkpoints" / "last.pt"
    assert capsys.readouterr().err == (f"lrcn train: error: the weights became NaN or infinite in training step 5; "
                                       f"training stopped and {last} keeps the last good weights. Lower train.lr "
                                       f"or set train.grad_clip\n")
    ckpt = load_checkpoint(last)
    assert ckpt["progress"]["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize("value", ["-1", ".nan", ".inf"])
def test_a_learning_rate_that_cannot_train_is_refused(value, tiny_shapes, tmp_path, capsys):
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{"train.lr": value})
    assert main(["-q", "train", DEMO, *sets(overrides)]) == 2
    assert capsys.readouterr().err.startswith("lrcn train: error: invalid config: train.lr must be in (0, 1] (got ")


def test_a_learning_rate_too_large_for_adam_is_refused(tiny_shapes, tmp_path, capsys):
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{"train.lr": "1.0e+38"})
    assert main(["-q", "train", DEMO, *sets(overrides)]) == 2
    assert capsys.readouterr().err.startswith("lrcn train: error: invalid config: train.lr must be in (0, 1] "
                                              "(got 1e+38)")


def test_gradient_norms_are_logged(tiny_shapes, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    real, expected = torch.nn.utils.clip_grad_norm_, []

    def clip(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        expected.append(math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in parameters if p.grad is not None)))
        return real(parameters, max_norm, *args, **kwargs)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    overrides = tiny_overrides(tiny_shapes, tmp_path, **{"train.log_every": 1, "train.grad_clip": 0.1,
                                                         "name": "norms"})
    assert main(["-q", "train", DEMO, *sets(overrides)]) == 0
    events = EventAccumulator(str(tmp_path / "norms" / "tb")).Reload()
    logged = events.Scalars("train/grad_norm")
    assert [e.step for e in logged] == list(range(1, len(expected) + 1)) and len(expected) == 12
    assert [e.value for e in logged] == pytest.approx(expected, rel=1e-5)
    assert min(expected) > 0.1       # the norm before clipping is what is logged


# ----------------------------------------------------------------------------- caption

@pytest.fixture(scope="module")
def caption_run(tiny_shapes, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main(["-q", "train", DEMO, *sets(tiny_overrides(tiny_shapes, runs, **{"train.epochs": 1,
                                                                                 "name": "cap"}))]) == 0
    return runs / "cap"


def photo_folder(tiny_shapes, folder: Path) -> tuple[list[str], list[str]]:
    """The shapes images and four unreadable files in ``folder``: (good paths, bad paths)."""
    (folder / "sub").mkdir(parents=True)
    good = []
    for i, src in enumerate(sorted((Path(tiny_shapes).parent / "images").glob("*.png"))):
        good.append(folder / ("sub" if i % 3 == 0 else "") / src.name)
        shutil.copy(src, good[-1])
    png = good[0].read_bytes()
    bad = {"0-text.jpg": b"not an image", "1-empty.png": b"", "2-cut.png": png[: len(png) // 2],
           "sub/3-wrong.png": b"GIF89a" + png[6:]}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return sorted(map(str, good)), sorted(str(folder / n) for n in bad)


def test_caption_killed_and_rerun_captions_every_image_exactly_once(caption_run, tiny_shapes, tmp_path,
                                                                    monkeypatch):
    import lrcn.commands.caption
    import lrcn.data.features

    good, bad = photo_folder(tiny_shapes, tmp_path / "photos")
    args = ["caption", str(caption_run), str(tmp_path / "photos"), "--batch-size", "2", "--beam", "2"]
    assert main(["-q", *args, "--out", str(tmp_path / "straight")]) == 0
    straight = json.loads((tmp_path / "straight" / "captions.json").read_text())
    assert sorted(straight["captions"]) == good and sorted(straight["skipped"]) == bad

    out, log = tmp_path / "killed", tmp_path / "caption.log"
    target = random.Random(SEED).randint(4, 56)       # kill once this many files are done (+ a write or two)

    def progressed() -> bool:
        with contextlib.suppress(FileNotFoundError):
            done = json.loads((out / "captions.json").read_text())
            return len(done["captions"]) + len(done["skipped"]) >= target
        return False
    proc = start([*args, "--out", str(out)], log)
    wait_for(proc, progressed, log, interval=0.005)
    sigkill(proc)
    partial = json.loads((out / "captions.json").read_text())       # a complete JSON file, never half of one
    done = set(partial["captions"]) | set(partial["skipped"])
    assert all(same_entry(partial["captions"][p], straight["captions"][p]) for p in partial["captions"])

    # the re-run reads exactly the images not yet captioned or skipped, and nothing else
    read, decoded = [], []
    real_dataset, real_caption = lrcn.data.features.ImageFolderDataset, lrcn.commands.caption.caption_features
    monkeypatch.setattr(lrcn.data.features, "ImageFolderDataset",      # captioning reads as the feature store does
                        lambda paths, *a, **k: read.extend(map(str, paths)) or real_dataset(paths, *a, **k))
    monkeypatch.setattr(lrcn.commands.caption, "caption_features",
                        lambda decoder, features, *a, **k: decoded.append(len(features)) or
                        real_caption(decoder, features, *a, **k))
    assert main(["-q", *args, "--out", str(out)]) == 0
    assert sorted(read) == sorted(set(good + bad) - done)
    assert sum(decoded) == len(set(good) - done)
    final = json.loads((out / "captions.json").read_text())
    assert final["captions"].keys() == straight["captions"].keys() and final["skipped"] == straight["skipped"]
    assert all(same_entry(final["captions"][p], straight["captions"][p]) for p in final["captions"])
    print(f"caption killed after {len(done)} of {len(good) + len(bad)} files")


def same_entry(a: dict, b: dict) -> bool:
    """Two captions.json entries alike: the same captions, their scores equal up to float rounding
    (a re-run batches the images left otherwise, and the CPU's kernels round by batch shape)."""
    def scores(entry):
        return [x for h in entry["nbest"] for x in (h["score"], h["log_prob"])]

    def rest(entry):
        return {**entry, "nbest": [h["caption"] for h in entry["nbest"]]}
    return rest(a) == rest(b) and all(math.isclose(x, y, rel_tol=1e-5) for x, y in zip(scores(a), scores(b)))


# ----------------------------------------------------------------------------- extract

def store_state(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """Every feature store under ``folder``: name -> (features, done, failed); all must load."""
    stores = {}
    for meta in folder.glob("*/meta.json"):
        d = meta.parent
        ids = json.loads(meta.read_text())["ids"]
        done = np.zeros(len(ids), dtype=bool)
        for path in d.glob("done*.npy"):
            done |= np.load(path)
        failed = {}
        for path in d.glob("failed*.json"):
            failed.update(json.loads(path.read_text()))
        stores[d.name] = (np.array(np.load(d / "features.npy", mmap_mode="r")), done, failed)
    return stores


def test_extract_killed_and_rerun_fills_the_store_exactly_once(tiny_shapes, tmp_path, monkeypatch):
    from lrcn.data import features

    data = tmp_path / "data"
    shutil.copytree(Path(tiny_shapes).parent, data, ignore=shutil.ignore_patterns("features"))
    spoiled = sorted((data / "images").glob("*.png"))[5]
    spoiled.write_bytes(spoiled.read_bytes()[:100])                     # a truncated image: failed, not fatal
    n_images = len(json.loads((data / "dataset_shapes.json").read_text())["images"])

    def args(store: Path) -> list[str]:
        return ["extract", DEMO, *sets([f"data.split_json={data / 'dataset_shapes.json'}", "encoder.image_size=64",
                                        "encoder.crop=False", "encoder.batch_size=4", "data.num_workers=0",
                                        f"data.feature_dir={store}"])]
    assert main(["-q", *args(tmp_path / "straight")]) == 0
    straight = store_state(tmp_path / "straight")
    assert len(straight) == 3 and sum(len(f) for _, _, f in straight.values()) == 1

    killed, log = tmp_path / "killed", tmp_path / "extract.log"
    target = random.Random(SEED).randint(4, 52)       # kill once this many images are done (+ a batch or two)

    def progressed() -> bool:
        try:
            return sum(int(np.load(p).sum()) for p in killed.glob("*/done*.npy")) >= target
        except (OSError, ValueError):   # a store being created
            return False
    proc = start(args(killed), log)
    wait_for(proc, progressed, log, interval=0.005)
    sigkill(proc)
    partial = store_state(killed)
    for name, (values, done, failed) in partial.items():          # no row is marked done before it is written
        assert np.array_equal(values[done], straight[name][0][done]) and failed.items() <= straight[name][2].items()
    n_done = sum(int(done.sum()) for _, done, _ in partial.values())

    written = []
    real_write = features.FeatureStore.write

    def write(self, rows, values, failed=None, notes=None):
        written.append(len(rows) + len(failed or {}))
        return real_write(self, rows, values, failed, notes)
    monkeypatch.setattr(features.FeatureStore, "write", write)
    assert main(["-q", *args(killed)]) == 0
    assert sum(written) == n_images - n_done                           # each image read once over both runs
    final = store_state(killed)
    assert final.keys() == straight.keys()
    for name, (values, done, failed) in final.items():
        assert done.all() and failed == straight[name][2] and np.array_equal(values, straight[name][0])
    print(f"extract killed after {n_done} of {n_images} images")
