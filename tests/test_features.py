"""The feature store: extraction equals the encoder's forward, resumes, reports bad images, and
two processes under torch.distributed share the work into one store."""

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lrcn.data.features import FeatureSpec, FeatureStore, extract
from lrcn.data.media import load_image
from lrcn.data.records import read_karpathy
from lrcn.models.encoders import build_encoder
from lrcn.train import distributed


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("efficientnet_lite0", image_size=64, crop=False)


@pytest.fixture
def images(tiny_shapes, tmp_path):
    samples = read_karpathy(tiny_shapes)[:10]
    paths = [s.path for s in samples]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths.insert(3, tmp_path / "broken.png")
    return paths, [p.stem for p in paths]


def test_extract_equals_forward_and_reports_bad_images(encoder, images, tmp_path):
    paths, ids = images
    store = extract(encoder, paths, ids, tmp_path / "store", FeatureSpec(batch_size=4, num_workers=0), progress=False)
    assert store.complete and list(store.failed) == ["broken"] and "broken.png" in store.failed["broken"]
    good = [i for i in range(len(paths)) if ids[i] != "broken"]
    with torch.inference_mode():
        expected = encoder(torch.stack([encoder.transform(load_image(paths[i])) for i in good]))
    torch.testing.assert_close(store.tensor([ids[i] for i in good]), expected, atol=1e-5, rtol=1e-5)
    # reopening finds everything done; the files are plain numpy
    again = FeatureStore(tmp_path / "store", ids, (encoder.out_dim,), encoder.key)
    assert again.missing() == [] and np.load(tmp_path / "store" / "features.npy").shape == (11, 1280)


class Killed(Exception):
    pass


def test_an_interrupted_extraction_resumes_without_redoing_rows(encoder, images, tmp_path, monkeypatch):
    paths, ids = images
    calls, armed = [], [True]
    real_write = FeatureStore.write

    def dying_write(self, rows, values, failed=None, notes=None):
        calls.append(list(rows))
        if armed[0] and len(calls) == 2:
            raise Killed
        real_write(self, rows, values, failed, notes)

    monkeypatch.setattr(FeatureStore, "write", dying_write)
    with pytest.raises(Killed):
        extract(encoder, paths, ids, tmp_path / "store", FeatureSpec(batch_size=4, num_workers=0), progress=False)
    done_before = FeatureStore(tmp_path / "store", ids, (1280,), encoder.key).done.copy()
    assert done_before.sum() == 4                       # the first batch only
    calls.clear()
    armed[0] = False
    store = extract(encoder, paths, ids, tmp_path / "store", FeatureSpec(batch_size=4, num_workers=0), progress=False)
    assert store.complete and not set(sum(calls, [])) & set(np.flatnonzero(done_before).tolist())


def test_another_encoder_or_sample_set_is_refused(encoder, images, tmp_path):
    paths, ids = images
    extract(encoder, paths[:2], ids[:2], tmp_path / "store", FeatureSpec(num_workers=0), progress=False)
    with pytest.raises(Exception, match="made for other samples or another encoder"):
        FeatureStore(tmp_path / "store", ids[:2], (1280,), "resnet50-224")


def _worker(rank, world, port, paths, ids, directory):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    group = distributed.setup(torch.device("cpu"))
    try:
        enc = build_encoder("efficientnet_lite0", image_size=64, crop=False)
        store = extract(enc, paths, ids, directory, FeatureSpec(batch_size=2, num_workers=0), progress=False, dist=group)
        with open(f"{directory}/rows{rank}.json", "w") as f:
            json.dump(int((~np.isin(np.arange(len(ids)), store.missing())).sum()), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_fill_one_store(encoder, images, tmp_path):
    paths, ids = images
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, paths, ids, str(tmp_path / "store")), nprocs=2, join=True)
    assert sorted(p.name for p in (tmp_path / "store").glob("done*.npy")) == ["done.rank0.npy", "done.rank1.npy"]
    store = FeatureStore(tmp_path / "store", ids, (1280,), encoder.key)
    assert store.complete and list(store.failed) == ["broken"]
    single = extract(encoder, paths, ids, tmp_path / "single", FeatureSpec(num_workers=0), progress=False)
    torch.testing.assert_close(store.tensor(), single.tensor(), atol=1e-5, rtol=1e-5)


def test_grid_features_are_the_spatial_grid_in_their_own_store(encoder, images, tmp_path):
    """encoder.features=grid: rows [D, h, w] equal forward_grid, in a store whose key says grid (pooled ones are refused)."""
    paths, ids = images
    gridded = build_encoder("efficientnet_lite0", image_size=64, crop=False, features="grid")
    store = extract(gridded, paths, ids, tmp_path / "store", FeatureSpec(batch_size=4, num_workers=0), progress=False)
    good = [i for i in range(len(paths)) if ids[i] != "broken"]
    with torch.inference_mode():
        expected = encoder.forward_grid(torch.stack([encoder.transform(load_image(paths[i])) for i in good]))
    assert expected.shape[1:] == (1280, 2, 2) and json.loads((tmp_path / "store" / "meta.json").read_text())[
        "encoder"] == f"{encoder.key}-grid"
    torch.testing.assert_close(store.tensor([ids[i] for i in good]), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="made for other samples or another encoder"):
        extract(encoder, paths, ids, tmp_path / "store", FeatureSpec(num_workers=0), progress=False)


def _lrcn_imports(path) -> set[str]:
    """Every ``lrcn.*`` module a file imports, at the top or inside a function."""
    import ast
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lrcn"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("lrcn")}
    return out


def test_the_data_layer_imports_no_models_and_no_circle():
    """Whether a run is video is data.modality, not a decoder registry: lrcn.data imports only
    lrcn.config, errors, io, text and itself, and its modules import each other in one direction."""
    from pathlib import Path

    import lrcn.data
    folder = Path(lrcn.data.__file__).parent
    graph = {f"lrcn.data.{p.stem}": _lrcn_imports(p) for p in folder.glob("*.py")}
    outside = {m for targets in graph.values() for m in targets if not m.startswith("lrcn.data")}
    assert outside <= {"lrcn.config", "lrcn.errors", "lrcn.io", "lrcn.text"}, outside

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(t == goal or (t not in seen and reaches(t, goal, seen | {t})) for t in graph.get(start, ()))
    assert [m for m in graph if reaches(m, m, set())] == []
