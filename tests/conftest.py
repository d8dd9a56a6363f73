import pytest

from lrcn.data.shapes import generate_shapes


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """A 60-image shapes dataset at 64 px (48 train, 6 val, 6 test)."""
    out = tmp_path_factory.mktemp("shapes")
    return generate_shapes(out, n=60, seed=3, image_size=64)


def tiny_overrides(split_json, runs_dir, **extra) -> list[str]:
    """Config overrides for a seconds-long training run on ``tiny_shapes``."""
    values = {"data.split_json": split_json, "train.runs_dir": runs_dir, "encoder.image_size": 64,
              "encoder.crop": False, "data.num_workers": 0, "decoder.embed_dim": 32, "decoder.hidden_dim": 32,
              "decoder.dropout": 0.0, "train.epochs": 2, "train.batch_size": 8, "train.lr": 0.01, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def pytest_configure(config):
    # The tests' models are tiny: one thread is faster than two fighting over a busy machine.
    import torch
    torch.set_num_threads(1)
