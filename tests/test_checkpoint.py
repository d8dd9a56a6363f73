import os

import pytest
import torch

from lrcn.errors import CheckpointError
from lrcn.train.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    payload = {"model": {"w": torch.arange(6.0).view(2, 3)}, "progress": {"epoch": 3, "best": 1.5},
               "vocab": ["<pad>", "a"], "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "c" / "last.pt", payload)
    data = load_checkpoint(tmp_path / "c" / "last.pt")
    assert torch.equal(data["model"]["w"], payload["model"]["w"]) and data["progress"] == payload["progress"]
    assert os.listdir(tmp_path / "c") == ["last.pt"]            # no temporary file left behind


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path, capsys):
    torch.save({"format": "lrcn-checkpoint-1", "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out


def test_foreign_truncated_and_missing_checkpoints(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="incompatible lrcn version"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "ok.pt", {"x": torch.zeros(1000)})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


def test_failed_write_keeps_the_previous_file(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"epoch": torch.tensor(1)})
    with pytest.raises(TypeError, match="pickle"):
        save_checkpoint(tmp_path / "last.pt", {"bad": (x for x in [])})
    assert int(load_checkpoint(tmp_path / "last.pt")["epoch"]) == 1
    assert os.listdir(tmp_path) == ["last.pt"]
