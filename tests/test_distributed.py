"""Two CPU processes under torch.distributed (gloo) train exactly like one process with the same global batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import tiny_overrides
from lrcn.config import load_config
from lrcn.commands.demo import DEMO_CONFIG
from lrcn.train import loop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_recording(overrides: list[str], out: str, rank: int = 0) -> None:
    """Train, saving this process's per-step loss terms and its decoder weights after each epoch."""
    torch.set_num_threads(1)
    record = {"totals": [], "counts": [], "weights": []}
    real_build, real_validate = loop.build_loss, loop.validate

    def build_loss(*args):
        inner = real_build(*args)

        def loss(*a):
            total, count, logs = inner(*a)
            record["totals"].append(total.item())
            record["counts"].append(int(count))
            return total, count, logs
        return loss

    def validate(config, encoder, decoder, *args):
        record["weights"].append({k: v.clone() for k, v in decoder.state_dict().items()})
        return real_validate(config, encoder, decoder, *args)

    loop.build_loss, loop.validate = build_loss, validate
    try:
        loop.train(load_config(DEMO_CONFIG, overrides), progress=False)
    finally:
        loop.build_loss, loop.validate = real_build, real_validate
    torch.save(record, f"{out}/rank{rank}.pt")


def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    try:
        _train_recording(overrides, out, rank)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one_with_the_same_global_batch(tiny_shapes, tmp_path):
    common = tiny_overrides(tiny_shapes, tmp_path, **{"train.epochs": 2, "train.batch_size": 12})
    _train_recording(common + ["name=single"], str(tmp_path), rank=0)
    single = torch.load(tmp_path / "rank0.pt")
    (tmp_path / "rank0.pt").rename(tmp_path / "single.pt")

    mp.spawn(_worker, args=(2, _free_port(), common + ["name=ddp"], str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")

    # each rank saw half of every global batch, and together exactly the single process's tokens
    assert len(r0["counts"]) == len(single["counts"]) == 8
    assert [a + b for a, b in zip(r0["counts"], r1["counts"])] == single["counts"]
    assert all(0 < a < c for a, c in zip(r0["counts"], single["counts"]))
    # the global loss of every step matches the single process's
    ddp_loss = [(a + b) / (c + d) for a, b, c, d in zip(r0["totals"], r1["totals"], r0["counts"], r1["counts"])]
    single_loss = [a / c for a, c in zip(single["totals"], single["counts"])]
    assert ddp_loss == pytest.approx(single_loss, rel=1e-4)
    # parameters are identical across ranks after every epoch, and match the single process's
    for w0, w1, ws in zip(r0["weights"], r1["weights"], single["weights"]):
        for k in w0:
            assert torch.equal(w0[k], w1[k]), k
            torch.testing.assert_close(w0[k], ws[k], atol=2e-5, rtol=1e-4)
    # only rank 0 wrote the run folder, which holds the final weights of both ranks
    final = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], r0["weights"][-1][k]) for k in final)
