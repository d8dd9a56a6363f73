"""The video path through the command line, end to end on a tiny shapes-video set: render clips,
train and evaluate a video captioner, caption a folder of clips salted with broken input,
LRCN activity recognition, and `lrcn demo --video`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrcn.commands.caption import caption_paths
from lrcn.cli import main
from lrcn.data.records import read_karpathy
from lrcn.data.video import list_frames
from lrcn.models.encoders import build_encoder
from lrcn.run import Run
from lrcn.commands.demo import ACTIVITY_DEMO_CONFIG, VIDEO_DEMO_CONFIG

FRAMES = 5          # frames sampled per clip; the tiny clips have 4 to 6


@pytest.fixture
def no_java(monkeypatch):
    """METEOR (a Java process per call) skipped: these tests are about the video path, not scoring."""
    monkeypatch.setattr("lrcn.metrics.scoring.java_available", lambda: False)


def overrides(**extra) -> list[str]:
    """--set arguments for a seconds-long run on the tiny clips (48 px frames, 3x3 attention map)."""
    values = {"data.num_frames": FRAMES, "data.num_workers": 0, "encoder.image_size": 48, "encoder.attention_map": 3,
              "decoder.embed_dim": 32, "decoder.hidden_dim": 32, "decoder.dropout": 0.0, "train.epochs": 2,
              "train.batch_size": 8, "train.lr": 0.01, **extra}
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """30 clips of 4-6 frames at 48 px (24 train, 3 val, 3 test), rendered by the CLI."""
    out = tmp_path_factory.mktemp("shapes_video")
    assert main(["-q", "data", "shapes-video", "--out", str(out), "--n", "30", "--seed", "1", "--image-size", "48",
                 "--min-frames", "4", "--max-frames", "6"]) == 0
    return out / "dataset_shapes_video.json"


@pytest.fixture(scope="module")
def video_run(clips, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    args = overrides(**{"data.split_json": clips, "train.runs_dir": runs, "name": "tiny-video"})
    assert main(["-q", "train", str(VIDEO_DEMO_CONFIG), *args]) == 0
    return runs / "tiny-video"


def test_data_shapes_video_command_writes_labelled_clips(clips):
    samples = read_karpathy(clips)
    assert len(samples) == 30 and sorted({s.split for s in samples}) == ["test", "train", "val"]
    for s in samples:
        frames = list_frames(s.path)
        assert 4 <= len(frames) <= 6 and len(frames) == s.meta["num_frames"]
        assert Image.open(frames[0]).size == (48, 48) and len(s.captions) == 5 and s.meta["label"]


def test_attention_map_features_are_pooled_features_then_a_scaled_map():
    encoder = build_encoder("efficientnet_lite0", image_size=48, crop=False, attention_map=3)
    assert encoder.out_dim == 1280 + 9 and encoder.key == "efficientnet_lite0-48-nocrop-att3"
    images = torch.rand(2, 3, 48, 48)
    with torch.inference_mode():
        features = encoder(images)
        x, grids = images, []
        for block in encoder.body:
            x = block(x)
            grids.append(x)
    fine = [g for g in grids if min(g.shape[-2:]) >= 3][-1]                # the 3x3 grid (stride 16)
    assert fine.shape[-2:] == (3, 3)
    what = grids[-1].mean((2, 3))
    where = fine.pow(2).mean(1).flatten(1)
    where = where / where.norm(dim=1, keepdim=True) * what.norm(dim=1, keepdim=True)
    torch.testing.assert_close(features, torch.cat([what, where], 1), rtol=1e-4, atol=1e-4)
    plain = build_encoder("efficientnet_lite0", image_size=48, crop=False)
    torch.testing.assert_close(features[:, :1280], plain(images), rtol=1e-4, atol=1e-4)


def test_train_on_clips_writes_a_run_with_frame_features(video_run, clips):
    run = Run.open(video_run)
    assert run.config().decoder.kind == "s2vt" and run.checkpoint("last")["progress"]["epoch"] == 2
    assert run.best.exists() and list(run.tb.glob("events.out.tfevents.*"))
    stores = {p.name.rsplit("-", 2)[0]: json.loads((p / "meta.json").read_text())
              for p in (clips.parent / "features").iterdir()}
    assert set(stores) == {"efficientnet_lite0-48-nocrop-att3-frames5-uniform"}
    assert {tuple(m["shape"]) for m in stores.values()} == {(FRAMES, 1289)}


def test_extract_on_a_video_config_fills_the_stores_that_train_reads(clips, tmp_path, monkeypatch, capsys):
    """`lrcn extract` on a video config: one frame-feature store per split, [T, D] rows of the readable
    clips; `lrcn train` then reads them and extracts nothing; `--grid` stores [T, D, h, w]."""
    from lrcn.data import features
    store_root = tmp_path / "features"
    args = overrides(**{"data.split_json": clips, "data.feature_dir": store_root, "train.runs_dir": tmp_path,
                        "name": "reuse", "train.epochs": 1})
    assert main(["-q", "extract", str(VIDEO_DEMO_CONFIG), *args]) == 0
    printed = dict(line.split(": ") for line in capsys.readouterr().out.splitlines()
                   if line.split(": ")[0] in ("train", "val", "test"))     # besides the notes of short clips
    samples = read_karpathy(clips)
    assert sorted(printed) == ["test", "train", "val"]
    for split, folder in printed.items():
        meta = json.loads((Path(folder) / "meta.json").read_text())
        assert Path(folder).parent == store_root and Path(folder).name.startswith(
            "efficientnet_lite0-48-nocrop-att3-frames5-uniform-")
        assert meta["ids"] == [s.id for s in samples if s.split == split] and meta["shape"] == [FRAMES, 1289]
        assert np.load(Path(folder) / "done.npy").all()
        assert np.abs(np.load(Path(folder) / "features.npy")).sum(axis=(1, 2)).min() > 0     # every row written

    def no_extraction(*a, **k):
        raise AssertionError("train extracted features that lrcn extract had stored")
    monkeypatch.setattr(features.FeatureStore, "write", no_extraction)
    assert main(["-q", "train", str(VIDEO_DEMO_CONFIG), *args]) == 0
    assert Run.open(tmp_path / "reuse").best.exists()
    assert sorted(p.name for p in store_root.iterdir()) == sorted(Path(f).name for f in printed.values())
    monkeypatch.undo()

    # a grid keeps every position, so the pooled features' attention map is switched off for it
    assert main(["-q", "extract", str(VIDEO_DEMO_CONFIG), *args, "--set", "encoder.attention_map=0",
                 "--set", "decoder.frame_deltas=off", "--grid",
                 "--split", "test"]) == 0
    grid = Path(capsys.readouterr().out.splitlines()[-1].removeprefix("test: "))
    assert grid.name.startswith("efficientnet_lite0-48-nocrop-grid-frames5-uniform-")
    assert json.loads((grid / "meta.json").read_text())["shape"] == [FRAMES, 1280, 2, 2]


@pytest.mark.parametrize("command", ["train", "extract"])
def test_fine_tuning_a_video_run_is_refused_before_any_feature(clips, tmp_path, capsys, command):
    args = overrides(**{"data.split_json": clips, "data.feature_dir": tmp_path / "features",
                        "train.runs_dir": tmp_path, "encoder.trainable_blocks": 1})
    assert main(["-q", command, str(VIDEO_DEMO_CONFIG), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "encoder.trainable_blocks=1" in err and "data.modality: video" in err
    assert not (tmp_path / "features").exists()


@pytest.mark.parametrize("change, named", [({"data.modality": "image"}, "decoder.kind='s2vt' captions videos"),
                                           ({"decoder.kind": "show_and_tell"}, "captions images")])
def test_modality_and_decoder_kind_must_agree(clips, tmp_path, capsys, change, named):
    args = overrides(**{"data.split_json": clips, "data.feature_dir": tmp_path / "features", **change})
    assert main(["-q", "extract", str(VIDEO_DEMO_CONFIG), *args]) == 2
    err = capsys.readouterr().err
    assert named in err and "data.modality" in err and not (tmp_path / "features").exists()


def test_evaluate_a_video_run(video_run, tmp_path, capsys, no_java):
    out = tmp_path / "scores.json"
    assert main(["-q", "evaluate", str(video_run), "--beam", "2", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert {"Bleu_4", "ROUGE_L", "CIDEr"} <= set(scores) and "CIDEr" in capsys.readouterr().out
    assert all(0 <= v <= 10 for v in scores.values())
    results = json.loads((video_run / "results_test_beam2.json").read_text())
    test_ids = {s.id for s in read_karpathy(Run.open(video_run).config().data.split_json) if s.split == "test"}
    assert {r["image_id"] for r in results} == test_ids and all(r["caption"] for r in results)


def test_caption_a_folder_of_clips_salted_with_broken_input(video_run, clips, tmp_path, capsys):
    samples = read_karpathy(clips)
    folder = tmp_path / "videos"
    folder.mkdir()
    whole, gappy = [s for s in samples if s.meta["num_frames"] == 6][:2]
    short = next(s for s in samples if s.meta["num_frames"] == 4)
    shutil.copytree(whole.path, folder / "whole")
    shutil.copytree(gappy.path, folder / "gappy")
    (folder / "gappy" / "frame_003.png").unlink()      # 5 of 6 frames sample 0 1 3 4 5: frame 3 goes missing
    shutil.copytree(short.path, folder / "short")                   # 4 frames, 5 asked
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (folder / "empty.avi").write_bytes(b"")
    (folder / "notes.txt").write_text("not a clip")                # neither a video nor a frame folder
    out = tmp_path / "out"
    assert main(["-q", "caption", str(video_run), str(folder), "--out", str(out), "--beam", "2", "--n-best", "2"]) == 0
    result = json.loads((out / "captions.json").read_text())
    assert set(result["captions"]) == {str(folder / n) for n in ("whole", "gappy", "short")}
    assert set(result["skipped"]) == {str(folder / "broken.mp4"), str(folder / "empty.avi")}
    assert "empty (0 bytes)" in result["skipped"][str(folder / "empty.avi")]
    notes = {name: result["captions"][str(folder / name)]["notes"] for name in ("whole", "gappy", "short")}
    assert notes["whole"] == "" and "replaced by the nearest readable frame (3->2)" in notes["gappy"]
    assert "has 4 frames, fewer than the 5 asked; its last frame fills the other 1" in notes["short"]
    for entry in result["captions"].values():
        assert entry["caption"] == entry["nbest"][0]["caption"] and len(entry["nbest"]) == 2
        strip = Image.open(out / entry["strip"])
        assert strip.height == 72 and strip.width == FRAMES * 72 + 2 * (FRAMES - 1)
    page = (out / "index.html").read_text()
    assert page.count("<figure>") == 3 and "Skipped (2)" in page and "broken.mp4" in page
    before = (out / "captions.json").read_text()
    assert main(["-q", "caption", str(video_run), str(folder), "--out", str(out), "--beam", "2", "--n-best", "2"]) == 0
    assert (out / "captions.json").read_text() == before


def test_caption_reads_video_files(video_run, clips, tmp_path):
    pytest.importorskip("av")
    from lrcn.data.video import read_frames, write_video
    sample = read_karpathy(clips)[0]
    frames, _ = read_frames(sample.path, sample.meta["num_frames"])
    video = write_video(tmp_path / "clip.mkv", frames.numpy(), codec="ffv1")
    result = caption_paths(video_run, [video], json_out=tmp_path / "c.json", num_workers=0, progress=False)
    assert list(result["captions"]) == [str(video)] and not result["skipped"]
    assert json.loads((tmp_path / "c.json").read_text())["captions"][str(video)]["notes"] == ""


def test_activity_command_writes_accuracy_confusion_and_tensorboard(clips, tmp_path, capsys):
    assert main(["-q", "activity", str(ACTIVITY_DEMO_CONFIG),
                 *overrides(**{"data.split_json": clips, "train.runs_dir": tmp_path, "name": "act",
                               "train.epochs": 3})]) == 0
    out = tmp_path / "act"
    report = json.loads((out / "activity_test.json").read_text())
    samples = read_karpathy(clips)
    train_labels = sorted({s.meta["label"] for s in samples if s.split == "train"})
    test_labels = [s.meta["label"] for s in samples if s.split == "test"]
    assert report["class_names"] == train_labels
    confusion = np.array(report["confusion"])
    assert confusion.sum() == len(test_labels)
    assert confusion.sum(1).tolist() == [test_labels.count(c) for c in train_labels]
    correct = [train_labels[p] == label for p, label in zip(report["predictions"], test_labels)]
    assert report["accuracy"] == pytest.approx(np.mean(correct))
    assert Image.open(out / "confusion_test.png").format == "PNG" and list((out / "tb").glob("events.*"))
    assert (out / "activity.pt").exists() and (out / "config.yaml").exists()
    assert "clip accuracy" in capsys.readouterr().out


def test_activity_on_clips_without_labels_is_a_one_line_error(clips, tmp_path, capsys):
    data = json.loads(clips.read_text())
    del data["images"][4]["label"]
    data["image_root"] = str(clips.parent / data.get("image_root", "."))
    unlabelled = tmp_path / "unlabelled.json"
    unlabelled.write_text(json.dumps(data))
    assert main(["-q", "activity", str(ACTIVITY_DEMO_CONFIG),
                 *overrides(**{"data.split_json": unlabelled, "train.runs_dir": tmp_path})]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no 'label'" in err and data["images"][4]["filename"] in err
    assert not (tmp_path / "shapes-video-activity").exists()


def test_demo_video_runs_the_whole_path(tmp_path, capsys, no_java):
    scores = tmp_path / "scores.json"
    args = ["-q", "demo", "--video", "--out", str(tmp_path / "demo"), "--n", "24", "--json", str(scores)]
    args += overrides()
    assert main(args) == 0
    result = json.loads(scores.read_text())
    assert set(result) == {"blind", "greedy", "beam3", "activity"}
    assert {"Bleu_4", "CIDEr"} <= set(result["beam3"]) and 0 <= result["activity"]["accuracy"] <= 1
    assert result["activity"]["chance"] in [1 / k for k in range(2, 9)]
    out = capsys.readouterr().out
    assert "blind baseline caption" in out and "clip accuracy" in out
