"""Image loading: every mode to RGB with the right pixel values, orientation, bad files, bombs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lrcn.data.media import (IMAGE_EXTENSIONS, ImageFolderDataset, collate_skip_bad, find_images, image_size,
                             load_image, to_rgb)
from lrcn.errors import MediaError


def pixels(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)  # [H, W, 3]


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG header declaring a huge canvas, with no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------------------- modes

def test_grayscale_and_bilevel(tmp_path):
    Image.new("L", (3, 2), 77).save(tmp_path / "g.png")
    assert (pixels(load_image(tmp_path / "g.png")) == 77).all()
    bw = Image.new("1", (2, 1), 0)
    bw.putpixel((1, 0), 1)
    bw.save(tmp_path / "bw.png")
    assert pixels(load_image(tmp_path / "bw.png")).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_palette_uses_its_colours(tmp_path):
    im = Image.new("P", (2, 1), 0)
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.png")
    assert pixels(load_image(tmp_path / "p.png")).tolist() == [[[10, 20, 30], [200, 100, 50]]]


def test_transparent_gif_is_composited_on_white_and_first_frame_is_taken(tmp_path):
    palette = [255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * 759
    first = Image.new("P", (2, 1), 0)
    first.putpalette(palette)
    first.putpixel((1, 0), 2)          # index 2 is transparent
    second = Image.new("P", (2, 1), 1)  # all blue
    second.putpalette(palette)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], transparency=2, duration=100, loop=0)
    with Image.open(tmp_path / "anim.gif") as check:
        assert check.n_frames == 2
    assert pixels(load_image(tmp_path / "anim.gif")).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(200, 100, 0, 128), (10, 20, 30, 0), (10, 20, 30, 255)])
    rgba.save(tmp_path / "a.png")
    got = pixels(load_image(tmp_path / "a.png"))
    half = [c * 128 / 255 + 255 * 127 / 255 for c in (200, 100, 0)]  # [227.4, 177.2, 127.0]
    np.testing.assert_allclose(got[0, 0], half, atol=1)
    assert got[0, 1].tolist() == [255, 255, 255]
    assert got[0, 2].tolist() == [10, 20, 30]

    la = Image.new("LA", (2, 1))
    la.putdata([(50, 0), (50, 255)])
    la.save(tmp_path / "la.png")
    assert pixels(load_image(tmp_path / "la.png")).tolist() == [[[255, 255, 255], [50, 50, 50]]]

    pa = Image.new("PA", (1, 1))
    pa.putpalette([0, 0, 200] + [0] * 765)
    pa.putpixel((0, 0), (0, 0))
    assert pixels(to_rgb(pa)).tolist() == [[[255, 255, 255]]]


def test_cmyk(tmp_path):
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])
    im.save(tmp_path / "c.tif")
    assert pixels(load_image(tmp_path / "c.tif")).tolist() == [[[255, 255, 255], [0, 255, 255], [0, 0, 0]]]


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "16.png")
    with Image.open(tmp_path / "16.png") as check:
        assert check.mode.startswith("I")
    got = pixels(load_image(tmp_path / "16.png"))
    assert got[..., 0].tolist() == [[0, 1, 4, 128, 255]]  # round(v / 257); PIL alone gives 255 for 1000
    assert (got[..., 0] == got[..., 2]).all()
    as_int32 = Image.fromarray(values.astype(np.int32))
    assert as_int32.mode == "I"
    assert pixels(to_rgb(as_int32))[..., 1].tolist() == [[0, 1, 4, 128, 255]]


def test_float_image(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert pixels(load_image(tmp_path / "f.tif"))[..., 0].tolist() == [[0, 128, 255]]
    wide = Image.fromarray(np.array([[3.0, 300.0]], dtype=np.float32))
    assert pixels(to_rgb(wide))[..., 0].tolist() == [[3, 255]]


@pytest.mark.parametrize("suffix,options", [(".webp", {"lossless": True}), (".bmp", {}), (".png", {})])
def test_lossless_formats_round_trip(tmp_path, suffix, options):
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / f"x{suffix}", **options)
    assert (np.asarray(load_image(tmp_path / f"x{suffix}")) == array).all()


# ----------------------------------------------------------------------------- orientation

def test_exif_orientation_6_rotates_clockwise(tmp_path):
    array = np.zeros((32, 64, 3), dtype=np.uint8)  # stored: 64 wide, 32 high, blue with red top-left
    array[..., 2] = 255
    array[:16, :16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(array).save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    im = load_image(tmp_path / "o.jpg")
    assert im.size == (32, 64)
    assert image_size(tmp_path / "o.jpg") == (32, 64)
    np.testing.assert_allclose(pixels(im)[4, 27], [255, 0, 0], atol=12)   # stored top-left -> top-right
    np.testing.assert_allclose(pixels(im)[4, 4], [0, 0, 255], atol=12)


# ----------------------------------------------------------------------------- bad files

def test_png_named_jpg_loads(tmp_path):
    Image.new("RGB", (2, 2), (1, 2, 3)).save(tmp_path / "really_png.jpg", format="PNG")
    assert (pixels(load_image(tmp_path / "really_png.jpg")) == [1, 2, 3]).all()


def test_truncated_jpeg(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match=r"cut\.jpg.*(truncated|corrupt)"):
        load_image(tmp_path / "cut.jpg")


def test_zero_byte_random_bytes_missing_and_folder(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.jpg is empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(MediaError, match=r"noise\.jpg is not an image"):
        load_image(tmp_path / "noise.jpg")
    with pytest.raises(MediaError, match=r"gone\.jpg does not exist"):
        load_image(tmp_path / "gone.jpg")
    with pytest.raises(MediaError, match="is a folder"):
        load_image(tmp_path)


def test_size_limit_refuses_before_decoding(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "ok.png")
    with pytest.raises(MediaError, match=r"ok\.png declares 100x100 = 10,000 pixels, more than the limit of 5,000"):
        load_image(tmp_path / "ok.png", max_pixels=5000)
    assert load_image(tmp_path / "ok.png", max_pixels=10_000).size == (100, 100)
    # header-only files: the refusal happens before any pixel data would be read
    png_header_only(tmp_path / "big.png", 10_000, 10_000)       # above our default limit
    with pytest.raises(MediaError, match=r"big\.png declares 10000x10000.*decompression bomb"):
        load_image(tmp_path / "big.png")
    assert image_size(tmp_path / "big.png") == (10_000, 10_000)  # the header alone is harmless
    png_header_only(tmp_path / "bomb.png", 100_000, 100_000)    # above PIL's own hard limit too
    with pytest.raises(MediaError, match=r"bomb\.png .*decompression bomb"):
        load_image(tmp_path / "bomb.png")
    with pytest.raises(MediaError, match=r"bomb\.png .*decompression bomb"):
        image_size(tmp_path / "bomb.png")


def test_jpeg_draft_decodes_at_reduced_scale(tmp_path):
    Image.new("RGB", (800, 600), (0, 128, 0)).save(tmp_path / "big.jpg")
    assert load_image(tmp_path / "big.jpg").size == (800, 600)
    assert load_image(tmp_path / "big.jpg", min_side=100).size == (200, 150)  # 1/4: both sides stay >= 100
    assert load_image(tmp_path / "big.jpg", min_side=400).size == (800, 600)


# ----------------------------------------------------------------------------- finding images

def test_find_images_recursive_sorted_case_insensitive(tmp_path):
    for rel in ["b/B.JPG", "a.png", "b/c/z.WebP", "b/c/y.jpeg", ".hidden/x.jpg", "b/.x.jpg", "notes.txt", "b/d.GIF"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "odd.dat").write_bytes(b"x")
    found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.png", "b/B.JPG", "b/c/y.jpeg", "b/c/z.WebP", "b/d.GIF"]
    # files named directly are taken whatever their extension; duplicates dropped, argument order kept
    both = find_images([tmp_path / "odd.dat", tmp_path / "b", tmp_path / "b" / "B.JPG"])
    assert [p.relative_to(tmp_path).as_posix() for p in both] == ["odd.dat", "b/B.JPG", "b/c/y.jpeg", "b/c/z.WebP", "b/d.GIF"]
    assert ".jpg" in IMAGE_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS
    with pytest.raises(MediaError, match="nothere does not exist"):
        find_images(tmp_path / "nothere")


def test_find_images_survives_symlink_loop(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(b"x")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    assert [p.name for p in find_images(tmp_path)] == ["a.jpg"]


# ----------------------------------------------------------------------------- dataset + collate

def test_dataset_skips_bad_files_in_worker_processes(tmp_path):
    paths = []
    for i in range(10):
        p = tmp_path / f"{i}.jpg"
        if i in (3, 7):
            p.write_bytes(b"not an image" if i == 3 else b"")
        else:
            Image.new("RGB", (4, 4), (i * 20, 0, 0)).save(p, format="PNG")
        paths.append(p)
    dataset = ImageFolderDataset(paths, lambda im: torch.from_numpy(np.asarray(im).copy()))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_skip_bad)
    seen, failed = [], {}
    for batch in loader:
        assert batch.images.shape == (len(batch.indices), 4, 4, 3)
        assert batch.images[:, 0, 0, 0].tolist() == [i * 20 for i in batch.indices]
        seen += batch.indices
        failed.update(batch.errors)
    assert seen == [0, 1, 2, 4, 5, 6, 8, 9]
    assert sorted(failed) == [3, 7]
    assert "3.jpg is not an image" in failed[3] and "7.jpg is empty" in failed[7]


def test_collate_all_failed_and_default_transform(tmp_path):
    batch = collate_skip_bad([(0, None, "bad a"), (1, None, "bad b")])
    assert batch.images is None and batch.indices == [] and batch.errors == {0: "bad a", 1: "bad b"}
    Image.new("RGB", (2, 3), (255, 0, 51)).save(tmp_path / "x.png")
    index, tensor = ImageFolderDataset([tmp_path / "x.png"])[0]
    assert index == 0 and tensor.shape == (3, 3, 2) and tensor.dtype == torch.float32
    assert tensor[:, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])
