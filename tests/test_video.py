"""Video input: frame sampling on real video files and frame folders, bad input, batched frame
features, and the MSVD / MSR-VTT readers (on tiny files the tests write)."""

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from lrcn.data.prepare import prepare
from lrcn.data.records import read_karpathy
from lrcn.config import Config, DataConfig
from lrcn.data.features import FeatureSpec, extract
from lrcn.data.loaders import cached_features
from lrcn.data.video import (VideoDataset, collate_videos, find_videos, list_frames, read_frames, sample_indices,
                             write_video)
from lrcn.errors import ConfigError, DataError, MediaError
from lrcn.models.encoders import ImageEncoder, Preprocess

needs_pyav = pytest.mark.skipif(importlib.util.find_spec("av") is None,
                                reason="video files need PyAV (pip install 'lrcn[video]')")

H, W, STEP = 48, 64, 12   # frame k: left half k*STEP, right half 255 - k*STEP


def numbered_frames(n: int, h: int = H, w: int = W) -> np.ndarray:
    """uint8 [n, h, w, 3]; frame k is k * STEP on its left half and 255 - k * STEP on its right half."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for k in range(n):
        frames[k, :, : w // 2] = k * STEP
        frames[k, :, w // 2:] = 255 - k * STEP
    return frames


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """Which numbered frame each decoded frame is, checking both halves agree (so H and W are not swapped)."""
    w = frames.shape[2]   # the outer quarters: away from the edge, which resizing blurs
    left = frames[:, :, : w // 4].float().mean((1, 2, 3)) / STEP
    right = (255 - frames[:, :, -(w // 4):].float().mean((1, 2, 3))) / STEP
    assert torch.allclose(left, right, atol=0.5), (left, right)   # a lossy codec moves each by a few levels
    number = (left + right) / 2
    assert torch.allclose(number, number.round(), atol=0.35), number
    return number.round().long().tolist()


def write_folder(folder: Path, frames: np.ndarray, names: str = "frame_{:03d}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / names.format(k))
    return folder


# ----------------------------------------------------------------------------- sampling rule

def test_sample_indices_uniform_and_fixed_rate():
    assert sample_indices(10, 5) == ([1, 3, 5, 7, 9], 0)
    assert sample_indices(20, 4) == ([2, 7, 12, 17], 0)
    assert sample_indices(7, 7) == (list(range(7)), 0)
    assert sample_indices(3, 5) == ([0, 1, 2, 2, 2], 2)                       # short: last frame repeated
    assert sample_indices(30, 4, "fps", fps=10, source_fps=30) == ([0, 3, 6, 9], 0)
    assert sample_indices(30, 5, "fps", fps=10, source_fps=25) == ([0, 2, 5, 7, 10], 0)   # floor(k * 2.5)
    assert sample_indices(10, 5, "fps", fps=10, source_fps=30) == ([0, 3, 6, 9, 9], 1)    # ends early
    with pytest.raises(ConfigError, match="'random' is unknown"):
        sample_indices(10, 3, "random")
    with pytest.raises(ConfigError, match="fps > 0"):
        sample_indices(10, 3, "fps")
    with pytest.raises(ConfigError, match="num_frames"):
        sample_indices(10, 0)


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 500), n=st.integers(1, 64))
def test_uniform_sampling_covers_the_clip_evenly(total, n):
    indices, padded = sample_indices(total, n)
    assert len(indices) == n and indices == sorted(indices)
    if total >= n:
        assert padded == 0 and len(set(indices)) == n and 0 <= indices[0] and indices[-1] < total
        # the i-th frame [k, k+1) overlaps the i-th of n equal segments [i*total/n, (i+1)*total/n)
        assert all(k * n < (i + 1) * total and (k + 1) * n > i * total for i, k in enumerate(indices))
    else:
        assert padded == n - total and indices == list(range(total)) + [total - 1] * padded


# ----------------------------------------------------------------------------- real video files

@needs_pyav
@pytest.mark.parametrize("name,codec", [("clip.mp4", "mpeg4"), ("clip.avi", "mpeg4"), ("clip.mkv", "ffv1")])
def test_reads_the_sampled_frames_of_real_video_files(tmp_path, name, codec):
    """mp4 / avi declare their frame count; mkv does not (the packets are counted)."""
    path = write_video(tmp_path / name, numbered_frames(20), fps=10, codec=codec)
    frames, info = read_frames(path, 5)
    assert frames.dtype == torch.uint8 and frames.shape == (5, H, W, 3)
    assert info.total_frames == 20 and info.fps == pytest.approx(10) and info.notes == []
    assert info.indices == [2, 6, 10, 14, 18] and frame_numbers(frames) == [2, 6, 10, 14, 18]

    frames, info = read_frames(path, 4, mode="fps", fps=2.5)                 # every 4th frame of 10 fps
    assert frame_numbers(frames) == [0, 4, 8, 12]

    frames, info = read_frames(path, 24, size=24)                            # 20 frames, 24 asked
    assert frames.shape == (24, 24, 32, 3)                                    # shorter side 24, aspect kept
    assert info.padded == 4 and frame_numbers(frames) == list(range(20)) + [19] * 4
    assert "fewer than the 24 asked" in info.notes[0]


@needs_pyav
def test_bad_video_files_raise_media_errors_naming_the_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "text.avi").write_text("not a video")
    for name, message in [("empty.mp4", "empty"), ("noise.mp4", "corrupt"), ("text.avi", "corrupt"),
                          ("missing.mp4", "does not exist")]:
        with pytest.raises(MediaError, match=message) as e:
            read_frames(tmp_path / name, 4)
        assert name in str(e.value)


@needs_pyav
def test_a_truncated_video_gives_the_frames_it_has(tmp_path):
    good = write_video(tmp_path / "good.mkv", numbered_frames(20), fps=10, codec="ffv1")
    data = good.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])
    frames, info = read_frames(tmp_path / "cut.mkv", 4)
    assert 1 <= info.total_frames < 20
    numbers = frame_numbers(frames)
    assert numbers == sorted(numbers) and max(numbers) < info.total_frames


# ----------------------------------------------------------------------------- frame folders

def test_frame_folders_sample_in_numeric_order(tmp_path):
    folder = write_folder(tmp_path / "clip", numbered_frames(12), names="f{}.png")   # f2 before f10
    assert [p.name for p in list_frames(folder)][:4] == ["f0.png", "f1.png", "f2.png", "f3.png"]
    frames, info = read_frames(folder, 4)
    assert info.indices == [1, 4, 7, 10] and frame_numbers(frames) == [1, 4, 7, 10] and info.notes == []
    frames, info = read_frames(folder, 3, mode="fps", fps=5, source_fps=20)    # every 4th frame
    assert frame_numbers(frames) == [0, 4, 8]
    with pytest.raises(ConfigError, match="source_fps"):
        read_frames(folder, 3, mode="fps", fps=5)


def test_missing_and_unreadable_frames_are_replaced_by_the_nearest_readable_one(tmp_path):
    folder = write_folder(tmp_path / "clip", numbered_frames(10))
    (folder / "frame_005.png").unlink()                        # a gap in the numbering
    (folder / "frame_007.png").write_bytes(b"\x89PNG broken")  # a corrupt frame
    (folder / "notes.txt").write_text("not a frame")
    frames, info = read_frames(folder, 5)                      # wants 1, 3, 5, 7, 9
    assert info.total_frames == 10 and info.indices == [1, 3, 5, 7, 9]
    assert info.replaced == {5: 4, 7: 6}                       # the earlier neighbour on a tie
    assert frame_numbers(frames) == [1, 3, 4, 6, 9]
    assert "2 sampled frames missing or unreadable" in info.notes[0]


def test_frame_folder_numbered_with_a_step_has_no_false_gaps(tmp_path):
    folder = write_folder(tmp_path / "clip", numbered_frames(6), names="img_{:04d}.png")
    for k in range(5, -1, -1):                                 # rename img_000k -> img_00(5k)
        (folder / f"img_{k:04d}.png").rename(folder / f"img_{5 * k:04d}.png")
    frames, info = read_frames(folder, 6)
    assert info.total_frames == 6 and info.replaced == {} and frame_numbers(frames) == list(range(6))


def test_unusable_frame_folders_raise(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(MediaError, match="holds no image files"):
        read_frames(tmp_path / "none", 4)
    bad = tmp_path / "bad"
    bad.mkdir()
    for k in range(3):
        (bad / f"frame_{k}.jpg").write_bytes(b"garbage")
    with pytest.raises(MediaError, match="none of its 3 frames could be read"):
        read_frames(bad, 4)


@needs_pyav
def test_find_videos_lists_files_and_frame_folders(tmp_path):
    write_video(tmp_path / "b.mp4", numbered_frames(3), codec="mpeg4")
    write_folder(tmp_path / "a", numbered_frames(2))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "readme.txt").write_text("x")
    assert [p.name for p in find_videos(tmp_path)] == ["a", "b.mp4"]


# ----------------------------------------------------------------------------- datasets and features

def tiny_encoder(features: str = "pooled") -> ImageEncoder:
    """A small real ImageEncoder (conv + BatchNorm with non-trivial statistics) on 16x16 inputs."""
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU()),
              nn.Sequential(nn.Conv2d(8, 6, 3, 2, 1), nn.ReLU())]
    blocks[0][1].running_mean.uniform_(-0.5, 0.5)
    blocks[0][1].running_var.uniform_(0.5, 2.0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(6, 3))
    return ImageEncoder("tiny", blocks, head, 6, Preprocess(image_size=16, resize_size=18), ["a", "b", "c"],
                        features=features)


@pytest.fixture
def clips(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    noisy = lambda n: np.clip(numbered_frames(n, 32, 32) + rng.integers(0, 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    paths = {
        "mp4": write_video(tmp_path / "v" / "a.mp4", noisy(12), codec="mpeg4"),
        "mkv": write_video(tmp_path / "v" / "b.mkv", noisy(9), codec="ffv1"),
        "folder": write_folder(tmp_path / "v" / "c", noisy(7)),
        "short": write_video(tmp_path / "v" / "d.mkv", noisy(3), codec="ffv1"),
        "empty": tmp_path / "v" / "e.mp4",
        "corrupt": tmp_path / "v" / "f.avi",
    }
    paths["empty"].touch()
    paths["corrupt"].write_bytes(b"RIFF" + rng.bytes(3000))
    return paths


@needs_pyav
def test_video_dataset_reports_bad_clips_and_patches(clips):
    names = list(clips)
    dataset = VideoDataset([clips[n] for n in names], 5)
    batch = collate_videos([dataset[i] for i in range(len(dataset))])
    assert [names[i] for i in batch.indices] == ["mp4", "mkv", "folder", "short"]
    assert batch.clips.shape == (4, 5, 3, 32, 32) and batch.clips.dtype == torch.float32
    assert 0.0 <= batch.clips.min() and batch.clips.max() <= 1.0
    assert {names[i] for i in batch.errors} == {"empty", "corrupt"}
    assert "empty" in batch.errors[names.index("empty")]
    assert {names[i]: m for i, m in batch.notes.items()}.keys() == {"short"}
    assert "3 frames, fewer than the 5 asked; its last frame fills the other 2" in batch.notes[names.index("short")]


@needs_pyav
def test_batched_frame_features_equal_a_per_frame_loop_and_resume(clips, tmp_path):
    encoder = tiny_encoder()
    calls = []
    encoder.body.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    names = list(clips)
    ids = [f"id_{n}" for n in names]
    spec = FeatureSpec("video", num_frames=5, batch_size=3 * 5, num_workers=0)     # 3 clips of 5 frames a batch
    store = extract(encoder, [clips[n] for n in names], ids, tmp_path / "store", spec, progress=False)
    assert calls == [3 * 5, 1 * 5]                 # one forward per batch over all B x T frames (2 bad clips)
    assert store.complete and set(store.failed) == {"id_empty", "id_corrupt"}
    assert "id_short" in store.notes and "id_short" in json.loads((tmp_path / "store" / "notes.json").read_text())
    features = store.tensor(ids)
    assert features.shape == (6, 5, 6)
    with torch.inference_mode():
        for n, video_id in zip(names[:4], ids):
            frames, _ = read_frames(clips[n], 5)
            expected = torch.stack([encoder(encoder.transform(Image.fromarray(f))[None])[0] for f in frames.numpy()])
            torch.testing.assert_close(features[ids.index(video_id)], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(features[4:], torch.zeros(2, 5, 6))          # failed rows stay zero
    # a second run finds everything done and runs nothing
    calls.clear()
    again = extract(encoder, [clips[n] for n in names], ids, tmp_path / "store",
                    FeatureSpec("video", num_frames=5, num_workers=0), progress=False)
    assert calls == [] and torch.equal(again.tensor(ids), features)
    # another sampling is another store, refused in the same folder
    with pytest.raises(DataError, match="other samples or another encoder"):
        extract(encoder, [clips[n] for n in names], ids, tmp_path / "store",
                FeatureSpec("video", num_frames=6, num_workers=0), progress=False)


def video_config(root: Path, num_frames: int, **data) -> Config:
    return Config(data=DataConfig(modality="video", num_frames=num_frames, feature_dir=str(root), num_workers=0,
                                  **data))


@needs_pyav
def test_cached_video_features_keep_the_readable_samples(clips, tmp_path):
    from lrcn.data.records import Sample
    samples = [Sample(n, p, "train", ["a caption"]) for n, p in clips.items()]
    config = video_config(tmp_path / "features", 4)
    x, kept = cached_features(config, samples, tiny_encoder(), progress=False)
    assert [s.id for s in kept] == ["mp4", "mkv", "folder", "short"] and x.shape == (4, 4, 6)
    store_dirs = list((tmp_path / "features").iterdir())
    assert len(store_dirs) == 1 and store_dirs[0].name.startswith(f"{tiny_encoder().key}-frames4-uniform-6-")
    assert json.loads((store_dirs[0] / "meta.json").read_text())["shape"] == [4, 6]
    with pytest.raises(DataError, match="none of the 2 videos"):
        cached_features(config, samples[4:], tiny_encoder(), progress=False)


@needs_pyav
def test_frame_features_in_worker_processes_skip_bad_clips(clips, tmp_path):
    """DataLoader workers: the readable clips' features, in order, and the errors, as without workers."""
    encoder, names = tiny_encoder(), list(clips)
    paths = [clips[n] for n in names]
    workers = extract(encoder, paths, names, tmp_path / "w", FeatureSpec("video", num_frames=4, batch_size=16,
                                                                          num_workers=2), progress=False)
    kept = [n for n in names if n not in workers.failed]
    assert kept == ["mp4", "mkv", "folder", "short"] and workers.tensor(kept).shape == (4, 4, 6)
    assert set(workers.failed) == {"empty", "corrupt"}
    store = extract(encoder, paths, names, tmp_path / "s", FeatureSpec("video", num_frames=4, num_workers=0),
                    progress=False)
    torch.testing.assert_close(workers.tensor(kept), store.tensor(names[:4]))


@needs_pyav
def test_grid_features_of_clips_are_each_frames_grid(clips, tmp_path):
    """encoder.features=grid: a clip's row is [T, D, h, w], each frame's forward_grid, through the same loader."""
    encoder, pooled = tiny_encoder("grid"), tiny_encoder()
    from lrcn.data.records import Sample
    samples = [Sample(n, clips[n], "train", ["a caption"]) for n in ("mp4", "short", "empty")]
    config = video_config(tmp_path / "features", 5)
    x, kept = cached_features(config, samples, encoder, progress=False)
    assert [s.id for s in kept] == ["mp4", "short"] and x.shape == (2, 5, 6, 4, 4)
    with torch.inference_mode():
        for row, name in enumerate(["mp4", "short"]):
            frames, _ = read_frames(clips[name], 5)
            images = torch.stack([encoder.transform(Image.fromarray(f)) for f in frames.numpy()])
            torch.testing.assert_close(x[row], encoder.forward_grid(images), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(x[row].mean((2, 3)), pooled(images), atol=1e-5, rtol=1e-5)
    assert sorted(p.name.rsplit("-", 2)[0] for p in (tmp_path / "features").iterdir()) == \
        [f"{pooled.key}-grid-frames5-uniform"]


# ----------------------------------------------------------------------------- MSVD and MSR-VTT

MSVD_CLIPS = {"-4wsuPCjDBc_5_15": 1, "abc_1_9": 1200, "x,y_3_4": 1201, "def_0_10": 1300, "ghi_2_12": 1301,
              "jkl_7_8": 1970, "late_1_2": 1971, "silent_4_5": 5}


def msvd_root(tmp_path, caption_format: str) -> Path:
    root = tmp_path / "msvd"
    (root / "YouTubeClips").mkdir(parents=True)
    (root / "youtube_mapping.txt").write_text("".join(f"{c} vid{n}\n" for c, n in MSVD_CLIPS.items()))
    for clip in MSVD_CLIPS:
        if clip != "abc_1_9":                                   # one clip not downloaded
            (root / "YouTubeClips" / f"{clip}.avi").write_bytes(b"video")
    described = [c for c in MSVD_CLIPS if c != "silent_4_5"]
    if caption_format == "csv":
        lines = ["VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description"]
        for clip in described:
            vid, start, end = clip.rsplit("_", 2)
            vid = f'"{vid}"' if "," in vid else vid
            lines += [f"{vid},{start},{end},1,clean,10,English,A man is slicing {clip}.",
                      f"{vid},{start},{end},2,clean,10,German,Ein Mann schneidet.",
                      f'{vid},{start},{end},3,unverified,12,English,"a dog, a cat play"']
        (root / "MSR Video Description Corpus.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        lines = ["# MSVD English descriptions", "#"]
        for clip in described:
            lines += [f"{clip} A man is slicing {clip}.", f"{clip} a dog, a cat play"]
        (root / "AllVideoDescriptions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("caption_format", ["csv", "txt"])
def test_msvd_prepares_the_standard_split(tmp_path, caption_format, caplog):
    root = msvd_root(tmp_path, caption_format)
    with caplog.at_level(logging.WARNING):
        out = prepare("msvd", root, tmp_path / "prepared")
    assert out.name == "dataset_msvd.json"
    samples = {s.id: s for s in read_karpathy(out)}
    # vid1200's clip is not on disk; vid5 has no caption; vid1971 lies outside the split
    assert {i: s.split for i, s in samples.items()} == {"vid1": "train", "vid1201": "val", "vid1300": "val",
                                                        "vid1301": "test", "vid1970": "test"}
    assert samples["vid1"].path == root / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi"
    assert samples["vid1201"].meta["clip"] == "x,y_3_4"
    assert samples["vid1"].captions == ["A man is slicing -4wsuPCjDBc_5_15.", "a dog, a cat play"]  # English only
    assert "1 of 6 images" in caplog.text and "abc_1_9.avi" in caplog.text
    assert "vid1971" in caplog.text and "silent_4_5" in caplog.text


def test_msvd_errors_name_the_file(tmp_path):
    root = msvd_root(tmp_path, "txt")
    (root / "youtube_mapping.txt").write_text("clip_1_2 vid1\nclip_3_4 video2\n")
    with pytest.raises(DataError, match=r"youtube_mapping.txt:2: malformed line"):
        prepare("msvd", root, tmp_path / "out")
    (root / "youtube_mapping.txt").unlink()
    with pytest.raises(DataError, match="youtube_mapping.txt"):
        prepare("msvd", root, tmp_path / "out")


def msrvtt_root(tmp_path, annotation_dir: str = ".") -> Path:
    root = tmp_path / "msrvtt"
    (root / annotation_dir).mkdir(parents=True, exist_ok=True)
    videos = [{"category": 9, "url": "https://www.youtube.com/watch?v=x", "video_id": f"video{i}",
               "start time": 1.0, "end time": 9.5, "split": split, "id": i}
              for i, split in enumerate(["train", "train", "validate", "train"])]
    sentences = [{"caption": f"a clip number {i} sentence {k}", "video_id": f"video{i}", "sen_id": 10 * i + k}
                 for i in (0, 1, 2) for k in range(3)]
    info = {"contributor": "test", "version": "1.0"}
    (root / annotation_dir / "train_val_videodatainfo.json").write_text(
        json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    test = {"info": info, "videos": [{"video_id": "video4", "split": "test", "id": 4}],
            "sentences": [{"caption": "a test clip", "video_id": "video4", "sen_id": 99}]}
    (root / annotation_dir / "test_videodatainfo.json").write_text(json.dumps(test))
    for folder, ids in (("TrainValVideo", range(4)), ("TestVideo", [4])):
        (root / folder).mkdir()
        for i in ids:
            (root / folder / f"video{i}.mp4").write_bytes(b"video")
    return root


@pytest.mark.parametrize("annotation_dir", [".", "annotation"])
def test_msrvtt_prepares_the_official_split(tmp_path, annotation_dir, caplog):
    root = msrvtt_root(tmp_path, annotation_dir)
    with caplog.at_level(logging.WARNING):
        samples = {s.id: s for s in read_karpathy(prepare("msrvtt", root, tmp_path / "prepared"))}
    assert {i: s.split for i, s in samples.items()} == {"video0": "train", "video1": "train", "video2": "val",
                                                        "video4": "test"}
    assert samples["video2"].captions == [f"a clip number 2 sentence {k}" for k in range(3)]
    assert samples["video4"].path == root / "TestVideo" / "video4.mp4"
    assert samples["video0"].meta["category"] == 9 and samples["video0"].meta["start time"] == 1.0
    assert "video3" in caplog.text                                   # no caption: skipped, reported


def test_msrvtt_reads_the_excerpt_format_and_refuses_malformed_entries(tmp_path):
    root = msrvtt_root(tmp_path)
    path = root / "train_val_videodatainfo.json"
    data = json.loads(path.read_text())
    data["videos"][1]["split"] = "holdout"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"train_val_videodatainfo.json: videos\[1\] has split 'holdout'"):
        prepare("msrvtt", root, tmp_path / "out")
    data["videos"][1]["split"] = "train"
    del data["sentences"][0]["video_id"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"sentences\[0\] needs 'video_id'"):
        prepare("msrvtt", root, tmp_path / "out")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="could not find train_val_videodatainfo.json"):
        prepare("msrvtt", tmp_path / "nothing", tmp_path / "out")


@needs_pyav
def test_video_datasets_prepared_paths_are_read_by_read_frames(tmp_path):
    """End to end: a prepared MSR-VTT split JSON points at real videos that read_frames samples."""
    root = msrvtt_root(tmp_path)
    for i in range(5):
        folder = "TestVideo" if i == 4 else "TrainValVideo"
        write_video(root / folder / f"video{i}.mp4", numbered_frames(6 + i), fps=10, codec="mpeg4")
    samples = read_karpathy(prepare("msrvtt", root, tmp_path / "prepared"))
    frames, info = read_frames(samples[0].path, 3)
    assert info.total_frames == 6 and frame_numbers(frames) == [1, 3, 5]
