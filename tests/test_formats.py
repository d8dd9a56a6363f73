"""Dataset readers and `prepare` on tiny fake datasets in the official layouts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from lrcn.data.formats import read_coco_captions, read_flickr_tokens, read_token_file
from lrcn.data.prepare import READERS, prepare
from lrcn.data.records import read_karpathy
from lrcn.errors import DataError


def jpeg(path: Path, colour=(120, 60, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path, format="JPEG")
    return path


def lines(path: Path, *rows: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def by_id(samples):
    return {s.id: s for s in samples}


@pytest.fixture
def flickr8k(tmp_path) -> Path:
    """ROOT in the official Flickr8k layout: 4 images, train/dev/test lists."""
    root = tmp_path / "f8k"
    for stem in ("1000_aa", "1001_bb", "1002_cc", "1003_dd"):
        jpeg(root / "Flicker8k_Dataset" / f"{stem}.jpg")
    lines(root / "Flickr8k.token.txt",
          "1000_aa.jpg#0\tA dog runs .", "1000_aa.jpg#1\tA brown dog running",
          "1001_bb.jpg#0\tTwo kids play .",
          "1002_cc.jpg#0\tA man on a bike .",
          "1003_dd.jpg#0\tA red car .",
          "1004_ee.jpg.1#0\tAn entry in no split list .")  # like the stray '.jpg.1' lines of the real file
    lines(root / "Flickr_8k.trainImages.txt", "1000_aa.jpg", "1001_bb.jpg")
    lines(root / "Flickr_8k.devImages.txt", "1002_cc.jpg")
    lines(root / "Flickr_8k.testImages.txt", "1003_dd.jpg")
    return root


# ----------------------------------------------------------------------------- Flickr8k

def test_prepare_flickr8k_round_trips(flickr8k, tmp_path):
    out = prepare("flickr8k", flickr8k, tmp_path / "out")
    assert out == tmp_path / "out" / "dataset_flickr8k.json"
    assert json.loads(out.read_text())["dataset"] == "flickr8k"
    samples = by_id(read_karpathy(out))
    assert {k: s.split for k, s in samples.items()} == {"1000_aa": "train", "1001_bb": "train",
                                                       "1002_cc": "val", "1003_dd": "test"}
    assert samples["1000_aa"].captions == ["A dog runs .", "A brown dog running"]
    assert samples["1002_cc"].path == flickr8k.resolve() / "Flicker8k_Dataset" / "1002_cc.jpg"
    assert samples["1002_cc"].path.is_file()


def test_flickr8k_alternative_spelling_and_missing_test_list(flickr8k, tmp_path, caplog):
    (flickr8k / "Flicker8k_Dataset").rename(flickr8k / "Flickr8k_Dataset")
    (flickr8k / "Flickr_8k.testImages.txt").unlink()
    with caplog.at_level(logging.WARNING):
        out = prepare("flickr8k", flickr8k, tmp_path / "out")
    assert "no test split list" in caplog.text
    samples = read_karpathy(out)
    assert sorted(s.split for s in samples) == ["train", "train", "val"]
    assert samples[0].path.parent.name == "Flickr8k_Dataset"


def test_missing_images_are_reported_and_skipped(flickr8k, tmp_path, caplog):
    (flickr8k / "Flicker8k_Dataset" / "1001_bb.jpg").unlink()
    (flickr8k / "Flicker8k_Dataset" / "1003_dd.jpg").write_bytes(b"")  # empty counts as missing
    with caplog.at_level(logging.WARNING):
        out = prepare("flickr8k", flickr8k, tmp_path / "out")
    assert "2 of 4 images" in caplog.text and "1001_bb.jpg" in caplog.text and "1003_dd.jpg" in caplog.text
    samples = read_karpathy(out)
    assert sorted(s.id for s in samples) == ["1000_aa", "1002_cc"]
    # imgids are renumbered densely and sentences point back at their image
    data = json.loads(out.read_text())
    assert [im["imgid"] for im in data["images"]] == [0, 1]
    assert all(s["imgid"] == im["imgid"] for im in data["images"] for s in im["sentences"])
    # without the check the entries are kept
    kept = read_karpathy(prepare("flickr8k", flickr8k, tmp_path / "out2", check_images=False))
    assert len(kept) == 4


def test_all_images_missing_is_an_error(flickr8k, tmp_path):
    for p in (flickr8k / "Flicker8k_Dataset").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"none of the 4 images named by .*Flickr8k\.token\.txt"):
        prepare("flickr8k", flickr8k, tmp_path / "out")


def test_missing_layout_names_the_expected_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"could not find .*Flickr8k\.token\.txt.* under .*empty.*Flicker8k_Dataset"):
        prepare("flickr8k", tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match="is not a folder"):
        prepare("coco", tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(DataError, match="unknown dataset kind 'imagenet'"):
        prepare("imagenet", tmp_path / "empty", tmp_path / "out")
    assert set(READERS) == {"coco", "flickr8k", "flickr30k", "karpathy", "msvd", "msrvtt"}


def test_malformed_token_lines_name_file_and_line(tmp_path):
    (tmp_path / "img").mkdir()
    bad_rows = {"no tab": "1000_aa.jpg#0 A dog runs .", "no number": "1000_aa.jpg\tA dog runs .",
                "bad number": "1000_aa.jpg#x\tA dog runs ."}
    for row in bad_rows.values():
        token = lines(tmp_path / "Flickr8k.token.txt", "1001_bb.jpg#0\tfine .", "", row)
        with pytest.raises(DataError, match=r"Flickr8k\.token\.txt:3: malformed line"):
            read_token_file(token, tmp_path / "img")


def test_escaping_paths_are_refused(flickr8k, tmp_path):
    token = flickr8k / "Flickr8k.token.txt"
    token.write_text(token.read_text() + "../../etc/passwd#0\tsneaky .\n")
    with pytest.raises(DataError, match=r"'\.\./\.\./etc/passwd' \(named in .*Flickr8k\.token\.txt:7\) leaves the dataset root"):
        prepare("flickr8k", flickr8k, tmp_path / "out")
    lines(tmp_path / "split.txt", "/etc/passwd")
    with pytest.raises(DataError, match=r"split\.txt:1\) leaves the dataset root"):
        read_flickr_tokens(lines(tmp_path / "t.txt", "a.jpg#0\tx"), {"train": tmp_path / "split.txt"}, tmp_path)


def test_image_in_two_splits_is_an_error(flickr8k, tmp_path):
    lines(flickr8k / "Flickr_8k.testImages.txt", "1003_dd.jpg", "1000_aa.jpg")
    with pytest.raises(DataError, match=r"testImages\.txt:2: image 1000_aa\.jpg is also in split 'train'"):
        prepare("flickr8k", flickr8k, tmp_path / "out")


def test_split_list_entries_without_captions_are_skipped(tmp_path, caplog):
    token = lines(tmp_path / "t.token", "a.jpg#0\tone .", "b.jpg#0\ttwo .")
    split = lines(tmp_path / "train.txt", "a", "b.jpg", "c.jpg", "a.jpg")  # stems accepted, duplicates dropped
    with caplog.at_level(logging.WARNING):
        samples = read_flickr_tokens(token, {"train": split, "dev": lines(tmp_path / "none.txt")}, tmp_path)
    assert [(s.id, s.split, s.captions) for s in samples] == [("a", "train", ["one ."]), ("b", "train", ["two ."])]
    assert "1 images in the split lists have no caption" in caplog.text and "c.jpg" in caplog.text


# ----------------------------------------------------------------------------- Flickr30k

def test_flickr30k_token_and_kaggle_csv_forms(tmp_path):
    token = lines(tmp_path / "results_20130124.token", "1000092795.jpg#0\tTwo young guys .",
                  "1000092795.jpg#1\tTwo men outside .")
    csv = lines(tmp_path / "results.csv", "image_name| comment_number| comment",
                "1000092795.jpg| 0| Two young guys .", "1000092795.jpg| 1| Two men outside .",
                "2199200615.jpg| 4 A dog runs across the grass .")  # the official file's defective line
    kaggle8k = lines(tmp_path / "captions.txt", "image,caption", '1000092795.jpg,"Two young guys, outside ."')
    assert read_token_file(token, tmp_path) == {"1000092795.jpg": ["Two young guys .", "Two men outside ."]}
    assert read_token_file(csv, tmp_path) == {"1000092795.jpg": ["Two young guys .", "Two men outside ."],
                                              "2199200615.jpg": ["A dog runs across the grass ."]}
    assert read_token_file(kaggle8k, tmp_path) == {"1000092795.jpg": ["Two young guys, outside ."]}
    lines(tmp_path / "results.csv", "image_name| comment_number| comment", "1000092795.jpg Two young guys")
    with pytest.raises(DataError, match=r"results\.csv:2: malformed line"):
        read_token_file(tmp_path / "results.csv", tmp_path)


def karpathy_json(path: Path, entries: list[dict]) -> Path:
    images = [{"imgid": i, "sentids": [i], "sentences": [{"raw": e.pop("raw", f"caption {i} ."), "tokens": [],
                                                          "imgid": i, "sentid": i}], **e}
              for i, e in enumerate(entries)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": path.stem.removeprefix("dataset_"), "images": images}))
    return path


def test_prepare_flickr30k_from_karpathy_split(tmp_path):
    root = tmp_path / "f30k"
    for stem in ("1000092795", "10002456", "1000268201"):
        jpeg(root / "flickr30k-images" / f"{stem}.jpg")
    karpathy_json(root / "dataset_flickr30k.json", [
        {"filename": "1000092795.jpg", "split": "train", "raw": "Two young guys ."},
        {"filename": "10002456.jpg", "split": "val"}, {"filename": "1000268201.jpg", "split": "test"}])
    samples = by_id(read_karpathy(prepare("flickr30k", root, tmp_path / "out")))
    assert {k: s.split for k, s in samples.items()} == {"1000092795": "train", "10002456": "val", "1000268201": "test"}
    assert samples["1000092795"].captions == ["Two young guys ."]
    assert samples["10002456"].path == root.resolve() / "flickr30k-images" / "10002456.jpg"


def test_flickr30k_without_a_split_asks_for_karpathy(tmp_path):
    root = tmp_path / "f30k"
    jpeg(root / "flickr30k-images" / "1.jpg")
    lines(root / "results_20130124.token", "1.jpg#0\tA cat .")
    with pytest.raises(DataError, match=r"could not find .*dataset_flickr30k\.json \(this dataset has no official split\)"):
        prepare("flickr30k", root, tmp_path / "out")
    lines(root / "train.txt", "1")  # Flickr30k Entities lists: ids without extension
    assert [s.id for s in read_karpathy(prepare("flickr30k", root, tmp_path / "out"))] == ["1"]


# ----------------------------------------------------------------------------- COCO

def coco_annotations(path: Path, images: list[tuple[int, str]], captions: list[tuple[int, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "info": {}, "licenses": [],
        "images": [{"id": i, "file_name": f, "width": 8, "height": 6} for i, f in images],
        "annotations": [{"id": n, "image_id": i, "caption": c} for n, (i, c) in enumerate(captions)]}))
    return path


@pytest.fixture
def coco(tmp_path) -> Path:
    root = tmp_path / "coco"
    jpeg(root / "train2014" / "COCO_train2014_000000000009.jpg")
    jpeg(root / "train2014" / "COCO_train2014_000000000025.jpg")
    jpeg(root / "val2014" / "COCO_val2014_000000000042.jpg")
    coco_annotations(root / "annotations" / "captions_train2014.json",
                     [(9, "COCO_train2014_000000000009.jpg"), (25, "COCO_train2014_000000000025.jpg")],
                     [(9, "A plate of food. "), (25, "A giraffe."), (9, "Some broccoli.")])
    coco_annotations(root / "annotations" / "captions_val2014.json",
                     [(42, "COCO_val2014_000000000042.jpg"), (43, "COCO_val2014_000000000043.jpg")],
                     [(42, "A man surfing.")])  # image 43 has no caption
    return root


def test_read_coco_captions(coco, caplog):
    with caplog.at_level(logging.WARNING):
        samples = read_coco_captions(coco / "annotations" / "captions_val2014.json", coco / "val2014", "val")
    assert [(s.id, s.split, s.captions, s.meta) for s in samples] == [("42", "val", ["A man surfing."], {"cocoid": 42})]
    assert samples[0].path == coco.resolve() / "val2014" / "COCO_val2014_000000000042.jpg"
    assert "1 images have no caption" in caplog.text


def test_prepare_coco_from_official_annotations(coco, tmp_path):
    samples = by_id(read_karpathy(prepare("coco", coco, tmp_path / "out")))
    assert {k: s.split for k, s in samples.items()} == {"9": "train", "25": "train", "42": "val"}
    assert samples["9"].captions == ["A plate of food.", "Some broccoli."]
    assert samples["9"].meta["cocoid"] == 9
    assert samples["42"].path.is_file()


def test_coco_karpathy_split_takes_precedence_and_restval(coco, tmp_path):
    karpathy_json(coco / "dataset_coco.json", [
        {"filepath": "train2014", "filename": "COCO_train2014_000000000009.jpg", "cocoid": 9, "split": "train"},
        {"filepath": "train2014", "filename": "COCO_train2014_000000000025.jpg", "cocoid": 25, "split": "restval"},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "cocoid": 42, "split": "test"}])
    folded = by_id(read_karpathy(prepare("coco", coco, tmp_path / "a")))
    assert {k: s.split for k, s in folded.items()} == {"9": "train", "25": "train", "42": "test"}
    kept = read_karpathy(prepare("coco", coco, tmp_path / "b", restval_to_train=False), restval_to_train=False)
    assert {s.id: s.split for s in kept} == {"9": "train", "25": "restval", "42": "test"}
    with pytest.raises(DataError, match="is the input annotation file"):
        prepare("coco", coco, coco)


def test_malformed_coco_json(coco, tmp_path):
    ann = coco / "annotations" / "captions_train2014.json"
    ann.write_text('{"images": [\n{"id": 1,')
    with pytest.raises(DataError, match=r"captions_train2014\.json is not valid JSON: line 2"):
        prepare("coco", coco, tmp_path / "out")
    coco_annotations(ann, [(1, "a.jpg")], [(1, "x")])
    data = json.loads(ann.read_text())
    del data["annotations"][0]["caption"]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"captions_train2014\.json: annotations\[0\] needs"):
        read_coco_captions(ann, coco / "train2014", "train")
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="needs 'images' and 'annotations' lists"):
        read_coco_captions(ann, coco / "train2014", "train")


def test_escaping_coco_file_name(coco, tmp_path):
    coco_annotations(coco / "annotations" / "captions_val2014.json", [(1, "../../../etc/passwd")], [(1, "x")])
    with pytest.raises(DataError, match=r"captions_val2014\.json images\[0\]\) leaves the dataset root"):
        prepare("coco", coco, tmp_path / "out")


# ----------------------------------------------------------------------------- Karpathy JSON

def test_escaping_path_in_karpathy_json(tmp_path):
    jpeg(tmp_path / "imgs" / "a.jpg")
    karpathy_json(tmp_path / "dataset_x.json", [{"filename": "a.jpg", "split": "train"},
                                                {"filename": "../../etc/passwd", "split": "train"}])
    with pytest.raises(DataError, match=r"'\.\./\.\./etc/passwd'.*dataset_x\.json.*leaves the dataset root"):
        prepare("karpathy", tmp_path / "imgs", tmp_path / "out", karpathy_json=tmp_path / "dataset_x.json")


def test_reprepare_karpathy_and_symlinked_image_folder(tmp_path):
    elsewhere = tmp_path / "disk2" / "images"
    jpeg(elsewhere / "a.jpg")
    jpeg(elsewhere / "b.jpg")
    root = tmp_path / "root"
    root.mkdir()
    (root / "photos").symlink_to(elsewhere, target_is_directory=True)  # a dataset assembled from symlinks
    karpathy_json(root / "dataset_mine.json", [{"filepath": "photos", "filename": "a.jpg", "split": "train"},
                                               {"filepath": "photos", "filename": "b.jpg", "split": "val"}])
    out = prepare("karpathy", root, tmp_path / "out")
    assert out.name == "dataset_mine.json"
    samples = read_karpathy(out)
    assert [(s.id, s.split) for s in samples] == [("a", "train"), ("b", "val")]
    assert samples[0].path.read_bytes() == (elsewhere / "a.jpg").read_bytes()
